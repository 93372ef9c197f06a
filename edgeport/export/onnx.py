"""ONNX export: a directly built decoder graph with a latent-only KV cache and a fused latent-attention function.

The graph is written with `onnx.helper` (no tracing). Per layer:

    h        = rms(x)                                     (SkipSimplifiedLayerNormalization chains the residual)
    q        = q_b(rms(q_a(h)))  -> [q_nope | rope(q_rope)] per head
    kv_new   = [rms(latent) | rope(k_rope)] = kv_a(h)     (kv_lora_rank + qk_rope_head_dim values per token)
    attn, present = edgeport.mla:LatentAttention(q_nope, q_rope, kv_new, past halves, attn_bias, W_UK, W_UV)
    x        = x + o_proj(attn);  x = x + down(silu(gate(h2)) * up(h2))

`LatentAttention` is an ONNX local function (one node per layer). Stock onnxruntime inlines its body:
absorbed MLA against the latent cache (q_nope.W_UK, scores vs [latent | k_rope], + attn_bias, softmax, .latent,
.W_UV). attn_bias (bottom-right causal and key padding, 0 or NEG) is computed once from `attention_mask` for all
layers. A runtime with a real MLA kernel can match the node by domain and name.

The cache holds only the latent: L = kv_lora_rank + qk_rope_head_dim values per token per layer, exposed to
onnxruntime-genai as two equal halves `past_key_values.N.key` = latent[..., :L/2] and `.value` = latent[..., L/2:],
each [B, 1, T, L/2] (genai requires equal key/value widths). When L is odd the latent gets one zero column. The
halves are float16 (fp16/int8/int4 exports: 2 bytes per value, as llama.cpp's f16 cache) or float32 (fp32 exports,
exact against torch; `kv_cache=` chooses).

`logits_to_keep` (optional int64 scalar input, default 0 = every row) makes the graph compute only the last k
rows of logits: a prefill that only needs the next token passes 1.

Tokenizer: tokenizer.json / tokenizer_config.json are copied next to the model. onnxruntime-genai 0.18's
`og.Tokenizer` rejects the Youtu pre-tokenizer regex ("Invalid regex ... \\p{M} ..."), so apps tokenize with
edgeport's tokenizer (tokenizers / the Java BPE) and feed ids to `og.Generator.append_tokens`.

Precisions: fp32 (float MatMul), fp16 (fp16 weights on disk, fp32 compute: the CPU EP has few fp16 kernels),
int8/int4 (com.microsoft MatMulNBits, accuracy_level=4, holding exactly the integer codes of the quantized
checkpoint, docs/QUANT_FORMAT.md; a float checkpoint is quantized with quant's RTN first). The absorbed W_UK/W_UV
(quant's k_b / v_b) enter the attention function as MatMulNBits codes too, multiplied head by head (ORT has no
batched-weight NBits op); when they are float in the checkpoint (rows not a multiple of 32) they enter as float.

Memory: the graph is built from shapes by make_embedding / make_layer (make_attention + make_mlp) / make_head /
make_io, each reading its weights from disk when it needs them (`Weights`: one tensor, or one row chunk of a
vocab-sized one) and writing them straight to model.onnx.data (`Builder`), so the exporter never holds the model
(peak RSS at the Youtu-LLM-2B shape: about 0.6-0.7 GiB, most of it the interpreter). Models with at most 16 MiB
of weights get them back inline in one model.onnx. model.ort is ORT's own conversion: it holds every weight plus
the flatbuffer it builds (about 2x the int4 weights), and is skipped above the format's 2 GiB limit.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeport.checkpoint import TOKENIZER_FILES, load_config
from edgeport.errors import EdgeportError
from edgeport.inputs import check_tokenizer_folder
from edgeport.io import atomic_dir, check_out
from edgeport.model import YoutuConfig, rope_cos_sin
from edgeport.tensorfile import SafetensorsReader, checkpoint_reader
from quant.checkpoint import QuantReader, QuantTensor, is_quantized, quant_names, read_quant_config
from quant.formats import FORMATS
from quant.policy import SCHEMES, onnx_precision

OPSET = 23
MLA_DOMAIN = "edgeport.mla"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
BLOCK = 32
# Weights always stream to model.onnx.data while the graph is built; a model with at most this many initializer
# bytes (the default model has 4.5 MiB) gets them back inside one self-contained model.onnx. onnxruntime-genai's
# own builder always writes external data; 16 MiB keeps that read-back small.
EXTERNAL_DATA_BYTES = 16 * 2**20
INLINE_MAX_BYTES = 1024  # smaller initializers (shape constants, tiny norms) stay in model.onnx regardless
ALIGN = 4096  # external tensors start page-aligned, so onnxruntime can map them instead of copying
CHUNK_BYTES = 8 * 2**20  # float32 bytes of a tensor read / converted / packed at a time
ORT_FORMAT_MAX_BYTES = 1_900_000_000  # .ort is one flatbuffer (2 GiB limit, no external data)
NEG = -3.0e38  # masked score (finite, so a fully masked row gives a uniform softmax instead of NaN)


# ---- weights: read from disk when the graph builder asks for them --------------------------------
Weight = np.ndarray | QuantTensor  # float [N, K] (HF layout) or quant/'s block codes


def _is_q(w: Weight) -> bool:
    return isinstance(w, QuantTensor)


def _float(w: Weight) -> np.ndarray:
    return w.dequantize().astype(np.float32) if _is_q(w) else np.asarray(w, dtype=np.float32)


class Weights:
    """A checkpoint's tensors by quantized-checkpoint name (HF names, kv_b_proj as its k_b / v_b halves), read
    from disk only when the graph builder asks for one, whole or in row chunks: the exporter holds one tensor
    (one chunk of a vocab-sized one) at a time, never the model.

    A quantized checkpoint exported as int4/int8 keeps its codes; as fp32/fp16 it is dequantized. A float
    checkpoint exported as int4/int8 is first rounded by `edgeport quantize`'s RTN path (q4_0 / q8_0) into
    `tmp` (streamed there tensor by tensor), then read like any quantized checkpoint."""

    def __init__(self, folder: Path, precision: str, tmp: Path, progress: bool = True) -> None:
        self.cfg = load_config(folder)
        self.quant: QuantReader | None = None
        self.hf: SafetensorsReader | None = None
        self.dequantize = precision in ("fp32", "fp16")
        if is_quantized(folder):
            scheme = read_quant_config(folder).get("scheme")
            want = onnx_precision(scheme) if scheme in SCHEMES else "?"
            if not self.dequantize and precision != want:
                raise EdgeportError(
                    f"checkpoint is quantized with scheme {scheme}; export it as "
                    f"{want} (or fp32/fp16, dequantized), not {precision}",
                    folder,
                )
            self.quant = QuantReader(folder)
        elif not self.dequantize:
            from edgeport.quantize import quantize_checkpoint

            scheme = "q4_0" if precision == "int4" else "q8_0"
            self.quant = QuantReader(quantize_checkpoint(folder, tmp, scheme, "rtn", progress=progress))
        else:
            self.hf = checkpoint_reader(folder)

    def format(self, name: str) -> str:
        """The block format (a quant.formats name) the exporter gets the tensor in, else "f32"."""
        if self.quant is None or self.dequantize:
            return "f32"
        if name not in self.quant.tensors:
            raise EdgeportError(f"missing tensor {name!r}", self.quant.folder)
        return self.quant.format(name)

    def shape(self, name: str) -> tuple[int, ...]:
        if self.quant is not None:
            if name not in self.quant.tensors:
                raise EdgeportError(f"missing tensor {name!r}", self.quant.folder)
            return self.quant.shape(name)
        c = self.cfg
        if name.endswith(".k_b"):
            return (c.num_attention_heads * c.kv_lora_rank, c.qk_nope_head_dim)
        if name.endswith(".v_b"):
            return (c.num_attention_heads * c.v_head_dim, c.kv_lora_rank)
        return self.hf.shape(name)

    def read(self, name: str, start: int = 0, stop: int | None = None) -> Weight:
        """Rows start:stop of a tensor: block codes, or float32 (float16 when stored so by quant/)."""
        if self.quant is not None:
            self.shape(name)  # a missing tensor is an EdgeportError
            t = self.quant.read(name, start, stop)
            return _float(t) if self.dequantize else t
        if name.endswith((".k_b", ".v_b")):  # small: split the whole kv_b_proj
            kv_b = name[: -len("k_b")] + "kv_b_proj.weight"
            return dict(quant_names(kv_b, self.hf.read(kv_b).float().numpy(), self.cfg))[name][start:stop]
        return self.hf.read(name, start, stop).float().numpy()

    def chunks(self, name: str) -> Iterator[Weight]:
        """The tensor in row chunks of about CHUNK_BYTES as float32 (one chunk for most tensors)."""
        shape = self.shape(name)
        step = max(1, CHUNK_BYTES // (4 * int(np.prod(shape[1:]))))
        for a in range(0, shape[0], step):
            yield self.read(name, a, min(a + step, shape[0]))


def _nbits_inputs(b: Builder, name: str, w: Weights, key: str) -> tuple[list[str], int]:
    """MatMulNBits inputs (B, scales[, zero_points]) of tensor `key` from quant's packer, and bits; packed and
    written row chunk by row chunk (one pass per input, so only one chunk is ever in memory)."""
    f = FORMATS[w.format(key)]
    n, k = w.shape(key)
    nb = k // BLOCK
    ins = [
        b.init_rows(
            f"{name}.qweight",
            np.uint8,
            (n, nb, BLOCK * f.bits // 8),
            (t.pack_matmulnbits()[0] for t in w.chunks(key)),
        ),
        b.init_rows(
            f"{name}.scales", np.float32, (n * nb,), (t.pack_matmulnbits()[1] for t in w.chunks(key))
        ),
    ]
    if f.asymmetric:
        ins.append(
            b.init_rows(
                f"{name}.zero_points", np.float32, (n * nb,), (t.pack_matmulnbits()[2] for t in w.chunks(key))
            )
        )
    return ins, f.bits


# ---- graph building -----------------------------------------------------------------------------
class Builder:
    """Collects nodes and initializers with unique names.

    Every initializer of INLINE_MAX_BYTES or more is written to `data_path` (model.onnx.data) as it is made,
    chunk by chunk, and its proto only points there: the graph is built from shapes and the process never holds
    the weights (a protobuf cannot be written in pieces, so a big model's weights must be external). `finish`
    reads them back into the protos when they total at most EXTERNAL_DATA_BYTES, so a small model stays one
    self-contained model.onnx, byte for byte what onnx.save_model writes for the same in-memory model."""

    def __init__(self, fp16: bool = False, accuracy_level: int = 4, data_path: Path | None = None) -> None:
        self.accuracy_level = accuracy_level
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.fp16 = fp16
        self.bytes = 0
        self._n = 0
        self.data_path = data_path
        self.data: BinaryIO | None = open(data_path, "wb") if data_path else None  # noqa: SIM115 - finish()

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def op(
        self,
        op_type: str,
        inputs: list[str],
        n_out: int = 1,
        domain: str = "",
        name: str | None = None,
        outputs: list[str] | None = None,
        **attrs: Any,
    ) -> Any:
        name = name or self.name(op_type)
        outs = outputs or [f"{name}/out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def init(self, name: str, arr: np.ndarray) -> str:
        return self.init_rows(name, arr.dtype, arr.shape, [arr])

    def init_rows(self, name: str, dtype: Any, shape: tuple[int, ...], parts: Iterable[np.ndarray]) -> str:
        """An initializer given as row chunks in order (each converted to `dtype`)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        self.bytes += nbytes
        if self.data is None or nbytes < INLINE_MAX_BYTES:
            arrays = [np.asarray(p, dtype) for p in parts]
            arr = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr).reshape(shape), name))
            return name
        t = TensorProto(name=name, dims=shape, data_type=helper.np_dtype_to_tensor_dtype(dtype))
        if self._external(t, (np.ascontiguousarray(p, dtype) for p in parts)) != nbytes:
            raise AssertionError(f"initializer {name}: chunks do not add up to {shape}")
        self.inits.append(t)
        return name

    def _external(self, t: TensorProto, parts: Iterable[np.ndarray]) -> int:
        """Append parts to model.onnx.data at a page-aligned offset (so onnxruntime can map it) and point t there."""
        assert self.data is not None
        self.data.write(b"\0" * (-self.data.tell() % ALIGN))
        offset = self.data.tell()
        for p in parts:
            self.data.write(p.reshape(-1).view(np.uint8).data)
        length = self.data.tell() - offset
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.data_path.name), ("offset", offset), ("length", length)):
            entry = t.external_data.add()
            entry.key, entry.value = key, str(value)
        return length

    def finish(self) -> bool:
        """Close model.onnx.data; if all initializers total at most EXTERNAL_DATA_BYTES, move them back into
        their protos (the same fields numpy_helper.from_array sets) and delete the file. True: external."""
        if self.data is None or self.data.closed:
            return False
        self.data.close()
        if self.bytes > EXTERNAL_DATA_BYTES:
            return True
        with open(self.data_path, "rb") as f:
            for t in self.inits:
                if t.data_location == TensorProto.EXTERNAL:
                    where = {e.key: int(e.value) for e in t.external_data if e.key in ("offset", "length")}
                    f.seek(where["offset"])
                    t.raw_data = f.read(where["length"])
                    t.ClearField("external_data")
                    t.ClearField("data_location")
        self.data_path.unlink()
        return False

    def scalar(self, value: float, dtype: Any, name: str | None = None) -> str:
        """A 0-d initializer (init() would make it 1-d: np.ascontiguousarray returns at least one dimension)."""
        name = name or self.name("scalar")
        self.inits.append(numpy_helper.from_array(np.array(value, dtype), name))
        return name

    def const(self, values: list[int] | np.ndarray, dtype: Any = np.int64) -> str:
        return self.init(self.name("const"), np.asarray(values, dtype=dtype))

    def float_weight(self, name: str, arr: np.ndarray) -> str:
        """A float initializer; in fp16 mode stored as fp16 and cast (constant-folded by ORT at load)."""
        return self.float_rows(name, arr.shape, [arr])

    def float_rows(self, name: str, shape: tuple[int, ...], parts: Iterable[np.ndarray]) -> str:
        if not self.fp16:
            return self.init_rows(name, np.float32, shape, parts)
        return self.op("Cast", [self.init_rows(name, np.float16, shape, parts)], to=TensorProto.FLOAT)

    def linear(self, x: str, name: str, w: Weights, key: str) -> str:
        """y = x @ W^T for tensor `key` W [N, K] (HF layout)."""
        if w.format(key) in FORMATS:
            n, k = w.shape(key)
            ins, bits = _nbits_inputs(self, name, w, key)
            return self.op(
                "MatMulNBits",
                [x, *ins],
                domain="com.microsoft",
                name=name,
                K=k,
                N=n,
                bits=bits,
                block_size=BLOCK,
                accuracy_level=self.accuracy_level,
            )
        return self.op(
            "MatMul", [x, self.float_weight(name, np.ascontiguousarray(_float(w.read(key)).T))], name=name
        )

    def rms(self, x: str, name: str, gamma: np.ndarray, eps: float) -> str:
        return self.op(
            "RMSNormalization", [x, self.float_weight(name, gamma)], name=name, axis=-1, epsilon=eps
        )


@dataclass
class HeadNBits:
    """A per-head matrix given to LatentAttention as MatMulNBits codes: B [H*N, K/32, blob] + scales [H*N*K/32]
    (quant's k_b / v_b rows are already head-major), multiplied one head at a time."""

    heads: int
    K: int
    N: int
    bits: int
    accuracy_level: int


def latent_attention_function(
    uk: HeadNBits | None = None,
    uv: HeadNBits | None = None,
    kv_lora_rank: int = 0,
    half: int = 0,
    latent_pad: int = 0,
    cache_type: int = TensorProto.FLOAT,
) -> onnx.FunctionProto:
    """`edgeport.mla:LatentAttention`: absorbed multi-head latent attention over a latent-only cache.

    Inputs: q_nope [B,H,S,dn], q_rope [B,H,S,dr] (rotated), kv_new [B,S,L] = [rms(latent) | rope(k_rope)],
    past_key / past_value [B,1,P,L'/2] (the two halves of the padded latent L' = L + latent_pad, in the cache
    type: float16 or float), attn_bias [B,1,S,P+S] (0 where query i may see key j, NEG elsewhere: causal
    bottom-right and key padding; the graph computes it once for all layers), then W_UK as w_uk [H,dn,r] float,
    or (uk given) w_uk + w_uk_scales, the MatMulNBits form of quant's k_b [H*r, dn]; then W_UV as w_uv [H,r,dv],
    or w_uv + w_uv_scales from v_b. Quantized W_UK/W_UV are multiplied head by head (H MatMulNBits each: ORT
    has no batched-weight NBits op, and on the CPU EP one block-diagonal MatMulNBits over all heads or one float
    batched MatMul measured 2.5x slower than the 16 small ones on a 2-core AVX512-VNNI x86).
    Outputs: attn [B,S,H*dv], present_key / present_value [B,1,P+S,L'/2] in the cache type.

    The cache is never joined into one [T, L'] tensor: the new token's latent is appended to each half
    (present_* are the only copies), and the scores are q[:L'/2].K1^T + q[L'/2:].K2^T; the context is
    p.K1 followed by the first r - L'/2 columns of p.K2 (the rest of K2 is k_rope and padding). A float16
    cache is read back as float (the CPU EP has no float16 MatMul on x86), so the current token attends to
    the same rounded latent that later steps will read.
    Attributes: scale, kv_lora_rank (r), latent_pad (0 or 1), num_heads, rope_dim, v_head_dim describe the op
    for a runtime that replaces it with a kernel (the body reads scale from its attribute; r, the half width
    L'/2 and the padding are fixed when the function is built for a model)."""
    nodes: list[onnx.NodeProto] = []
    r, half_cache = kv_lora_rank, cache_type != TensorProto.FLOAT

    def op(op_type: str, inputs: list[str], out: str | list[str], **attrs: Any) -> None:
        outs = [out] if isinstance(out, str) else out
        nodes.append(helper.make_node(op_type, inputs, outs, **attrs))

    def const_ints(out: str, values: list[int]) -> None:
        op("Constant", [], out, value_ints=values)

    scale = helper.make_node("Constant", [], ["scale"])
    a = onnx.AttributeProto()
    a.name, a.ref_attr_name, a.type = "value_float", "scale", onnx.AttributeProto.FLOAT
    scale.attribute.append(a)
    nodes.append(scale)
    const_ints("ax0", [0])
    const_ints("ax1", [1])
    const_ints("axm1", [-1])
    const_ints("zero1", [0])
    # cache: each half grows by the new token's half; nothing else copies the cache
    op("Unsqueeze", ["kv_new", "ax1"], "kv4")  # [B,1,S,L]
    kv = "kv4"
    if latent_pad:
        const_ints("pads", [0, 0, 0, 0, 0, 0, 0, latent_pad])
        op("Pad", [kv, "pads"], "kv4p")  # [B,1,S,L']
        kv = "kv4p"
    if half_cache:
        op("Cast", [kv], "kv4c", to=cache_type)
        kv = "kv4c"
    op("Split", [kv], ["new_key", "new_value"], axis=-1, num_outputs=2)
    op("Concat", ["past_key", "new_key"], "present_key", axis=2)  # [B,1,T,L'/2]
    op("Concat", ["past_value", "new_value"], "present_value", axis=2)
    k1, k2 = "present_key", "present_value"
    if half_cache:
        op("Cast", [k1], "k1", to=TensorProto.FLOAT)
        op("Cast", [k2], "k2", to=TensorProto.FLOAT)
        k1, k2 = "k1", "k2"
    # absorbed, scaled query [q_nope . W_UK | q_rope | 0 pad], split like the cache
    if uk is None:
        op("MatMul", ["q_nope", "w_uk"], "q_lat")  # [B,H,S,r]
    else:
        per_head(op, const_ints, "q_nope", "w_uk", "q_lat", uk)
    if latent_pad:
        op("Shape", ["q_rope"], "rope_shape", end=-1)
        const_ints("pad_cols", [latent_pad])
        op("Concat", ["rope_shape", "pad_cols"], "zpad_shape", axis=0)
        op(
            "ConstantOfShape",
            ["zpad_shape"],
            "zpad",
            value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0]),
        )
        op("Concat", ["q_lat", "q_rope", "zpad"], "q_abs", axis=-1)  # [B,H,S,L']
    else:
        op("Concat", ["q_lat", "q_rope"], "q_abs", axis=-1)  # [B,H,S,L]
    op("Mul", ["q_abs", "scale"], "q_scaled")
    op("Split", ["q_scaled"], ["q1", "q2"], axis=-1, num_outputs=2)
    op("Transpose", [k1], "k1_t", perm=[0, 1, 3, 2])
    op("Transpose", [k2], "k2_t", perm=[0, 1, 3, 2])
    op("MatMul", ["q1", "k1_t"], "s1")  # [B,H,S,T]
    op("MatMul", ["q2", "k2_t"], "s2")
    op("Add", ["s1", "s2"], "s12")
    op("Add", ["s12", "attn_bias"], "scores")
    op("Softmax", ["scores"], "p", axis=-1)
    op("MatMul", ["p", k1], "c1")  # [B,H,S,L'/2]
    if r <= half:  # the latent ends inside K1
        const_ints("r1", [r])
        op("Slice", ["c1", "zero1", "r1", "axm1"], "ctx")
    else:  # its last r - L'/2 columns are the start of K2
        const_ints("rest", [r - half])
        op("MatMul", ["p", k2], "c2")
        op("Slice", ["c2", "zero1", "rest", "axm1"], "c2_lat")
        op("Concat", ["c1", "c2_lat"], "ctx", axis=-1)  # [B,H,S,r]
    if uv is None:
        op("MatMul", ["ctx", "w_uv"], "o")  # [B,H,S,dv]
    else:
        per_head(op, const_ints, "ctx", "w_uv", "o", uv)
    op("Transpose", ["o"], "o_t", perm=[0, 2, 1, 3])
    const_ints("shape_out", [0, 0, -1])
    op("Reshape", ["o_t", "shape_out"], "attn")
    return helper.make_function(
        MLA_DOMAIN,
        "LatentAttention",
        ["q_nope", "q_rope", "kv_new", "past_key", "past_value", "attn_bias", "w_uk"]
        + (["w_uk_scales"] if uk else [])
        + ["w_uv"]
        + (["w_uv_scales"] if uv else []),
        ["attn", "present_key", "present_value"],
        nodes,
        [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if uk or uv else []),
        attributes=["scale", "kv_lora_rank", "latent_pad", "num_heads", "rope_dim", "v_head_dim"],
    )


def per_head(op: Any, const_ints: Any, x: str, w: str, out: str, q: HeadNBits) -> None:
    """out[:, h] = MatMulNBits(x[:, h], rows h*N..(h+1)*N of w) for each head h, concatenated on axis 1."""
    nb = q.K // BLOCK
    parts = [f"{x}_h{h}" for h in range(q.heads)]
    op("Split", [x], parts, axis=1, num_outputs=q.heads)
    outs = []
    for h in range(q.heads):
        const_ints(f"{w}_lo{h}", [h * q.N])
        const_ints(f"{w}_hi{h}", [(h + 1) * q.N])
        const_ints(f"{w}_slo{h}", [h * q.N * nb])
        const_ints(f"{w}_shi{h}", [(h + 1) * q.N * nb])
        op("Slice", [w, f"{w}_lo{h}", f"{w}_hi{h}", "ax0"], f"{w}_b{h}")
        op("Slice", [f"{w}_scales", f"{w}_slo{h}", f"{w}_shi{h}", "ax0"], f"{w}_s{h}")
        op(
            "MatMulNBits",
            [parts[h], f"{w}_b{h}", f"{w}_s{h}"],
            f"{out}_h{h}",
            domain="com.microsoft",
            K=q.K,
            N=q.N,
            bits=q.bits,
            block_size=BLOCK,
            accuracy_level=q.accuracy_level,
        )
        outs.append(f"{out}_h{h}")
    op("Concat", outs, out, axis=1)


KV_CACHES = {"fp16": TensorProto.FLOAT16, "fp32": TensorProto.FLOAT}


def default_kv_cache(precision: str) -> str:
    """fp16 (half the bytes, as llama.cpp's f16 cache), except for fp32 exports, which stay exact."""
    return "fp32" if precision == "fp32" else "fp16"


def attention_bias(b: Builder) -> str:
    """attn_bias [B,1,S,T] from attention_mask [B,T] and the query length S, once for all layers: 0 where query
    i (at position P+i, P = T-S) may see key j (j <= P+i and attention_mask[j] = 1), NEG elsewhere."""
    T = b.op("Squeeze", [b.op("Shape", ["attention_mask"], start=1, end=2)])
    S = b.op("Squeeze", [b.op("Shape", ["input_ids"], start=1, end=2)])
    one, zero = b.scalar(1, np.int64), b.scalar(0, np.int64)
    rows = b.op("Range", [b.op("Sub", [T, S]), T, one])  # query positions
    cols = b.op("Range", [zero, T, one])  # key positions
    causal = b.op("LessOrEqual", [cols, b.op("Unsqueeze", [rows, b.const([-1])])])  # [S,T]
    keep = b.op("Unsqueeze", [b.op("Cast", ["attention_mask"], to=TensorProto.BOOL), b.const([1, 2])])
    allowed = b.op("And", [causal, keep])  # [B,1,S,T]
    zero, neg = b.scalar(0.0, np.float32), b.scalar(NEG, np.float32)
    return b.op("Where", [allowed, zero, neg], name="attn_bias", outputs=["attn_bias"])


def latent_halves(cfg: YoutuConfig) -> tuple[int, int]:
    """(half width exposed as key and as value, zero padding columns appended to the latent: 0 or 1)."""
    pad = cfg.latent_dim % 2
    return (cfg.latent_dim + pad) // 2, pad


# ---- the decoder, builder by builder (the onnxruntime-genai builder's make_embedding / make_layer ->
# make_attention + make_mlp / make_head / make_io); each reads its weights from `w` as it needs them
@dataclass
class Embedding:
    """What the output layer needs to know of the embedding: its float value name, or (tied and quantized)
    the GatherBlockQuantized initializers that MatMulNBits reads again."""

    name: str
    value: str = ""  # float embedding table [V, D] (after the fp16 Cast)
    qweight: str = ""
    scales: str = ""
    bits: int = 0
    shape: tuple[int, ...] = ()


def make_embedding(b: Builder, w: Weights) -> tuple[str, Embedding]:
    """x = embed(input_ids). A quantized (symmetric) embedding gathers the same codes the tied lm_head
    multiplies; everything is written in row chunks (the embedding is the largest tensor)."""
    name = "model.embed_tokens.weight"
    shape, fmt = w.shape(name), w.format(name)
    if (
        fmt in FORMATS and not FORMATS[fmt].asymmetric
    ):  # GatherBlockQuantized takes only the implicit zero point
        (qb, qs), bits = _nbits_inputs(b, "model.embed_tokens", w, name)
        v, nb = shape[0], shape[1] // BLOCK
        # one copy of the codes, in MatMulNBits' [V, D/32, blob] layout; GatherBlockQuantized reads each
        # [v, j, :] row as one block of 32 along axis 2, so it takes the scales as [V, D/32, 1]
        x = b.op(
            "GatherBlockQuantized",
            [qb, "input_ids", b.op("Reshape", [qs, b.const([v, nb, 1])])],
            domain="com.microsoft",
            name="embed",
            gather_axis=0,
            quantize_axis=2,
            block_size=BLOCK,
            bits=bits,
        )
        x = b.op("Reshape", [x, b.const([0, 0, -1])])  # [B, S, D/32, 32] -> [B, S, D]
        return x, Embedding(name, qweight=qb, scales=qs, bits=bits, shape=shape)
    value = b.float_rows(name, shape, (_float(t) for t in w.chunks(name)))
    return b.op("Gather", [value, "input_ids"], name="embed"), Embedding(name, value=value, shape=shape)


def make_attention(
    b: Builder, w: Weights, cfg: YoutuConfig, i: int, h: str, rope: tuple[str, str], uk: Any, uv: Any
) -> str:
    """Layer i's attention on the normed hidden state h: q (low-rank, rms), the new latent [rms(latent) |
    rope(k_rope)], the LatentAttention function node against the latent cache, o_proj. Returns o_proj's out."""
    H, dn, dr, dv, r = (
        cfg.num_attention_heads,
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    )
    _, pad = latent_halves(cfg)
    cos_c, sin_c = rope
    interleaved = int(bool(cfg.rope_interleave))
    a = f"model.layers.{i}.self_attn"
    if cfg.q_lora_rank is None:
        q = b.linear(h, f"{a}.q_proj", w, f"{a}.q_proj.weight")
    else:
        q = b.linear(h, f"{a}.q_a_proj", w, f"{a}.q_a_proj.weight")
        q = b.rms(q, f"{a}.q_a_layernorm", _float(w.read(f"{a}.q_a_layernorm.weight")), 1e-6)
        q = b.linear(q, f"{a}.q_b_proj", w, f"{a}.q_b_proj.weight")
    q = b.op("Reshape", [q, b.const([0, 0, H, dn + dr])])
    q = b.op("Transpose", [q], perm=[0, 2, 1, 3])  # [B,H,S,dn+dr]
    q_nope, q_rope = b.op("Split", [q, b.const([dn, dr])], n_out=2, axis=-1)
    q_rope = b.op(
        "RotaryEmbedding",
        [q_rope, "position_ids", cos_c, sin_c],
        domain="com.microsoft",
        name=f"{a}.q_rope",
        interleaved=interleaved,
    )
    ckv = b.linear(h, f"{a}.kv_a_proj_with_mqa", w, f"{a}.kv_a_proj_with_mqa.weight")
    latent, k_rope = b.op("Split", [ckv, b.const([r, dr])], n_out=2, axis=-1)
    latent = b.rms(latent, f"{a}.kv_a_layernorm", _float(w.read(f"{a}.kv_a_layernorm.weight")), 1e-6)
    k_rope = b.op(
        "RotaryEmbedding",
        [k_rope, "position_ids", cos_c, sin_c],
        domain="com.microsoft",
        name=f"{a}.k_rope",
        interleaved=interleaved,
        num_heads=1,
        rotary_embedding_dim=dr,
    )
    kv_new = b.op("Concat", [latent, k_rope], axis=-1)
    if uk is None:
        w_uk = [b.float_weight(f"{a}.w_uk", _float(w.read(f"{a}.k_b")).reshape(H, r, dn).transpose(0, 2, 1))]
    else:
        w_uk = _nbits_inputs(b, f"{a}.k_b", w, f"{a}.k_b")[0]
    if uv is None:
        w_uv = [b.float_weight(f"{a}.w_uv", _float(w.read(f"{a}.v_b")).reshape(H, dv, r).transpose(0, 2, 1))]
    else:
        w_uv = _nbits_inputs(b, f"{a}.v_b", w, f"{a}.v_b")[0]
    attn, _, _ = b.op(
        "LatentAttention",
        [
            q_nope,
            q_rope,
            kv_new,
            f"past_key_values.{i}.key",
            f"past_key_values.{i}.value",
            "attn_bias",
            *w_uk,
            *w_uv,
        ],
        domain=MLA_DOMAIN,
        name=f"{a}.latent_attention",
        outputs=[f"{a}.attn", f"present.{i}.key", f"present.{i}.value"],
        scale=float(cfg.softmax_scale),
        kv_lora_rank=r,
        latent_pad=pad,
        num_heads=H,
        rope_dim=dr,
        v_head_dim=dv,
    )
    return b.linear(attn, f"{a}.o_proj", w, f"{a}.o_proj.weight")


def make_mlp(b: Builder, w: Weights, i: int, h: str) -> str:
    """down(silu(gate(h)) * up(h))."""
    m = f"model.layers.{i}.mlp"
    g = b.linear(h, f"{m}.gate_proj", w, f"{m}.gate_proj.weight")
    u = b.linear(h, f"{m}.up_proj", w, f"{m}.up_proj.weight")
    act = b.op("Mul", [b.op("Mul", [g, b.op("Sigmoid", [g])]), u])
    return b.linear(act, f"{m}.down_proj", w, f"{m}.down_proj.weight")


def make_layer(
    b: Builder,
    w: Weights,
    cfg: YoutuConfig,
    i: int,
    residual: str,
    delta: str,
    rope: tuple[str, str],
    uk: Any,
    uv: Any,
) -> tuple[str, str]:
    """One decoder layer; SkipSimplifiedLayerNormalization adds the previous layer's `delta` into `residual`.
    Returns (residual, delta) for the next layer (or the final norm)."""
    p, eps = f"model.layers.{i}", cfg.rms_norm_eps
    ln_in = _float(w.read(f"{p}.input_layernorm.weight"))
    if i == 0:
        h = b.rms(residual, f"{p}.input_layernorm", ln_in, eps)
    else:
        h, _, _, residual = b.op(
            "SkipSimplifiedLayerNormalization",
            [residual, delta, b.float_weight(f"{p}.input_layernorm.weight", ln_in)],
            n_out=4,
            domain="com.microsoft",
            name=f"{p}.input_layernorm",
            epsilon=eps,
        )
    delta = make_attention(b, w, cfg, i, h, rope, uk, uv)
    ln_post = _float(w.read(f"{p}.post_attention_layernorm.weight"))
    h, _, _, residual = b.op(
        "SkipSimplifiedLayerNormalization",
        [residual, delta, b.float_weight(f"{p}.post_attention_layernorm.weight", ln_post)],
        n_out=4,
        domain="com.microsoft",
        name=f"{p}.post_attention_layernorm",
        epsilon=eps,
    )
    return residual, make_mlp(b, w, i, h)


def make_head(b: Builder, w: Weights, cfg: YoutuConfig, residual: str, delta: str, emb: Embedding) -> None:
    """Final norm and the output layer -> `logits`. A tied output layer reuses the embedding's initializers
    (MatMulNBits on its codes, or FusedMatMul transB on the float table); an untied one is written as stored
    [V, D] in row chunks (float: FusedMatMul transB), so no vocab-sized matrix is ever transposed in memory."""
    h = b.op(
        "SkipSimplifiedLayerNormalization",
        [residual, delta, b.float_weight("model.norm.weight", _float(w.read("model.norm.weight")))],
        domain="com.microsoft",
        name="model.norm",
        epsilon=cfg.rms_norm_eps,
    )
    # logits_to_keep (as in transformers): 0 = every row, k = the last k rows. A graph input with a default of 0
    # (an overridable initializer), so genai (which preallocates [B, S, V] logits) and older callers get every
    # row; a decode loop passes 1 and the prefill's lm_head (a 2B model's largest matrix) multiplies one row.
    keep = b.op("Unsqueeze", [b.op("Neg", [b.scalar(0, np.int64, "logits_to_keep")]), b.const([0])])
    h = b.op("Slice", [h, keep, b.const([2**62]), b.const([1])], name="logits_to_keep")
    if cfg.tie_word_embeddings and emb.qweight:
        b.op(
            "MatMulNBits",
            [h, emb.qweight, emb.scales],
            domain="com.microsoft",
            name="lm_head",
            outputs=["logits"],
            K=emb.shape[1],
            N=emb.shape[0],
            bits=emb.bits,
            block_size=BLOCK,
            accuracy_level=b.accuracy_level,
        )
        return
    if cfg.tie_word_embeddings:
        value = emb.value
    elif w.format("lm_head.weight") in FORMATS:
        b.nodes.append(
            helper.make_node("Identity", [b.linear(h, "lm_head", w, "lm_head.weight")], ["logits"])
        )
        return
    else:
        value = b.float_rows(
            "lm_head.weight", w.shape("lm_head.weight"), (_float(t) for t in w.chunks("lm_head.weight"))
        )
    b.op("FusedMatMul", [h, value], domain="com.microsoft", name="lm_head", outputs=["logits"], transB=1)


def make_io(
    cfg: YoutuConfig, cache_type: int = TensorProto.FLOAT
) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """The genai decoder inputs / outputs: ids, mask, positions, logits_to_keep, logits and the latent cache
    halves (in `cache_type`)."""
    half, _ = latent_halves(cfg)
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", i64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", i64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("logits_to_keep", i64, []),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", f32, ["batch_size", "sequence_length", cfg.vocab_size])
    ]
    for i in range(cfg.num_hidden_layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}", cache_type, ["batch_size", 1, "past_sequence_length", half]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{i}.{kind}", cache_type, ["batch_size", 1, "total_sequence_length", half]
                )
            )
    return inputs, outputs


def build_graph(
    b: Builder,
    w: Weights,
    precision: str,
    progress: bool = True,
    mla_nbits: bool = True,
    kv_cache: str | None = None,
) -> onnx.ModelProto:
    """The decoder ModelProto (genai I/O names); initializers go through `b` as each builder reads them.
    kv_cache: the latent cache's type, fp16 or fp32 (default_kv_cache(precision) when None)."""
    from tqdm import tqdm

    cfg = w.cfg
    H, dn, dv, r = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    half, pad = latent_halves(cfg)
    kv_cache = kv_cache or default_kv_cache(precision)
    if kv_cache not in KV_CACHES:
        raise EdgeportError(f"unknown kv cache type {kv_cache!r}; choose from {', '.join(KV_CACHES)}")
    nL = cfg.num_hidden_layers

    def head_nbits(kind: str, K: int, N: int) -> HeadNBits | None:
        """W_UK / W_UV go into the attention function as per-head MatMulNBits when every layer's k_b / v_b
        is symmetric block codes of one bit width; otherwise as float (exactly the dequantized values)."""
        fmts = [w.format(f"model.layers.{i}.self_attn.{kind}") for i in range(nL)]
        bits = {FORMATS[f].bits if f in FORMATS and not FORMATS[f].asymmetric else 0 for f in fmts}
        if not mla_nbits or len(bits) != 1 or 0 in bits:
            return None
        return HeadNBits(H, K, N, bits.pop(), b.accuracy_level)

    uk, uv = head_nbits("k_b", dn, r), head_nbits("v_b", r, dv)

    # rotary tables, [max_pos, dr/2], exactly edgeport.model.rope_cos_sin
    import torch

    cos, sin = rope_cos_sin(torch.arange(cfg.max_position_embeddings), cfg.qk_rope_head_dim, cfg.rope_theta)
    rope = (b.float_weight("rope.cos", cos.numpy()), b.float_weight("rope.sin", sin.numpy()))
    del cos, sin

    x, emb = make_embedding(b, w)
    attention_bias(b)  # "attn_bias", once for all layers
    residual, delta = x, ""
    for i in tqdm(
        range(nL), desc="onnx graph", unit="layer", disable=None if progress else True, leave=False
    ):
        residual, delta = make_layer(b, w, cfg, i, residual, delta, rope, uk, uv)
    make_head(b, w, cfg, residual, delta, emb)
    b.finish()  # before make_graph, which copies the initializer protos

    inputs, outputs = make_io(cfg, KV_CACHES[kv_cache])
    graph = helper.make_graph(b.nodes, "edgeport_youtu_decoder", inputs, outputs, b.inits)
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", OPSET),
            helper.make_opsetid("com.microsoft", 1),
            helper.make_opsetid(MLA_DOMAIN, 1),
        ],
        functions=[latent_attention_function(uk, uv, r, half, pad, KV_CACHES[kv_cache])],
        producer_name="edgeport",
        ir_version=10,
    )
    model.metadata_props.extend(
        [
            onnx.StringStringEntryProto(key="edgeport.precision", value=precision),
            onnx.StringStringEntryProto(key="edgeport.latent_dim", value=str(cfg.latent_dim)),
            onnx.StringStringEntryProto(key="edgeport.latent_pad", value=str(pad)),
            onnx.StringStringEntryProto(key="edgeport.kv_cache", value=kv_cache),
            # inputs with a default (initializers), which onnxruntime's input lists leave out
            onnx.StringStringEntryProto(key="edgeport.optional_inputs", value="logits_to_keep"),
        ]
    )
    return model


# ---- files --------------------------------------------------------------------------------------
def genai_config(cfg: YoutuConfig) -> dict[str, Any]:
    """onnxruntime-genai config: a generic "decoder" with one kv head of width L/2 (the latent halves).
    Token ids outside the vocabulary (genai rejects them) are dropped; with no eos, genai stops at max_length."""
    half, _ = latent_halves(cfg)

    def ok(t: Any) -> bool:
        return isinstance(t, int) and 0 <= t < cfg.vocab_size

    eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, list) else [cfg.eos_token_id]
    eos_list = [t for t in eos if ok(t)]
    bos = cfg.bos_token_id if ok(cfg.bos_token_id) else 0
    pad = cfg.pad_token_id if ok(cfg.pad_token_id) else (eos_list[0] if eos_list else 0)
    return {
        "model": {
            "type": "decoder",
            "bos_token_id": bos,
            "eos_token_id": eos_list if len(eos_list) != 1 else eos_list[0],
            "pad_token_id": pad,
            "vocab_size": cfg.vocab_size,
            "context_length": cfg.max_position_embeddings,
            "decoder": {
                "filename": "model.onnx",
                # genai's default is one intra-op thread; 0 is onnxruntime's own default (the physical cores),
                # and callers overlay their count (runtimes.ort.OrtGenai(threads=N))
                "session_options": {
                    "log_id": "onnxruntime-genai",
                    "intra_op_num_threads": 0,
                    "provider_options": [],
                },
                "num_attention_heads": cfg.num_attention_heads,
                "num_key_value_heads": 1,
                "head_size": half,
                "hidden_size": cfg.hidden_size,
                "num_hidden_layers": cfg.num_hidden_layers,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "max_length": cfg.max_position_embeddings,
            "do_sample": False,
            "num_beams": 1,
            "past_present_share_buffer": False,
        },
    }


def convert_to_ort(folder: Path) -> None:
    """model.ort + required_operators.config for ORT Mobile (CPU EP, fixed optimizations for arm): the code of
    `python -m onnxruntime.tools.convert_onnx_models_to_ort --target_platform arm --optimization_style Fixed`,
    run in-process (a subprocess would pay the tool's torch import again).

    The tool's session gets "session.disable_prepacking": the conversion only saves the optimized graph, and
    prepacking (MatMulNBits' packed copies of every weight) cost 1.2 GiB more peak memory on a 2B int4 model
    (4.3 -> 3.0 GiB; the rest, initializers plus the flatbuffer being built, is the ORT format's own)."""
    import contextlib
    import io
    import logging
    from unittest import mock

    from onnxruntime.tools import convert_onnx_models_to_ort as tool

    def session_options(*args: Any) -> Any:
        so = make_options(*args)
        so.add_session_config_entry("session.disable_prepacking", "1")
        return so

    make_options = tool._create_session_options  # the tool has no parameter for extra session config entries

    # scratch inside the export's own temporary folder: a killed run's is collected with it by the next run
    with tempfile.TemporaryDirectory(prefix=".ort-scratch-", dir=folder) as tmp:
        tmp = Path(tmp)
        for name in ("model.onnx", "model.onnx.data"):
            if (folder / name).is_file():
                (tmp / name).symlink_to((folder / name).resolve())
        log = io.StringIO()
        logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
        try:
            with (
                contextlib.redirect_stdout(log),
                contextlib.redirect_stderr(log),
                mock.patch.object(tool, "_create_session_options", session_options),
            ):
                tool.convert_onnx_models_to_ort(
                    tmp / "model.onnx",
                    output_dir=tmp / "out",
                    target_platform="arm",
                    optimization_styles=[tool.OptimizationStyle.Fixed],
                )
        except Exception as e:  # the tool raises plain exceptions; keep one line
            raise EdgeportError(
                f"ORT Mobile conversion failed: {str(e).splitlines()[0] if str(e) else e!r}",
                folder / "model.onnx",
            ) from None
        ort = tmp / "out" / "model.ort"
        if not ort.is_file():
            raise EdgeportError("ORT Mobile conversion wrote no model.ort", folder / "model.onnx")
        shutil.move(str(ort), folder / "model.ort")
        cfgs = sorted((tmp / "out").glob("*.config"))
        if cfgs:
            shutil.move(str(cfgs[0]), folder / "required_operators.config")


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    precision: str = "fp32",
    mobile: bool = True,
    progress: bool = True,
    accuracy_level: int = 4,
    mla_nbits: bool = True,
    kv_cache: str | None = None,
) -> Path:
    """Export a float or quantized checkpoint folder to an ONNX folder (model.onnx [+ model.onnx.data],
    genai_config.json, tokenizer files, model.ort + required_operators.config). Returns `out_dir`.

    accuracy_level is MatMulNBits' compute type: 4 (int8 activations, the fast CPU/mobile path) by default;
    0 computes in fp32 (used by tests to show the integer codes are exactly quant/'s). mla_nbits=False gives
    LatentAttention W_UK/W_UV as float (dequantized) batched matrices instead of per-head MatMulNBits.
    kv_cache is the latent cache's type: fp16 (half the bytes, like llama.cpp's f16 cache) or fp32; by default
    fp32 for an fp32 export (exact against torch) and fp16 for fp16/int8/int4."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if precision not in PRECISIONS:
        raise EdgeportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if kv_cache is not None and kv_cache not in KV_CACHES:
        raise EdgeportError(f"unknown kv cache type {kv_cache!r}; choose from {', '.join(KV_CACHES)}")
    if out_dir.resolve() == model_dir.resolve():
        raise EdgeportError("output folder must differ from the checkpoint folder", out_dir)
    check_out(
        out_dir, folder=True, marker="genai_config.json"
    )  # before any work: replaces only an ONNX export
    if (model_dir / "tokenizer.json").is_file():
        check_tokenizer_folder(model_dir, load_config(model_dir).vocab_size)  # copied next to the model
    from tqdm import tqdm

    stages = tqdm(
        total=4, desc="export onnx", unit="stage", disable=None if progress else True, leave=False, delay=1.0
    )
    try:
        return _export(
            model_dir, out_dir, precision, mobile, progress, accuracy_level, mla_nbits, kv_cache, stages
        )
    finally:
        stages.close()  # leave=False: the bar is erased, so an error stays the only line


def _export(
    model_dir: Path,
    out_dir: Path,
    precision: str,
    mobile: bool,
    progress: bool,
    accuracy_level: int,
    mla_nbits: bool,
    kv_cache: str | None,
    stages: Any,
) -> Path:
    with (
        atomic_dir(out_dir, marker="genai_config.json") as tmp,
        tempfile.TemporaryDirectory(prefix=".quantized-", dir=tmp) as qtmp,  # collected with tmp after a kill
    ):
        stages.set_postfix_str("open weights")
        w = Weights(model_dir, precision, Path(qtmp) / "q", progress=progress)
        stages.update()
        stages.set_postfix_str("build graph, write weights")
        b = Builder(
            fp16=precision == "fp16", accuracy_level=accuracy_level, data_path=tmp / "model.onnx.data"
        )
        model = build_graph(b, w, precision, progress=progress, mla_nbits=mla_nbits, kv_cache=kv_cache)
        if mobile and b.bytes > ORT_FORMAT_MAX_BYTES:
            stages.write(
                f"note: {b.bytes / 2**30:.1f} GiB of weights exceed the ORT format's 2 GiB flatbuffer "
                "limit: no model.ort (export int4/int8 for ORT Mobile)"
            )
            mobile = False
        stages.update()
        stages.set_postfix_str("save model.onnx")
        onnx.save_model(model, str(tmp / "model.onnx"))  # initializers are already in place (inline or .data)
        del model
        for name in TOKENIZER_FILES:
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, tmp / name)
        (tmp / "genai_config.json").write_text(json.dumps(genai_config(w.cfg), indent=2) + "\n")
        stages.update()
        if mobile:
            stages.set_postfix_str("convert to model.ort")
            convert_to_ort(tmp)
        stages.update()
    return out_dir


def latent_io_widths(model_path: str | Path) -> dict[str, list[Any]]:
    """Every graph input/output name -> its declared shape (ints or symbolic names), for checks and tests."""
    m = onnx.load(str(model_path), load_external_data=False)
    out = {}
    for vi in list(m.graph.input) + list(m.graph.output):
        out[vi.name] = [
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim
        ]
    return out


__all__ = [
    "export_onnx",
    "build_graph",
    "Weights",
    "Builder",
    "latent_attention_function",
    "genai_config",
    "latent_halves",
    "latent_io_widths",
]
