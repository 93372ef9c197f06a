"""Which tensor gets which format, per scheme. The reasons, in order of precedence:

1. 1-D tensors (RMSNorm weights, biases) stay float32: tiny, and every runtime computes norms in float.
2. A matrix whose rows are not a multiple of 32 cannot be cut into blocks: it falls back to f16 (f32 when it
   has at most SMALL elements, where f16 would save nothing worth its rounding). The reason is recorded.
3. The output layer (lm_head, or the tied embedding, which *is* the output layer) gets q8_0 under the int4
   schemes: its error lands directly on the logits, and for a small model it is a large share of the weights
   that every token reads anyway. An untied input embedding is only a lookup and takes the scheme's format.
4. `q4_0_mla` additionally keeps the MLA latent path at q8_0: kv_a_proj_with_mqa (the latent and k_rope,
   i.e. the whole KV cache, come out of it) and the absorbed halves k_b / v_b of kv_b (every head's scores
   and values go through them). They are ~6% of the layer weights of Youtu-LLM-2B.
5. Everything else (q_a, q_b, o_proj, kv_a, k_b, v_b, gate/up/down) takes the scheme's block format.
"""

from __future__ import annotations

from quant.formats import BLOCK, FORMATS, TABLE

# scheme -> base block format (its row of quant.formats.TABLE gives the GGML type, bits, ONNX precision, gate)
SCHEMES: dict[str, str] = {
    "q8_0": "q8_0",
    "q4_0": "q4_0",
    "q4_1": "q4_1",
    "q4_0_mla": "q4_0",
}
SMALL = 4096
MLA_SENSITIVE = ("self_attn.kv_a_proj_with_mqa.weight", "self_attn.k_b", "self_attn.v_b")


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} (choose one of: {', '.join(SCHEMES)})")
    return scheme


def onnx_precision(scheme: str) -> str:
    """The ONNX precision that holds a scheme's codes (int8 / int4: the bits of its base format)."""
    return TABLE[SCHEMES[check_scheme(scheme)]].onnx


def choose(name: str, shape: tuple[int, ...], scheme: str, tied: bool) -> tuple[str, str]:
    """(format, reason) for tensor `name` (quantized-checkpoint name) of `shape` under `scheme`."""
    base = SCHEMES[check_scheme(scheme)]
    numel = 1
    for s in shape:
        numel *= s
    if len(shape) != 2:
        return "f32", "1-D (norm/bias): kept in float32"
    is_output = name == "lm_head.weight" or (tied and name == "model.embed_tokens.weight")
    if is_output and base != "q8_0":
        fmt, why = "q8_0", "output layer (tied embedding or lm_head): q8_0 under int4 schemes"
    elif scheme == "q4_0_mla" and name.endswith(MLA_SENSITIVE):
        fmt, why = "q8_0", "MLA latent path kept at q8_0 by q4_0_mla"
    else:
        fmt, why = base, f"scheme {scheme}"
    if shape[1] % BLOCK:
        small = numel <= SMALL
        return ("f32" if small else "f16"), (
            f"row length {shape[1]} is not a multiple of {BLOCK}: kept in {'f32' if small else 'f16'}"
        )
    assert fmt in FORMATS
    return fmt, why
