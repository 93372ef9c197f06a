"""GGUF export: a Youtu (Dense MLA) checkpoint -> llama.cpp arch `deepseek2`, written tensor by tensor.

llama.cpp runs Youtu as DeepSeek-V2 MLA in MQA form: one KV head whose K is the latent row
[rms(latent) (r) | rope(k_rope) (dr)] and whose V is its first r values, so the KV cache holds r + dr values
per token per layer. The attention is absorbed: `attn_k_b` (W_UK per head, transposed) folds into the query
and `attn_v_b` (W_UV per head) follows the attention. Keys and tensors follow llama.cpp's own converter, which
converts YoutuForCausalLM as DeepseekV2Model (gguf-py / convert_hf_to_gguf.py), and its deepseek2 loader.

Memory stays bounded: weights are read straight from the safetensors files in row chunks with plain file reads
(no mmap), encoded and written, so peak RSS is one chunk plus the interpreter, whatever the model size.
The file is written atomically (temporary sibling + rename); any error leaves no output behind.

Sources: a float checkpoint (HF names; `f32|f16|bf16` cast, `q8_0|q4_0|q4_1` rounded by quant/'s RTN) or a
quantized checkpoint folder (docs/QUANT_FORMAT.md; its integer codes are only packed, never rounded again).
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from tqdm import tqdm

from edgeport.checkpoint import check_weights, expected_shapes, load_config
from edgeport.errors import EdgeportError
from edgeport.inputs import GGUF_MAGIC, check_tokenizer_folder
from edgeport.io import atomic_file, check_out, temp_dir_for
from edgeport.model import YoutuConfig
from edgeport.tensorfile import SafetensorsReader
from quant.formats import FLOATS, FORMATS, TABLE
from quant.policy import SCHEMES

ARCH = "deepseek2"
KQUANT_TYPES = {"q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M, "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K}
# float and block formats are quant/'s (quant.formats.TABLE); k-quants exist only in llama.cpp
TYPES = (*FLOATS, *FORMATS, *KQUANT_TYPES)
FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
}
CHUNK_BYTES = 8 * 2**20  # float32 bytes of one row chunk

# ---- the name table: HF name -> GGUF name (k_b / v_b are the two halves of kv_b_proj) ----------------
GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",  # q_lora_rank = None
    "self_attn.q_a_proj.weight": "attn_q_a.weight",
    "self_attn.q_a_layernorm.weight": "attn_q_a_norm.weight",
    "self_attn.q_b_proj.weight": "attn_q_b.weight",
    "self_attn.kv_a_proj_with_mqa.weight": "attn_kv_a_mqa.weight",
    "self_attn.kv_a_layernorm.weight": "attn_kv_a_norm.weight",
    "self_attn.k_b": "attn_k_b.weight",  # [H, r, dn]: W_UK per head, transposed
    "self_attn.v_b": "attn_v_b.weight",  # [H, dv, r]: W_UV per head
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
ROPE_ROWS = ("self_attn.q_proj.weight", "self_attn.q_b_proj.weight", "self_attn.kv_a_proj_with_mqa.weight")


def gguf_name(hf_name: str) -> str:
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if m is None or m.group(2) not in LAYER_NAMES:
        raise EdgeportError(f"no GGUF name for tensor {hf_name!r}")
    return f"blk.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"


def split_shapes(cfg: YoutuConfig) -> dict[str, tuple[int, ...]]:
    """HF names and torch shapes of the exported tensors: kv_b_proj replaced by k_b [H, r, dn], v_b [H, dv, r]."""
    H, r, dn, dv = cfg.num_attention_heads, cfg.kv_lora_rank, cfg.qk_nope_head_dim, cfg.v_head_dim
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith("self_attn.kv_b_proj.weight"):
            out[name.replace("kv_b_proj.weight", "k_b")] = (H, r, dn)
            out[name.replace("kv_b_proj.weight", "v_b")] = (H, dv, r)
        else:
            out[name] = shape
    return out


def rope_row_order(cfg: YoutuConfig, hf_name: str, rows: int) -> torch.Tensor | None:
    """Row permutation that makes llama.cpp's pairwise (NORM) rope equal HF's rotate-half rope.

    With rope_interleave = False, HF rotates (x_i, x_{i+dr/2}); ggml NORM rotates consecutive pairs. Reordering the
    rope output rows of the query and of k_rope to [0, dr/2, 1, dr/2 + 1, ...] makes them consecutive with the same
    frequency; Q and K get the same order, so every score q.k is unchanged. None when nothing moves.
    """
    if cfg.rope_interleave or not hf_name.endswith(ROPE_ROWS):
        return None
    dr = cfg.qk_rope_head_dim
    pair = torch.stack((torch.arange(dr // 2), torch.arange(dr // 2) + dr // 2), dim=1).flatten()
    order = torch.arange(rows)
    if hf_name.endswith("kv_a_proj_with_mqa.weight"):
        order[cfg.kv_lora_rank :] = cfg.kv_lora_rank + pair
    else:
        for h in range(cfg.num_attention_heads):
            start = h * cfg.qk_head_dim + cfg.qk_nope_head_dim
            order[start : start + dr] = start + pair
    return order


# ---- encoders: float rows -> GGUF bytes ----------------------------------------------------------------
def encode_float(x: torch.Tensor, t: T) -> np.ndarray:
    if t == T.F32:
        return x.to(torch.float32).numpy()
    if t == T.F16:
        return x.to(torch.float16).numpy()
    if t == T.BF16:
        return x.to(torch.bfloat16).view(torch.int16).numpy()
    raise ValueError(t)


def quantize_rows(x: torch.Tensor, fmt: str) -> np.ndarray:
    """Round float rows [n, cols] with quant/'s RTN (the `edgeport quantize` code path), then pack GGUF blocks.
    RTN is per block of 32 along a row, so rounding row chunks gives the same codes as the whole tensor."""
    from quant.formats import FORMATS

    f = FORMATS[fmt]
    return f.pack_gguf(*f.quantize(x.to(torch.float32).numpy()))


def tensor_type(hf_name: str, shape: tuple[int, ...], type: str, tied: bool) -> T:
    """GGML type of one tensor for an export `type`. Float types: norms stay F32, matrices take the type. Block
    types: quant/'s policy (norms F32, the output layer q8_0 under int4, rows not a multiple of 32 -> f16/f32)."""
    if type in FLOATS:
        return T.F32 if len(shape) == 1 else ggml_type(type)
    from quant.policy import choose

    rows = (shape[0] * shape[1], shape[2]) if len(shape) == 3 else shape  # k_b / v_b as stored by quant/
    fmt, _ = choose(hf_name, rows, type, tied)
    return ggml_type(fmt)


def ggml_type(fmt: str) -> T:
    """The GGML tensor type of a quant/ format (f32, f16, bf16, q8_0, q4_0, q4_1)."""
    return T(TABLE[fmt].ggml_type)


# ---- the plan: every GGUF tensor, its ggml shape and type, and how to produce its rows --------------------
@dataclass
class Planned:
    name: str  # GGUF name
    shape: tuple[int, ...]  # torch order (ggml ne reversed)
    type: T
    chunks: Callable[[], Iterator[np.ndarray]]  # encoded row chunks, concatenated = the tensor

    @property
    def nbytes(self) -> int:
        block, size = gguf.GGML_QUANT_SIZES[self.type]
        return int(np.prod(self.shape)) // block * size


def parallel(
    fn: Callable[[Any], np.ndarray], items: Iterable[Any], workers: int | None = None
) -> Iterator[np.ndarray]:
    """fn over items on a thread pool (numpy and torch release the GIL), results in order, at most 2 * workers
    chunks in flight, so memory stays bounded while reading, rounding and writing overlap."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _row_chunks(rows: int, row_values: int) -> Iterator[tuple[int, int]]:
    step = max(1, CHUNK_BYTES // (4 * max(row_values, 1)))
    for a in range(0, rows, step):
        yield a, min(rows, a + step)


def plan_float(folder: Path, cfg: YoutuConfig, type: str) -> list[Planned]:
    # names, shapes and float dtypes checked from the headers before any read
    w = SafetensorsReader(list(check_weights(folder, cfg)))  # row ranges by plain reads: RSS holds one chunk
    shapes = expected_shapes(cfg)

    def encode(x: torch.Tensor, t: T) -> np.ndarray:
        return encode_float(x, t) if t in (T.F32, T.F16, T.BF16) else quantize_rows(x, t.name.lower())

    def rows(hf: str, t: T) -> Callable[[], Iterator[np.ndarray]]:
        def gen() -> Iterator[np.ndarray]:
            shape = shapes[hf]
            order = rope_row_order(cfg, hf, shape[0])
            if order is not None:
                yield encode(w.read(hf).float()[order], t)
                return
            if len(shape) == 1:
                yield encode(w.read(hf).float(), t)
                return
            yield from parallel(
                lambda ab: encode(w.read(hf, *ab).float(), t), _row_chunks(shape[0], shape[1])
            )

        return gen

    def kv_half(hf_kv_b: str, half: str, t: T) -> Callable[[], Iterator[np.ndarray]]:
        def gen() -> Iterator[np.ndarray]:
            H, dn, dv, r = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
            kv = w.read(hf_kv_b).float().view(H, dn + dv, r)
            part = kv[:, :dn].transpose(1, 2) if half == "k_b" else kv[:, dn:]
            yield encode(part.reshape(-1, part.shape[-1]).contiguous(), t)

        return gen

    plan = []
    for hf, shape in _ordered(split_shapes(cfg)):
        t = tensor_type(hf, shape, type, cfg.tie_word_embeddings)
        if hf.endswith(("self_attn.k_b", "self_attn.v_b")):
            src = hf.rsplit(".", 1)[0] + ".kv_b_proj.weight"
            plan.append(Planned(gguf_name(hf), shape, t, kv_half(src, hf.rsplit(".", 1)[1], t)))
        else:
            plan.append(Planned(gguf_name(hf), shape, t, rows(hf, t)))
    return plan


def _ordered(shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
    """token_embd, then the layers in order, then output_norm / output (llama.cpp's own order)."""

    def key(item: tuple[str, tuple[int, ...]]) -> tuple[int, int, str]:
        m = re.match(r"model\.layers\.(\d+)\.", item[0])
        if m:
            return (1, int(m.group(1)), item[0])
        return (0 if "embed_tokens" in item[0] else 2, 0, item[0])

    return sorted(shapes.items(), key=key)


def plan_quantized(folder: Path, cfg: YoutuConfig) -> tuple[list[Planned], str]:
    """Plan a quantized checkpoint (docs/QUANT_FORMAT.md): block tensors are packed from their stored codes and
    fp16 scales (no rounding again); float tensors keep their stored dtype. Returns (plan, file type)."""
    from quant.checkpoint import QuantReader, QuantTensor

    q = QuantReader(folder)  # checks quant_config.json against the safetensors header, reads row ranges
    qc, meta = q.config, q.tensors
    shapes = split_shapes(cfg)
    for name in shapes:
        if name not in meta:
            raise EdgeportError(f"missing tensor {name!r} in quant_config.json", folder / "quant_config.json")

    def rows(name: str, fmt: str) -> Callable[[], Iterator[np.ndarray]]:
        want = (
            (shapes[name][0] * shapes[name][1], shapes[name][2]) if len(shapes[name]) == 3 else shapes[name]
        )
        if q.shape(name) != want:
            raise EdgeportError(
                f"tensor {name!r} has shape {q.shape(name)}, config.json implies {want}",
                folder / "quant_config.json",
            )

        def encode(
            a: int | None = None, b: int | None = None, order: torch.Tensor | None = None
        ) -> np.ndarray:
            t = q.read(name, a or 0, b)
            if isinstance(t, np.ndarray):
                return encode_float(
                    torch.from_numpy(t if order is None else t[order.numpy()]), ggml_type(fmt)
                )
            if order is not None:
                t = QuantTensor(t.format, *(x[order.numpy()] for x in t.arrays))
            return t.pack_gguf()

        def gen() -> Iterator[np.ndarray]:
            order = rope_row_order(cfg, name, want[0])
            if order is not None or len(want) == 1:
                yield encode(order=order)
                return
            yield from parallel(lambda ab: encode(*ab), _row_chunks(want[0], want[1]))

        return gen

    plan = [
        Planned(gguf_name(hf), shape, ggml_type(meta[hf]["format"]), rows(hf, meta[hf]["format"]))
        for hf, shape in _ordered(shapes)
    ]
    return plan, SCHEMES.get(qc.get("scheme"), "q8_0")


# ---- metadata ----------------------------------------------------------------------------------------
def model_name(folder: Path, cfg: YoutuConfig) -> tuple[str, str]:
    """general.name and general.size_label: the name config.json gives the model ("name", "model_name" or
    "_name_or_path", last path part), else "Youtu <size>"; never the folder or the quantization scheme, so every
    export of one model shows the same name in LM Studio / Ollama. The size label is gguf-py's own (e.g. 1.1M)."""
    label = gguf.size_label(sum(_numel(s) for s in expected_shapes(cfg).values()), 0, 0, 0)
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raw = {}
    for key in ("name", "model_name", "_name_or_path"):
        value = raw.get(key) if isinstance(raw, dict) else None
        if isinstance(value, str) and value.strip().strip("/"):
            return value.strip().rstrip("/").rsplit("/", 1)[-1], label
    return f"Youtu {label}", label


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def add_model_kv(writer: gguf.GGUFWriter, cfg: YoutuConfig, type: str, name: tuple[str, str]) -> None:
    """The deepseek2 hyper-parameters exactly as llama.cpp's converter writes them for YoutuForCausalLM, plus the
    two keys older llama.cpp builds (in LM Studio / Ollama releases) require of every deepseek2 file, dense or not:
    their loader read `expert_weights_scale` and `rope.scaling.yarn_log_multiplier` without a default and refused
    the file without them. Both are neutral here: no expert is ever routed, and the YaRN factor multiplies
    log(1 / freq_scale) = 0 without rope scaling."""
    L, r, dr = cfg.num_hidden_layers, cfg.kv_lora_rank, cfg.qk_rope_head_dim
    writer.add_name(name[0])
    writer.add_size_label(name[1])
    writer.add_block_count(L)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(1)  # MLA as MQA: one wide latent KV head
    writer.add_rope_freq_base(cfg.rope_theta)
    # llama.cpp uses this eps for every RMSNorm; HF's q_a/kv_a norms use 1e-6, equal for Youtu's config
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_file_type(FILE_TYPES[type])
    writer.add_leading_dense_block_count(L)  # no experts: every layer takes the dense FFN
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_q_lora_rank(cfg.q_lora_rank or 0)  # 0: llama.cpp loads `attn_q` instead of q_a/q_b
    writer.add_kv_lora_rank(r)
    writer.add_key_length(r + dr)
    writer.add_value_length(r)
    writer.add_key_length_mla(cfg.qk_head_dim)
    writer.add_value_length_mla(cfg.v_head_dim)
    writer.add_expert_feed_forward_length(cfg.intermediate_size)
    writer.add_expert_shared_count(0)
    writer.add_expert_weights_scale(1.0)  # required by older loaders (see above)
    writer.add_rope_dimension_count(dr)
    writer.add_rope_scaling_yarn_log_mul(0.0)  # required by older loaders (see above)
    if type in FORMATS:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _token_id(tok: Any, ids: dict[str, int]) -> int | None:
    if isinstance(tok, dict):
        tok = tok.get("content")
    return ids.get(tok) if isinstance(tok, str) else None


def add_tokenizer_kv(writer: gguf.GGUFWriter, folder: Path, cfg: YoutuConfig) -> None:
    """Byte-level BPE as llama.cpp's `gpt2` model with the `youtu` pre-tokenizer, special tokens as CONTROL,
    bos/eos/pad, add_bos_token false (the chat template writes BOS) and the Jinja chat template."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise EdgeportError("missing tokenizer.json (a GGUF carries the tokenizer)", folder)
    try:
        tj = json.loads(path.read_text())
        model = tj["model"]
        vocab: dict[str, int] = dict(model["vocab"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise EdgeportError(f"invalid tokenizer.json ({e})", path) from None
    if model.get("type") != "BPE":
        raise EdgeportError(
            f"tokenizer model {model.get('type')!r} is not supported (expected byte-level BPE)", path
        )
    added = {int(t["id"]): t for t in tj.get("added_tokens", [])}
    n = cfg.vocab_size
    top = max([*vocab.values(), *added, -1])
    if top >= n:
        raise EdgeportError(f"tokenizer has token id {top}, but config.json vocab_size is {n}", path)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, gguf.TokenType.NORMAL
    for i, t in added.items():
        tokens[i] = t["content"]
        types[i] = gguf.TokenType.CONTROL if t.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    tc: dict[str, Any] = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            tc = json.loads((folder / "tokenizer_config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EdgeportError(f"invalid JSON ({e})", folder / "tokenizer_config.json") from None
    ids = {tok: i for i, tok in enumerate(tokens)}
    bos = _token_id(tc.get("bos_token"), ids)
    eos = _token_id(tc.get("eos_token"), ids)
    pad = _token_id(tc.get("pad_token"), ids)
    bos = cfg.bos_token_id if bos is None else bos
    cfg_eos = cfg.eos_token_id[0] if isinstance(cfg.eos_token_id, list) else cfg.eos_token_id
    eos = cfg_eos if eos is None else eos
    pad = (cfg.pad_token_id if cfg.pad_token_id is not None else eos) if pad is None else pad
    template = tc.get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("youtu")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if bos is not None:
        writer.add_bos_token_id(bos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    if pad is not None:
        writer.add_pad_token_id(pad)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if template:
        writer.add_chat_template(template)


def check_supported(folder: Path, cfg: YoutuConfig) -> None:
    raw = json.loads((folder / "config.json").read_text())
    arch = (raw.get("architectures") or ["YoutuForCausalLM"])[0]
    if arch not in ("YoutuForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"):
        raise EdgeportError(
            f"unsupported architecture {arch!r} (expected YoutuForCausalLM)", folder / "config.json"
        )
    if raw.get("n_routed_experts"):
        raise EdgeportError(
            "mixture-of-experts checkpoints are not supported (dense MLA only)", folder / "config.json"
        )
    if cfg.attention_bias:
        raise EdgeportError(
            "attention_bias = true is not supported by llama.cpp's deepseek2", folder / "config.json"
        )
    if cfg.qk_rope_head_dim % 2:
        raise EdgeportError("qk_rope_head_dim must be even", folder / "config.json")


# ---- writing -----------------------------------------------------------------------------------------
def _write(f: Any, data: memoryview | bytes) -> None:
    f.write(data)


def write_gguf(out_file: Path, writer: gguf.GGUFWriter, plan: list[Planned], progress: bool = True) -> None:
    """Header, KV and tensor infos through gguf-py, then each tensor's chunks in plan order, atomically."""
    align = writer.data_alignment
    for p in plan:
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.nbytes, raw_dtype=p.type)
    total = sum(p.nbytes for p in plan)
    with atomic_file(out_file, magic=GGUF_MAGIC) as f:
        writer.fout, writer.state = [f], gguf.gguf_writer.WriterState.EMPTY
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        pos = f.tell()
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"gguf {out_file.name}", disable=not progress)
        with bar:
            for p in plan:
                pad = -pos % align
                _write(f, b"\0" * pad)
                pos += pad
                written = 0
                for chunk in p.chunks():
                    data = memoryview(np.ascontiguousarray(chunk)).cast("B")
                    _write(f, data)
                    written += len(data)
                    bar.update(len(data))
                if written != p.nbytes:
                    raise EdgeportError(
                        f"tensor {p.name}: wrote {written} bytes, expected {p.nbytes}", out_file
                    )
                pos += written
            _write(f, b"\0" * (-pos % align))
        writer.fout = None


def export_gguf(
    model_dir: str | Path, out_file: str | Path, type: str | None = None, progress: bool = True
) -> Path:
    """Export a checkpoint folder to one GGUF file for llama.cpp and return its path.

    `type`: f32|f16|bf16|q8_0|q4_0|q4_1|q4_k_m|q6_k for a float checkpoint (default f16); for a quantized
    checkpoint folder (quant_config.json) leave it None (or pass its own scheme): its codes are packed as they are.
    """
    folder, out = Path(model_dir), Path(out_file)
    check_out(
        out, folder=False, magic=GGUF_MAGIC
    )  # before any work: never overwrite what edgeport did not make
    type = type.lower() if type else None
    if type is not None and type not in TYPES:
        raise EdgeportError(f"unknown GGUF type {type!r}; choose from {', '.join(TYPES)}")
    if type in KQUANT_TYPES:
        if (folder / "quant_config.json").is_file():
            raise EdgeportError(
                f"{type} is made from a float checkpoint; this folder is already quantized", folder
            )
        return _export_kquant(folder, out, type, progress)
    cfg = load_config(folder)
    check_supported(folder, cfg)
    if (folder / "quant_config.json").is_file():
        plan, own = plan_quantized(folder, cfg)
        if type not in (None, own):
            raise EdgeportError(
                f"already quantized ({own}): export it without --type, or pass --type {own}", folder
            )
        type = own
    else:
        type = type or "f16"
        plan = plan_float(folder, cfg, type)
    writer = gguf.GGUFWriter(None, ARCH)
    add_model_kv(writer, cfg, type, model_name(folder, cfg))
    check_tokenizer_folder(folder, cfg.vocab_size)
    add_tokenizer_kv(writer, folder, cfg)
    write_gguf(out, writer, plan, progress)  # atomic_file gives it the usual permissions
    return out


def _export_kquant(folder: Path, out: Path, type: str, progress: bool) -> Path:
    """k-quants exist only in llama.cpp: export F16, then run llama.cpp's own `llama_model_quantize`."""
    import llama_cpp

    with temp_dir_for(out) as tmp:  # named like atomic_file's temporaries, so a killed run's is collected
        f16 = export_gguf(folder, Path(tmp) / "f16.gguf", "f16", progress)
        dst = Path(tmp) / "out.gguf"
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = int(KQUANT_TYPES[type])
        params.nthread = os.cpu_count() or 1
        from edgeport.logs import captured_log

        with captured_log() as log:
            rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(dst).encode(), params)
        if rc != 0 or not dst.is_file():
            last = [ln.strip() for ln in log if ln.strip()][-1:] or [""]
            raise EdgeportError(f"llama_model_quantize to {type} failed (code {rc}: {last[0]})", out)
        os.replace(dst, out)  # llama.cpp created dst with the usual permissions
    return out
