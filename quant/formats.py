"""Block formats shared by llama.cpp (GGUF) and onnxruntime (MatMulNBits): Q8_0, Q4_0, Q4_1.

A weight [rows, cols] is cut into blocks of 32 along cols (the reduction axis). Each block gets one fp16
scale (and, for Q4_1, one fp16 min); each element one small integer code. The rounding is bit-exact with
llama.cpp's reference quantizers (ggml-quants.c quantize_row_*_ref), all arithmetic in float32:

    Q8_0  d = amax / 127,        code = roundf(x / d)              in -127..127,  x ~ code * d
    Q4_0  d = max / -8           code = min(15, trunc(x/d + 8.5))  in 0..15,      x ~ (code - 8) * d
          (max = the element with the largest |x|, first one on ties)
    Q4_1  d = (max - min) / 15,  code = min(15, trunc((x-min)/d + 0.5)),          x ~ code * d + min

where "x / d" is x * (1/d) (0 when d == 0), d is rounded to fp16 only when stored. Codes are what the
quantized checkpoint stores (unpacked, one per byte); the byte layouts below are produced on demand.

GGUF block layout (`pack_gguf`, identical to gguf-py / ggml), per row, blocks in order:
    Q8_0: fp16 d | 32 x int8 code                                   (34 bytes)
    Q4_0: fp16 d | 16 bytes, byte j = code[j] | code[j + 16] << 4   (18 bytes)
    Q4_1: fp16 d | fp16 min | 16 bytes as Q4_0                      (20 bytes)
ORT MatMulNBits layout (`pack_matmulnbits`): B uint8 [N=rows, n_blocks, 32 * bits / 8]; 4 bits: byte i of a
block = code[2i] | code[2i + 1] << 4 (zero point 8 = the Q4_0 code offset); 8 bits: code + 128 (zero point
128); scales float32 [N * n_blocks].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32
F32 = np.float32


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, F32(0), F32(1) / d).astype(F32)


def _roundf(x: np.ndarray) -> np.ndarray:
    """C roundf (half away from zero), exact in float32 (no x + 0.5 rounding surprise)."""
    a = np.abs(x)
    fl = np.floor(a)
    return np.sign(x) * (fl + np.floor(2 * (a - fl)))


def _blocks(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=F32)
    if w.ndim != 2 or w.shape[1] % BLOCK:
        raise ValueError(f"expected a 2-D array with columns a multiple of {BLOCK}, got shape {w.shape}")
    return w.reshape(w.shape[0], w.shape[1] // BLOCK, BLOCK)


class BlockFormat:
    """One block format. `quantize(w) -> (codes, scales[, mins])`; every other method takes those arrays."""

    name: str
    ggml_type: int  # gguf.GGMLQuantizationType value
    bits: int
    block_bytes: int  # bytes per block in GGUF
    asymmetric = False

    # ---- the rounding rule: params from blocks, codes from values, values from codes ---------------------
    @classmethod
    def params(cls, blocks: np.ndarray) -> tuple[np.ndarray, ...]:
        """float32 (d, id[, min]) of blocks [..., n], each [..., 1]: scale chosen from these values."""
        raise NotImplementedError

    @classmethod
    def encode(cls, x: np.ndarray, p: tuple[np.ndarray, ...]) -> np.ndarray:
        """Codes of float32 values x given params p (broadcast), clipped to the format's range."""
        raise NotImplementedError

    @classmethod
    def decode(cls, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray | None = None) -> np.ndarray:
        """float32 values of codes with the stored (fp16) scale / min broadcast against them."""
        raise NotImplementedError

    @classmethod
    def stored(cls, p: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """The fp16 (scale[, min]) a block stores for params p."""
        out = (p[0].astype(np.float16),)
        return out + (p[2].astype(np.float16),) if cls.asymmetric else out

    # ---- whole tensors ------------------------------------------------------------------------------------
    @classmethod
    def quantize(cls, w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Round-to-nearest: codes [rows, cols], scales float16 [rows, cols/32] (and mins for Q4_1)."""
        b = _blocks(w)
        p = cls.params(b)
        codes = cls.encode(b, p).reshape(w.shape)
        return (codes,) + tuple(s[..., 0] for s in cls.stored(p))

    @classmethod
    def dequantize(cls, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray | None = None) -> np.ndarray:
        rows, cols = codes.shape
        c = codes.reshape(rows, cols // BLOCK, BLOCK)
        m = None if mins is None else mins[..., None]
        return cls.decode(c, scales[..., None], m).reshape(rows, cols)

    @classmethod
    def pack_gguf(cls, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray | None = None) -> np.ndarray:
        """GGUF bytes as uint8 [rows, n_blocks * block_bytes] (what gguf.quants.quantize returns;
        pass it to GGUFWriter.add_tensor(..., raw_dtype=...), or .tobytes())."""
        rows, cols = codes.shape
        nb = cols // BLOCK
        parts = [scales.astype(np.float16).reshape(rows, nb, 1).view(np.uint8)]
        if cls.asymmetric:
            parts.append(mins.astype(np.float16).reshape(rows, nb, 1).view(np.uint8))
        c = codes.reshape(rows, nb, BLOCK)
        if cls.bits == 8:
            parts.append(c.astype(np.int8).view(np.uint8))
        else:
            c = c.astype(np.uint8)
            parts.append(c[..., : BLOCK // 2] | (c[..., BLOCK // 2 :] << np.uint8(4)))
        return np.concatenate(parts, axis=-1).reshape(rows, nb * cls.block_bytes)

    @classmethod
    def unpack_gguf(cls, data: np.ndarray | bytes, rows: int, cols: int) -> tuple[np.ndarray, ...]:
        """Inverse of pack_gguf: (codes, scales[, mins]) of a [rows, cols] tensor from its GGUF bytes."""
        nb = cols // BLOCK
        b = (
            np.frombuffer(bytes(data), dtype=np.uint8)
            if isinstance(data, bytes)
            else np.asarray(data, np.uint8)
        )
        b = b.reshape(rows, nb, cls.block_bytes)
        scales = b[..., 0:2].copy().view(np.float16)[..., 0]
        off = 2
        mins = None
        if cls.asymmetric:
            mins = b[..., 2:4].copy().view(np.float16)[..., 0]
            off = 4
        q = b[..., off:]
        if cls.bits == 8:
            codes = q.copy().view(np.int8)
        else:
            codes = np.concatenate([q & np.uint8(0x0F), q >> np.uint8(4)], axis=-1)
        codes = codes.reshape(rows, cols)
        return (codes, scales) if mins is None else (codes, scales, mins)


class Q8_0(BlockFormat):
    name, ggml_type, bits, block_bytes = "q8_0", 8, 8, 34

    @classmethod
    def params(cls, blocks: np.ndarray) -> tuple[np.ndarray, ...]:
        d = (np.abs(blocks).max(axis=-1, keepdims=True) / F32(127)).astype(F32)
        return d, _inverse(d)

    @classmethod
    def encode(cls, x: np.ndarray, p: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.clip(_roundf((x * p[1]).astype(F32)), -127, 127).astype(np.int8)

    @classmethod
    def decode(cls, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray | None = None) -> np.ndarray:
        return scales.astype(F32) * codes.astype(F32)


class Q4_0(BlockFormat):
    name, ggml_type, bits, block_bytes = "q4_0", 2, 4, 18

    @classmethod
    def params(cls, blocks: np.ndarray) -> tuple[np.ndarray, ...]:
        i = np.abs(blocks).argmax(axis=-1)[..., None]  # first index on ties, like the C loop's strict `<`
        d = (np.take_along_axis(blocks, i, axis=-1) / F32(-8)).astype(F32)
        return d, _inverse(d)

    @classmethod
    def encode(cls, x: np.ndarray, p: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.clip(np.trunc((x * p[1]).astype(F32) + F32(8.5)), 0, 15).astype(np.uint8)

    @classmethod
    def decode(cls, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray | None = None) -> np.ndarray:
        return scales.astype(F32) * (codes.astype(np.int8) - np.int8(8)).astype(F32)


class Q4_1(BlockFormat):
    name, ggml_type, bits, block_bytes = "q4_1", 3, 4, 20
    asymmetric = True

    @classmethod
    def params(cls, blocks: np.ndarray) -> tuple[np.ndarray, ...]:
        lo = blocks.min(axis=-1, keepdims=True).astype(F32)
        d = ((blocks.max(axis=-1, keepdims=True) - lo) / F32(15)).astype(F32)
        return d, _inverse(d), lo

    @classmethod
    def encode(cls, x: np.ndarray, p: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.clip(np.trunc(((x - p[2]) * p[1]).astype(F32) + F32(0.5)), 0, 15).astype(np.uint8)

    @classmethod
    def decode(cls, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray | None = None) -> np.ndarray:
        return scales.astype(F32) * codes.astype(F32) + mins.astype(F32)


FORMATS: dict[str, type[BlockFormat]] = {f.name: f for f in (Q8_0, Q4_0, Q4_1)}
# float formats -> the numpy dtype they are read back as (numpy has no bf16: float32)
FLOATS = {"f32": np.float32, "f16": np.float16, "bf16": np.float32}


@dataclass(frozen=True)
class Format:
    """What every exporter and runtime calls one weight format: its GGML type (gguf.GGMLQuantizationType value),
    bits per stored value, the ONNX precision that holds it, and the `edgeport validate` gate of that precision."""

    ggml_type: int
    bits: int
    onnx: str
    gate: str


# The one table of formats (GGML type values from ggml.h: F32 0, F16 1, BF16 30; block formats carry their own).
TABLE: dict[str, Format] = {
    "f32": Format(0, 32, "fp32", "fp32"),
    "f16": Format(1, 16, "fp16", "f16"),
    "bf16": Format(30, 16, "fp16", "f16"),
    **{n: Format(f.ggml_type, f.bits, f"int{f.bits}", f"int{f.bits}") for n, f in FORMATS.items()},
}


def gate_class(precision: str) -> str:
    """The validate gate of an artifact precision: a format name (f16, q4_0, ...) or an ONNX precision (int4)."""
    if precision in TABLE:
        return TABLE[precision].gate
    return next((f.gate for f in TABLE.values() if f.onnx == precision), precision)


def pack_matmulnbits(
    codes: np.ndarray, scales: np.ndarray, bits: int, mins: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """ORT com.microsoft.MatMulNBits inputs (B, scales, zero_points) for a weight [N, K] in block-32 codes.

    B uint8 [N, K/32, 32*bits/8]: 4 bits -> byte i of a block = code[2i] | code[2i+1] << 4 with Q4_0 codes
    (default zero point 8); 8 bits -> Q8_0 code + 128 (default zero point 128). scales float32 [N * K/32].
    zero_points is None (the default zero point is exact) except for Q4_1 codes (pass `mins`): then float32
    [N * K/32] = -min / scale, which reproduces code*scale + min only to float rounding (not bit-exact).
    """
    rows, cols = codes.shape
    nb = cols // BLOCK
    c = codes.reshape(rows, nb, BLOCK)
    if bits == 8:
        if mins is not None:
            raise ValueError("8-bit MatMulNBits packing takes symmetric Q8_0 codes (no mins)")
        b = (c.astype(np.int16) + 128).astype(np.uint8)
    elif bits == 4:
        c = c.astype(np.uint8)
        b = c[..., 0::2] | (c[..., 1::2] << np.uint8(4))
    else:
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    s = scales.astype(F32).reshape(rows * nb)
    zp = None
    if mins is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            zp = np.where(s == 0, F32(0), -mins.astype(F32).reshape(-1) / s).astype(F32)
    return np.ascontiguousarray(b), s, zp


def unpack_matmulnbits(b: np.ndarray, bits: int) -> np.ndarray:
    """Codes [N, K] back from a MatMulNBits B [N, K/32, blob] (Q4_0 codes for 4 bits, Q8_0 codes for 8)."""
    rows, nb, _ = b.shape
    if bits == 8:
        return (b.astype(np.int16) - 128).astype(np.int8).reshape(rows, nb * BLOCK)
    out = np.empty((rows, nb, BLOCK), np.uint8)
    out[..., 0::2] = b & np.uint8(0x0F)
    out[..., 1::2] = b >> np.uint8(4)
    return out.reshape(rows, nb * BLOCK)
