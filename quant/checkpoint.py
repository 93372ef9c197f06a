"""The quantized checkpoint folder (docs/QUANT_FORMAT.md): written tensor by tensor, atomically; read lazily,
row range by row range, with plain reads (edgeport.tensorfile), so neither side holds the whole model.

    config.json + tokenizer files     copied from the float checkpoint
    quant_config.json                 {"format": "edgeport-quant", "version": 2, "scheme", "method", "block_size": 32,
                                       "tensors": {NAME: {"format", "shape", "note"}}}
    model.safetensors                 NAME.codes / NAME.scales [/ NAME.mins] for block formats, NAME for floats;
                                      4-bit codes two per byte (element 2i low nibble, 2i+1 high nibble)

kv_b_proj is stored as its absorbed halves `k_b` [H*r, dn] (W_UK per head, transposed) and `v_b` [H*dv, r].
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeport.errors import EdgeportError
from edgeport.inputs import check_quant_config
from edgeport.io import atomic_dir
from edgeport.tensorfile import SafetensorsReader, SafetensorsWriter
from quant.formats import BLOCK, FLOATS, FORMATS, BlockFormat, pack_matmulnbits

FORMAT_NAME, VERSION = "edgeport-quant", 2  # 2: 4-bit codes two per byte (1 stored one code per byte)
COPY_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
)


@dataclass
class QuantTensor:
    """One block-quantized matrix: codes [rows, cols] (int8 for q8_0, uint8 0..15 for q4_*), fp16 scales
    [rows, cols/32] and, for q4_1, fp16 mins. Value of element (i, j) = decode(codes, scales[i, j // 32])."""

    format: str
    codes: np.ndarray
    scales: np.ndarray
    mins: np.ndarray | None = None

    @property
    def fmt(self) -> type[BlockFormat]:
        return FORMATS[self.format]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.codes, self.scales) if self.mins is None else (self.codes, self.scales, self.mins)

    @property
    def ggml_type(self) -> int:
        return self.fmt.ggml_type

    def dequantize(self) -> np.ndarray:
        return self.fmt.dequantize(*self.arrays)

    def pack_gguf(self) -> np.ndarray:
        """uint8 [rows, n_blocks * block_bytes]: GGUF block bytes, ready for GGUFWriter(raw_dtype=ggml_type)."""
        return self.fmt.pack_gguf(*self.arrays)

    def pack_matmulnbits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(B, scales, zero_points) for ORT MatMulNBits with bits = self.fmt.bits, block_size 32."""
        return pack_matmulnbits(self.codes, self.scales, self.fmt.bits, self.mins)

    @classmethod
    def quantize(cls, w: np.ndarray, format: str) -> QuantTensor:
        return cls(format, *FORMATS[format].quantize(w))


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """4-bit codes [rows, cols] (0..15) -> uint8 [rows, cols/2]: byte i = code[2i] | code[2i+1] << 4 (the
    MatMulNBits order, so the ONNX exporter can take the bytes as they are)."""
    c = np.asarray(codes, np.uint8)
    return c[:, 0::2] | (c[:, 1::2] << np.uint8(4))


def unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_nibbles: uint8 [rows, cols/2] -> codes uint8 [rows, cols]."""
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    out[:, 0::2] = packed & np.uint8(0x0F)
    out[:, 1::2] = packed >> np.uint8(4)
    return out


# ---- kv_b <-> (k_b, v_b) -------------------------------------------------------------------------------
def _dims(cfg: Any) -> tuple[int, int, int, int]:
    get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
    return get("num_attention_heads"), get("qk_nope_head_dim"), get("v_head_dim"), get("kv_lora_rank")


def split_kv_b(kv_b: np.ndarray, cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """kv_b [H*(dn+dv), r] -> k_b [H*r, dn] (W_UK per head, transposed), v_b [H*dv, r] (W_UV per head)."""
    h, dn, dv, r = _dims(cfg)
    w = np.asarray(kv_b).reshape(h, dn + dv, r)
    k_b = np.ascontiguousarray(w[:, :dn].transpose(0, 2, 1)).reshape(h * r, dn)
    return k_b, np.ascontiguousarray(w[:, dn:]).reshape(h * dv, r)


def merge_kv_b(k_b: np.ndarray, v_b: np.ndarray, cfg: Any) -> np.ndarray:
    """Inverse of split_kv_b: kv_b [H*(dn+dv), r]."""
    h, dn, dv, r = _dims(cfg)
    k = np.asarray(k_b).reshape(h, r, dn).transpose(0, 2, 1)
    return np.concatenate([k, np.asarray(v_b).reshape(h, dv, r)], axis=1).reshape(h * (dn + dv), r)


def kv_b_heads(k_b: np.ndarray, v_b: np.ndarray, cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """k_b as [H, r, dn] and v_b as [H, dv, r] (the ggml attn_k_b / attn_v_b tensors in torch order)."""
    h, dn, dv, r = _dims(cfg)
    return np.asarray(k_b).reshape(h, r, dn), np.asarray(v_b).reshape(h, dv, r)


def quant_names(name: str, w: np.ndarray, cfg: Any) -> list[tuple[str, np.ndarray]]:
    """HF (name, tensor) -> the checkpoint's (name, tensor)s: kv_b_proj.weight becomes k_b and v_b."""
    if name.endswith("self_attn.kv_b_proj.weight"):
        prefix = name[: -len("kv_b_proj.weight")]
        k_b, v_b = split_kv_b(w, cfg)
        return [(prefix + "k_b", k_b), (prefix + "v_b", v_b)]
    return [(name, w)]


# ---- write ---------------------------------------------------------------------------------------------
def write_quantized(
    out_dir: str | Path,
    src_dir: str | Path,
    tensors: Iterable[tuple[str, QuantTensor | np.ndarray, str]],
    scheme: str,
    method: str,
    extra: dict[str, Any] | None = None,
    order: Callable[[str], Any] | None = None,
) -> Path:
    """Write (name, QuantTensor | float array, note) tensors as a quantized checkpoint folder, atomically. Each
    tensor is written as it comes (give a generator to keep one tensor in memory); quant_config.json lists them
    sorted by `order` (a sort key on names), else in the order they came."""
    out_dir = Path(out_dir)
    meta: dict[str, dict[str, Any]] = {}
    with atomic_dir(out_dir, marker="quant_config.json") as tmp:  # replaces only an earlier quantized folder
        for f in COPY_FILES:
            if (Path(src_dir) / f).is_file():
                shutil.copyfile(Path(src_dir) / f, tmp / f)
        writer = SafetensorsWriter(tmp / "model.safetensors", metadata={"format": FORMAT_NAME})
        for name, t, note in tensors:
            if isinstance(t, QuantTensor):
                writer.add(f"{name}.codes", pack_nibbles(t.codes) if t.fmt.bits == 4 else t.codes)
                writer.add(f"{name}.scales", t.scales.astype(np.float16))
                if t.mins is not None:
                    writer.add(f"{name}.mins", t.mins.astype(np.float16))
                fmt = t.format
            else:
                fmt = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}[np.dtype(t.dtype)]
                writer.add(name, t)
            meta[name] = {"format": fmt, "shape": list(t.shape), "note": note}
            del t  # the caller's generator may now free this tensor
        writer.close()
        config = {
            "format": FORMAT_NAME,
            "version": VERSION,
            "scheme": scheme,
            "method": method,
            "block_size": BLOCK,
            **(extra or {}),
            "tensors": {k: meta[k] for k in (sorted(meta, key=order) if order else meta)},
        }
        (tmp / "quant_config.json").write_text(_dumps(config))
    return out_dir


def _dumps(config: dict[str, Any]) -> str:
    """JSON with one line per tensor, so quant_config.json stays readable for real models."""
    head = json.dumps({k: v for k, v in config.items() if k != "tensors"}, indent=2)[:-2]
    rows = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in config["tensors"].items())
    return f'{head},\n  "tensors": {{\n{rows}\n  }}\n}}\n'


# ---- read ----------------------------------------------------------------------------------------------
def read_quant_config(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / "quant_config.json"
    if not folder.is_dir():
        raise EdgeportError("not a folder (expected a quantized checkpoint folder)", folder)
    if not path.is_file():
        raise EdgeportError(
            "missing quant_config.json: not a quantized checkpoint (run edgeport quantize)", folder
        )
    try:
        qc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgeportError(f"invalid JSON ({e})", path) from None
    if not isinstance(qc, dict) or qc.get("format") != FORMAT_NAME or not isinstance(qc.get("tensors"), dict):
        raise EdgeportError(f"not an {FORMAT_NAME} quant_config (format/tensors missing)", path)
    if qc.get("version") != VERSION:
        raise EdgeportError(
            f"unsupported version {qc.get('version')!r} (this edgeport reads {VERSION}; "
            "quantize the float checkpoint again)",
            path,
        )
    check_quant_config(qc, path, {*FORMATS, *FLOATS})  # schema: one line naming the key (edgeport.inputs)
    for name, m in qc["tensors"].items():
        if not isinstance(m, dict) or (m.get("format") not in FORMATS and m.get("format") not in FLOATS):
            raise EdgeportError(f"tensor {name!r}: unknown format {m.get('format')!r}", path)
    return qc


def is_quantized(folder: str | Path) -> bool:
    return (Path(folder) / "quant_config.json").is_file()


class QuantReader:
    """A quantized checkpoint opened lazily: quant_config.json and the safetensors header are checked up front
    (names, dtypes, shapes); `read(name, start, stop)` returns rows start:stop of one tensor."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.config = read_quant_config(self.folder)
        self.tensors: dict[str, dict[str, Any]] = self.config["tensors"]
        self.path = self.folder / "model.safetensors"
        if not self.path.is_file():
            raise EdgeportError("missing model.safetensors in quantized checkpoint", self.folder)
        self.file = SafetensorsReader([self.path])
        for name in self.tensors:
            self._check(name)

    def _check(self, name: str) -> None:
        shape, fmt = tuple(self.tensors[name]["shape"]), self.tensors[name]["format"]

        def want(key: str, dtypes: tuple[torch.dtype, ...], shp: tuple[int, ...], what: str) -> None:
            if key not in self.file:
                raise EdgeportError(f"missing tensor {key!r}", self.path)
            if self.file.dtype(key) not in dtypes or self.file.shape(key) != shp:
                got = f"{str(self.file.dtype(key)).removeprefix('torch.')}{list(self.file.shape(key))}"
                raise EdgeportError(
                    f"tensor {name!r}: {what} {got} do not match {fmt} {list(shape)}", self.path
                )

        if fmt in FLOATS:
            want(name, (torch.float32, torch.float16, torch.bfloat16), shape, "stored")
            return
        f = FORMATS[fmt]
        if len(shape) != 2 or shape[1] % BLOCK:
            raise EdgeportError(f"tensor {name!r}: {fmt} needs 2-D rows of multiples of {BLOCK}", self.path)
        rows, cols = shape
        codes = (torch.int8, (rows, cols)) if f.bits == 8 else (torch.uint8, (rows, cols // 2))
        want(f"{name}.codes", (codes[0],), codes[1], "codes")
        for part in ("scales", "mins") if f.asymmetric else ("scales",):
            want(f"{name}.{part}", (torch.float16,), (rows, cols // BLOCK), part)

    def format(self, name: str) -> str:
        return self.tensors[name]["format"]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name]["shape"])

    def read(self, name: str, start: int = 0, stop: int | None = None) -> QuantTensor | np.ndarray:
        """Rows start:stop: a QuantTensor (codes unpacked, one per byte) or a float numpy array (bf16 -> f32)."""
        if name not in self.tensors:
            raise EdgeportError(
                f"missing tensor {name!r} in quant_config.json", self.folder / "quant_config.json"
            )
        fmt = self.format(name)
        if fmt in FLOATS:
            t = self.file.read(name, start, stop)
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        f = FORMATS[fmt]
        codes = self.file.read(f"{name}.codes", start, stop).numpy()
        return QuantTensor(
            fmt,
            unpack_nibbles(codes) if f.bits == 4 else codes,
            self.file.read(f"{name}.scales", start, stop).numpy(),
            self.file.read(f"{name}.mins", start, stop).numpy() if f.asymmetric else None,
        )


def iter_quantized(folder: str | Path) -> Iterator[tuple[str, QuantTensor | np.ndarray]]:
    """Yield (name, QuantTensor | float numpy array) one tensor at a time, in checkpoint order, checked."""
    reader = QuantReader(folder)
    for name in reader.tensors:
        yield name, reader.read(name)


def load_quantized(folder: str | Path) -> dict[str, QuantTensor | np.ndarray]:
    return dict(iter_quantized(folder))


def dequantized_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """An HF float32 state dict with the exact quantized weights (k_b / v_b merged back into kv_b_proj)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    state: dict[str, torch.Tensor] = {}
    halves: dict[str, np.ndarray] = {}
    for name, t in iter_quantized(folder):
        w = t.dequantize() if isinstance(t, QuantTensor) else t.astype(np.float32)
        if name.endswith(("self_attn.k_b", "self_attn.v_b")):
            halves[name] = w
            prefix = name[:-3]
            if prefix + "k_b" in halves and prefix + "v_b" in halves:
                kv_b = merge_kv_b(halves.pop(prefix + "k_b"), halves.pop(prefix + "v_b"), cfg)
                state[prefix + "kv_b_proj.weight"] = torch.from_numpy(np.ascontiguousarray(kv_b))
            continue
        state[name] = torch.from_numpy(np.ascontiguousarray(w))
    if halves:
        raise EdgeportError(f"unpaired kv_b half {sorted(halves)[0]!r}", folder)
    return state


def load_quantized_model(folder: str | Path) -> Any:
    """edgeport.model.YoutuForCausalLM (float32) running the exact dequantized weights of the checkpoint."""
    from edgeport.checkpoint import load_config
    from edgeport.model import YoutuForCausalLM

    cfg = load_config(folder)
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    state = dequantized_state_dict(folder)
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    try:
        model.load_state_dict(state, assign=True, strict=True)
    except RuntimeError as e:
        raise EdgeportError(
            f"quantized tensors do not fit config.json ({str(e).splitlines()[0]})", folder
        ) from None
    model.tie_weights()
    return model.eval()
