"""`edgeport quantize`: a float HF checkpoint -> a quantized checkpoint (docs/QUANT_FORMAT.md), once, for
every runtime. Methods:

rtn   round-to-nearest, tensor by tensor straight from the safetensors, each tensor in row chunks and written
      as soon as it is done (memory: one quantized tensor and one float chunk; no data).
gptq  layer by layer on calibration text: run the (already quantized) layers before it, collect H = X^T X of
      every linear's input in this layer, GPTQ-round each weight, then run the quantized layer to get the
      next layer's input. k_b (per head) uses the Hessian of that head's q_nope, v_b the one of the normed
      latent (kv_b's input); the output layer uses the final normed hidden states.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgeport.checkpoint import expected_shapes, load_config, load_model
from edgeport.errors import EdgeportError
from edgeport.model import YoutuConfig, YoutuForCausalLM, rope_cos_sin
from edgeport.tensorfile import SafetensorsReader, checkpoint_reader
from quant.checkpoint import QuantTensor, merge_kv_b, quant_names, write_quantized
from quant.formats import FORMATS
from quant.gptq import gptq_quantize
from quant.policy import SCHEMES, choose

METHODS = ("rtn", "gptq")
CHUNK_BYTES = 4 * 2**20  # float32 bytes rounded at a time (RTN is row-wise, so chunks give the same codes)
Item = tuple[str, QuantTensor | np.ndarray, str]


# ---- calibration data ----------------------------------------------------------------------------------
def load_calib_file(path: str | Path) -> list[str]:
    """Documents of a .txt file (paragraphs) or .jsonl file ({"text"}, or {"messages", "tools"} rendered with
    the chat template, i.e. exactly the text the model sees), read with edgeport.data's loader."""
    from edgeport import chat, data

    docs = [
        d if isinstance(d, str) else chat.render(d["messages"], d["tools"]) for d in data.load_text_file(path)
    ]
    if not any(d.strip() for d in docs):
        raise EdgeportError("calibration file has no text", path)
    return docs


def encode_docs(model_dir: str | Path, docs: list[str], cfg: YoutuConfig) -> list[int]:
    """Token ids of the documents with the checkpoint's tokenizer.json, separated by EOS."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise EdgeportError("missing tokenizer.json (needed to tokenize calibration text)", model_dir)
    tok = Tokenizer.from_file(str(path))
    eos = cfg.eos_token_id[0] if isinstance(cfg.eos_token_id, list) else cfg.eos_token_id
    if eos is None or eos >= cfg.vocab_size:  # config.json's id does not fit this vocab: ask the tokenizer
        eos = tok.token_to_id("<|end_of_text|>")
    ids: list[int] = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids += enc.ids + ([eos] if eos is not None else [])
    if ids and max(ids) >= cfg.vocab_size:
        raise EdgeportError(f"tokenizer.json produces id {max(ids)} >= vocab_size {cfg.vocab_size}", path)
    return ids


def calibration_ids(
    model_dir: str | Path, calib: str | Path | None, n_tokens: int, seq_len: int = 256, split: str = "train"
) -> torch.Tensor:
    """[n_seq, seq_len] token ids: about n_tokens of the calibration file (or the built-in text's split)."""
    from edgeport import data

    cfg = load_config(model_dir)
    docs = load_calib_file(calib) if calib is not None else data.builtin_text(split)
    ids = encode_docs(model_dir, docs, cfg)
    seq_len = max(1, min(seq_len, cfg.max_position_embeddings, len(ids)))
    n_seq = max(1, min(n_tokens // seq_len, len(ids) // seq_len))
    if len(ids) < 16:
        raise EdgeportError(f"calibration text is too short ({len(ids)} tokens)", calib or "built-in text")
    return torch.tensor(ids[: n_seq * seq_len], dtype=torch.long).view(n_seq, seq_len)


# ---- rtn -----------------------------------------------------------------------------------------------
def _store(name: str, w: np.ndarray, scheme: str, tied: bool) -> Item:
    fmt, note = choose(name, w.shape, scheme, tied)
    if fmt in FORMATS:
        return name, QuantTensor.quantize(w, fmt), note
    return name, w.astype(np.float16 if fmt == "f16" else np.float32), note


def _rtn_tensor(reader: SafetensorsReader, name: str, scheme: str, tied: bool) -> Item:
    """_store of one tensor read and rounded in row chunks: memory holds the result and one float32 chunk,
    never the float32 copy of a whole (embedding-sized) tensor."""
    shape = reader.shape(name)
    fmt, note = choose(name, shape, scheme, tied)
    step = max(1, CHUNK_BYTES // (4 * int(np.prod(shape[1:]))))
    spans = [(a, min(a + step, shape[0])) for a in range(0, shape[0], step)]
    if fmt not in FORMATS:
        out = np.empty(shape, np.float16 if fmt == "f16" else np.float32)
        for a, b in spans:
            out[a:b] = reader.read(name, a, b).float().numpy()
        return name, out, note
    arrays: list[np.ndarray] = []
    for a, b in spans:
        parts = FORMATS[fmt].quantize(reader.read(name, a, b).float().numpy())
        arrays = arrays or [np.empty((shape[0], *p.shape[1:]), p.dtype) for p in parts]
        for dst, p in zip(arrays, parts, strict=True):
            dst[a:b] = p
    return name, QuantTensor(fmt, *arrays), note


def _rtn(model_dir: Path, cfg: YoutuConfig, scheme: str, progress: bool) -> Iterator[Item]:
    """Checkpoint order, one tensor at a time (kv_b_proj, small, is split into k_b / v_b first)."""
    reader = checkpoint_reader(model_dir)
    tied = cfg.tie_word_embeddings
    for name in tqdm(expected_shapes(cfg), desc="rtn", disable=not progress):
        if name.endswith("self_attn.kv_b_proj.weight"):
            for qname, w in quant_names(name, reader.read(name).float().numpy(), cfg):
                yield _store(qname, w, scheme, tied)
        else:
            yield _rtn_tensor(reader, name, scheme, tied)


# ---- gptq ----------------------------------------------------------------------------------------------
def _gptq_store(name: str, w: np.ndarray, h: np.ndarray, scheme: str, tied: bool, damp: float) -> Item:
    fmt, note = choose(name, w.shape, scheme, tied)
    if fmt not in FORMATS:
        return name, w.astype(np.float16 if fmt == "f16" else np.float32), note
    if h.ndim == 3:  # k_b: one Hessian per head, rows of head i are i*r..(i+1)*r
        parts = [
            gptq_quantize(wh, hh, FORMATS[fmt], damp) for wh, hh in zip(np.split(w, len(h)), h, strict=True)
        ]
        arrays = [np.concatenate(a) for a in zip(*parts, strict=True)]
    else:
        arrays = gptq_quantize(w, h, FORMATS[fmt], damp)
    return name, QuantTensor(fmt, *arrays), note + ", gptq"


def _value(item: Item) -> np.ndarray:
    t = item[1]
    return t.dequantize() if isinstance(t, QuantTensor) else t.astype(np.float32)


class _Hessians:
    """Forward hooks accumulating X^T X (float64) of every nn.Linear input in a module, plus per-head q_nope."""

    def __init__(self, layer: nn.Module, cfg: YoutuConfig) -> None:
        self.h: dict[str, torch.Tensor] = {}
        self.cfg = cfg
        self.handles = [
            m.register_forward_hook(self._hook(n))
            for n, m in layer.named_modules()
            if isinstance(m, nn.Linear)
        ]

    def _hook(self, name: str):
        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x = inp[0].reshape(-1, inp[0].shape[-1]).float()  # fp32 products, summed across batches in fp64
            self.h[name] = self.h.get(name, 0) + (x.T @ x).double()
            if name.endswith(("q_b_proj", "q_proj")):  # k_b acts on q_nope, per head
                c = self.cfg
                q = out.reshape(-1, c.num_attention_heads, c.qk_head_dim)[..., : c.qk_nope_head_dim].float()
                self.h["k_b"] = self.h.get("k_b", 0) + torch.einsum("nhi,nhj->hij", q, q).double()

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def _gptq(
    model: YoutuForCausalLM, ids: torch.Tensor, scheme: str, damp: float, progress: bool
) -> Iterator[Item]:
    cfg = model.config
    tied = cfg.tie_word_embeddings
    emb = model.model.embed_tokens.weight
    if not tied:  # an input-only embedding has no Hessian: RTN, and later layers see its quantized values
        item = _store("model.embed_tokens.weight", emb.numpy(), scheme, tied)
        emb.copy_(torch.from_numpy(_value(item)))
        yield item
    batch = max(1, 2048 // ids.shape[1])
    pos = torch.arange(ids.shape[1])[None]
    cos, sin = rope_cos_sin(pos, cfg.qk_rope_head_dim, cfg.rope_theta)
    xs = [model.model.embed_tokens(ids[i : i + batch]) for i in range(0, len(ids), batch)]
    for i, layer in enumerate(tqdm(model.model.layers, desc="gptq", disable=not progress)):
        hooks = _Hessians(layer, cfg)
        for x in xs:
            layer(x, cos, sin)
        hooks.remove()
        hs = {k: v.numpy() for k, v in hooks.h.items()}
        for pname, p in layer.named_parameters():
            full = f"model.layers.{i}.{pname}"
            mod = pname.removesuffix(".weight")
            if p.ndim != 2:
                yield _store(full, p.numpy(), scheme, tied)
                continue
            items = []
            for qname, w in quant_names(full, p.numpy(), cfg):
                h = hs["k_b"] if qname.endswith("k_b") else hs[mod]
                items.append(_gptq_store(qname, w, h, scheme, tied, damp))
            w_hat = merge_kv_b(*map(_value, items), cfg) if len(items) == 2 else _value(items[0])
            p.copy_(torch.from_numpy(np.ascontiguousarray(w_hat)))
            yield from items
        xs = [layer(x, cos, sin) for x in xs]
    yield _store("model.norm.weight", model.model.norm.weight.numpy(), scheme, tied)
    out = model.model.embed_tokens.weight if tied else model.lm_head.weight
    h = torch.zeros(cfg.hidden_size, cfg.hidden_size, dtype=torch.float64)
    for x in xs:
        y = model.model.norm(x).reshape(-1, cfg.hidden_size).float()
        h += (y.T @ y).double()
    name = "model.embed_tokens.weight" if tied else "lm_head.weight"
    yield _gptq_store(name, out.numpy(), h.numpy(), scheme, tied, damp)


# ---- entry point ---------------------------------------------------------------------------------------
def quantize_checkpoint(
    model_dir: str | Path,
    out_dir: str | Path,
    scheme: str = "q4_0",
    method: str = "rtn",
    calib: str | Path | None = None,
    n_calib_tokens: int = 4096,
    seq_len: int = 256,
    damp: float = 0.01,
    progress: bool = True,
) -> Path:
    """Quantize the float checkpoint in model_dir into out_dir (atomic); returns out_dir."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if scheme not in SCHEMES:
        raise EdgeportError(f"unknown scheme {scheme!r} (choose one of: {', '.join(SCHEMES)})")
    if method not in METHODS:
        raise EdgeportError(f"unknown method {method!r} (choose one of: {', '.join(METHODS)})")
    if (model_dir / "quant_config.json").is_file():
        raise EdgeportError(
            "already a quantized checkpoint; quantize the float checkpoint instead", model_dir
        )
    cfg = load_config(model_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise EdgeportError("output folder must differ from the model folder", out_dir)
    extra: dict[str, Any] = {}
    if method == "rtn":
        if calib is not None:
            load_calib_file(calib)  # still reject a bad file, although RTN does not need data
        items: Iterator[Item] = _rtn(model_dir, cfg, scheme, progress)
    else:
        ids = calibration_ids(model_dir, calib, n_calib_tokens, seq_len)
        extra["calibration"] = {
            "source": str(calib) if calib else "built-in text",
            "tokens": ids.numel(),
            "seq_len": ids.shape[1],
            "damp": damp,
        }
        items = _gptq(load_model(model_dir), ids, scheme, damp, progress)
    rank = {n: i for i, n in enumerate(expected_shapes(cfg))}
    key = lambda n: rank.get(n, rank.get(n.rsplit(".", 1)[0] + ".kv_b_proj.weight", len(rank)))  # noqa: E731
    # each tensor is written as the generator makes it: never all quantized tensors in memory at once
    return write_quantized(out_dir, model_dir, items, scheme, method, extra, order=key)
