"""ONNX export: real onnxruntime, ORT-format (.ort) and onnxruntime-genai against the torch reference.

Checkpoints are written by transformers.YoutuForCausalLM (conftest): odd dimensions (odd latent width, so the
padded-halves path runs, no dimension a multiple of 32) and block-aligned dimensions (every matrix quantizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import BLOCK_CONFIG, _hf_checkpoint

from edgeport.errors import EdgeportError
from edgeport.export.onnx import MLA_DOMAIN, OPSET, export_onnx, latent_halves, latent_io_widths
from edgeport.model import YoutuConfig
from runtimes.ort import OrtCpu, OrtGenai, OrtMobile
from runtimes.torch_ref import TorchRef

PROMPT = [5, 77, 301, 12, 9, 444, 100, 31, 256, 3, 18]
FP32_BOUND = 2e-4  # max |logit difference| ORT fp32 vs torch fp32 (logits are O(10) in these models)


def _stop(cfg: YoutuConfig) -> tuple[int, ...]:
    e = cfg.eos_token_id
    return tuple(e) if isinstance(e, list) else (() if e is None else (e,))


@pytest.fixture(scope="module", params=[True, False], ids=["rope_interleave", "rope_half"])
def odd(request, tmp_path_factory, tokenizer_dir):
    """(checkpoint, fp32 export, torch reference) for an odd-dimension transformers checkpoint, L odd."""
    root = tmp_path_factory.mktemp("odd")
    # kv_lora_rank 23 + rope 8 = latent 31: odd, so the exporter pads one zero column into the halves
    ckpt = _hf_checkpoint(
        root / "ckpt", tokenizer_dir, seed=3, kv_lora_rank=23, rope_interleave=request.param
    )
    out = export_onnx(ckpt, root / "onnx", "fp32", progress=False)
    return ckpt, out, TorchRef(ckpt)


@pytest.fixture(scope="module")
def block(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("block")
    ckpt = _hf_checkpoint(root / "ckpt", tokenizer_dir, seed=1, **BLOCK_CONFIG)
    return ckpt, export_onnx(ckpt, root / "fp32", "fp32", mobile=False, progress=False)


def test_fp32_prefill_and_cached_decode_match_torch(odd):
    ckpt, out, ref = odd
    ort = OrtCpu(out)
    want = ref.logits(PROMPT)
    got = ort.logits(PROMPT)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < FP32_BOUND, np.abs(got - want).max()
    # token by token through the latent cache: every step's logits equal the full-sequence reference
    cache = ort.empty_cache()
    for i, t in enumerate(PROMPT):
        step, cache = ort.step(np.array([[t]]), cache)
        assert np.abs(step[0, -1] - want[i]).max() < FP32_BOUND, (i, np.abs(step[0, -1] - want[i]).max())
    # prefill a prefix, then a multi-token chunk after it (bottom-right causal mask with a past)
    _, cache = ort.step(np.array([PROMPT[:4]]), ort.empty_cache())
    chunk, _ = ort.step(np.array([PROMPT[4:]]), cache)
    assert np.abs(chunk[0] - want[4:]).max() < FP32_BOUND


def test_fp32_greedy_32_tokens_equals_torch_and_genai(odd):
    ckpt, out, ref = odd
    stop = _stop(ref.config)
    want = ref.generate(PROMPT, 32, stop)
    assert OrtCpu(out).generate(PROMPT, 32, stop) == want
    genai = OrtGenai(out)
    assert genai.generate(PROMPT, 32, stop) == want
    assert np.abs(genai.logits(PROMPT) - ref.logits(PROMPT)).max() < FP32_BOUND


def test_ort_mobile_format_loads_and_matches_onnx(odd):
    ckpt, out, _ = odd
    assert (out / "model.ort").is_file()
    mobile, cpu = OrtMobile(out), OrtCpu(out)
    assert np.abs(mobile.logits(PROMPT) - cpu.logits(PROMPT)).max() < 1e-5
    assert mobile.generate(PROMPT, 8) == cpu.generate(PROMPT, 8)
    # the reduced-build op list names only primitive ops with CPU kernels (the local function was inlined)
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    kernels = {
        (k.domain or "ai.onnx", k.op_name)
        for k in C.get_all_opkernel_def()
        if k.provider == "CPUExecutionProvider"
    }
    kernels |= {("ai.onnx" if d == "" else d, n) for d, n in kernels}
    ops = []
    for line in (out / "required_operators.config").read_text().splitlines():
        if line and not line.startswith("#"):
            domain, _, names = line.split(";")
            ops += [(domain, n) for n in names.split(",")]
    assert ops and all(op in kernels for op in ops), [op for op in ops if op not in kernels]
    assert not any(d == MLA_DOMAIN for d, _ in ops)


def test_cache_is_latent_only_and_attention_is_one_function_node(odd):
    ckpt, out, ref = odd
    cfg = ref.config
    half, pad = latent_halves(cfg)
    assert 2 * half == cfg.latent_dim + pad and pad == 1  # odd latent: one zero column
    shapes = latent_io_widths(out / "model.onnx")
    n = cfg.num_hidden_layers
    cache = {k: v for k, v in shapes.items() if k.startswith(("past_key_values.", "present."))}
    assert set(shapes) == {"input_ids", "attention_mask", "position_ids", "logits_to_keep", "logits", *cache}
    assert len(cache) == 4 * n
    for name, shape in cache.items():  # [batch, 1 kv head, time, L/2]: no expanded per-head cache anywhere
        assert len(shape) == 4 and shape[1] == 1 and shape[3] == half, (name, shape)
    assert shapes["logits"][-1] == cfg.vocab_size
    genai = json.loads((out / "genai_config.json").read_text())["model"]["decoder"]
    assert genai["num_key_value_heads"] == 1 and genai["head_size"] == half
    # the present cache really holds [rms(latent) | rope(k_rope)] + the zero pad, nothing per head
    ort = OrtCpu(out)
    _, cache_vals = ort.step(np.array([PROMPT]), ort.empty_cache())
    full = np.concatenate([cache_vals["past_key_values.0.key"], cache_vals["past_key_values.0.value"]], -1)
    assert full.shape == (1, 1, len(PROMPT), cfg.latent_dim + pad)
    assert np.all(full[..., -1] == 0)
    tc = ref.model.new_cache()
    with torch.no_grad():
        ref.model(torch.tensor([PROMPT]), cache=tc)
    assert np.abs(full[0, 0, :, : cfg.latent_dim] - tc.layers[0][0].numpy()).max() < 1e-4

    m = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(m)
    (fn,) = m.functions
    assert (fn.domain, fn.name) == (MLA_DOMAIN, "LatentAttention")
    assert (
        {o.domain: o.version for o in fn.opset_import}[""]
        == OPSET
        == {o.domain: o.version for o in m.opset_import}[""]
    )
    nodes = [nd for nd in m.graph.node if nd.op_type == "LatentAttention"]
    assert len(nodes) == n and all(nd.domain == MLA_DOMAIN for nd in nodes)
    attrs = {a.name for a in nodes[0].attribute}
    assert {"num_heads", "scale", "kv_lora_rank", "rope_dim", "v_head_dim"} <= attrs


def _kl_top1(p_logits: np.ndarray, q_logits: np.ndarray) -> tuple[float, float]:
    p = torch.tensor(p_logits).log_softmax(-1)
    q = torch.tensor(q_logits).log_softmax(-1)
    kl = (p.exp() * (p - q)).sum(-1).mean().item()
    return kl, float((p_logits.argmax(-1) == q_logits.argmax(-1)).mean())


@pytest.mark.parametrize("precision,kl_bound,top1_bound", [("int8", 1e-4, 0.97), ("int4", 2e-3, 0.9)])
def test_quantized_kl_and_top1_vs_fp32(block, tmp_path, precision, kl_bound, top1_bound):
    ckpt, fp32 = block
    q = export_onnx(ckpt, tmp_path / precision, precision, mobile=False, progress=False)
    ops = {nd.op_type for nd in onnx.load(str(q / "model.onnx"), load_external_data=False).graph.node}
    assert {"MatMulNBits", "GatherBlockQuantized"} <= ops and "MatMul" not in ops
    ids = list(range(3, 500, 7))
    kl, top1 = _kl_top1(OrtCpu(fp32).logits(ids), OrtCpu(q).logits(ids))
    assert kl < kl_bound and top1 >= top1_bound, (precision, kl, top1)


def test_fp16_weights_close_to_fp32(block, tmp_path):
    ckpt, fp32 = block
    out = export_onnx(ckpt, tmp_path / "fp16", "fp16", mobile=False, progress=False)
    m = onnx.load(str(out / "model.onnx"))
    big = [t for t in m.graph.initializer if len(t.dims) == 2 and t.dims[0] * t.dims[1] >= 1024]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    kl, top1 = _kl_top1(OrtCpu(fp32).logits(PROMPT), OrtCpu(out).logits(PROMPT))
    assert kl < 1e-4 and top1 == 1.0, (kl, top1)


def test_matmulnbits_hold_exactly_the_quantized_codes(block, tmp_path):
    """From a quantized checkpoint: the MatMulNBits weights unpack to quant/'s codes and scales bit for bit,
    and with fp32 compute (accuracy_level 0) the graph reproduces torch on the dequantized weights."""
    from edgeport.quantize import quantize_checkpoint
    from quant.checkpoint import load_quantized
    from quant.formats import unpack_matmulnbits

    ckpt, _ = block
    qdir = quantize_checkpoint(ckpt, tmp_path / "q4", scheme="q4_0", progress=False)
    out = export_onnx(
        qdir, tmp_path / "onnx", "int4", mobile=False, progress=False, accuracy_level=0, kv_cache="fp32"
    )
    inits = {
        t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(out / "model.onnx")).graph.initializer
    }
    qt = load_quantized(qdir)
    checked = set()
    for key, arr in inits.items():
        if not key.endswith(".qweight"):
            continue
        name = key.removesuffix(".qweight")
        src = qt[name + ".weight"] if name + ".weight" in qt else qt[name]
        assert np.array_equal(unpack_matmulnbits(arr, src.fmt.bits), src.codes), name
        assert np.array_equal(
            inits[name + ".scales"].reshape(src.scales.shape), src.scales.astype(np.float32)
        )
        checked.add(name.rsplit(".", 1)[-1])
    # every linear layer, the absorbed halves (per-head MatMulNBits inside LatentAttention) and the embedding
    assert {
        "q_a_proj",
        "q_b_proj",
        "kv_a_proj_with_mqa",
        "k_b",
        "v_b",
        "o_proj",
        "gate_proj",
        "up_proj",
    } <= checked
    assert {"down_proj", "embed_tokens"} <= checked
    ref = TorchRef(qdir)
    assert np.abs(OrtCpu(out).logits(PROMPT) - ref.logits(PROMPT)).max() < 1e-3


def test_fp16_latent_cache_and_last_row_logits(block, tmp_path):
    """int4 exports keep the latent cache in float16 (half the bytes; the attention reads back the rounded
    values, so prefill and decode see the same cache); the cost against a float cache is a rounding of the
    latent, far inside the quantization's own error. logits_to_keep=1 computes only the last row."""
    ckpt, _ = block
    f16 = export_onnx(ckpt, tmp_path / "f16", "int4", mobile=False, progress=False)
    f32 = export_onnx(ckpt, tmp_path / "f32", "int4", mobile=False, progress=False, kv_cache="fp32")
    half = OrtCpu(f16)
    assert half.cache_dtype == np.float16 and OrtCpu(f32).cache_dtype == np.float32
    _, cache = half.step(np.array([PROMPT]), half.empty_cache())
    assert all(v.dtype == np.float16 for v in cache.values())
    ids = list(range(3, 500, 7))
    full = half.logits(ids)
    kl, top1 = _kl_top1(OrtCpu(f32).logits(ids), full)
    assert kl < 1e-5 and top1 >= 0.98, (kl, top1)
    # token by token through the float16 cache: the same logits as one prefill over the same tokens
    cache = half.empty_cache()
    for i, t in enumerate(ids[:12]):
        step, cache = half.step(np.array([[t]]), cache)
        assert np.abs(step[0, -1] - full[i]).max() < 1e-3, i
    last, _ = half.step(np.array([ids]), half.empty_cache(), last_only=True)
    assert last.shape == (1, 1, full.shape[-1]) and np.abs(last[0, 0] - full[-1]).max() < 1e-5


def test_genai_tokenizer_and_files(odd):
    ckpt, out, _ = odd
    for name in ("model.onnx", "model.ort", "genai_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    genai = OrtGenai(out)
    text = "The quick brown fox: 1234 东京 🙂"
    assert genai.tokenize(text)  # edgeport's tokenizer always works on the folder
    try:
        theirs = genai.tokenize_genai(text)
    except Exception as e:  # noqa: BLE001 - genai may not load this BPE; the adapter falls back to edgeport's
        pytest.skip(f"onnxruntime-genai tokenizer cannot load the BPE: {str(e).splitlines()[0]}")
    assert theirs == genai.tokenize(text)


def test_bad_input_one_line_and_no_output(tmp_path, block):
    from typer.testing import CliRunner

    from edgeport.cli import app

    with pytest.raises(EdgeportError, match="config.json"):
        export_onnx(tmp_path, tmp_path / "out", "fp32")
    assert not (tmp_path / "out").exists()
    ckpt, _ = block
    with pytest.raises(EdgeportError, match="precision"):
        export_onnx(ckpt, tmp_path / "out", "int3")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((Path(ckpt) / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    res = CliRunner().invoke(app, ["export", "onnx", str(bad), "--out", str(tmp_path / "out2")])
    assert res.exit_code == 2, res.output
    visible = [ln.split("\r")[-1] for ln in res.output.split("\n") if ln.split("\r")[-1].strip()]
    assert len(visible) == 1 and visible[0].startswith("error:"), res.output
    assert not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_ort_int4_agrees_with_llama_cpp_q4_0(block, tmp_path):
    """One quantized checkpoint, two runtimes: ORT int4 (MatMulNBits) and llama.cpp Q4_0 hold the same codes."""
    try:
        from edgeport.export.gguf import export_gguf
        from runtimes.llamacpp import LlamaCpp
    except ImportError as e:
        pytest.skip(f"GGUF exporter / llama.cpp adapter not available yet ({e})")
    ok, why = LlamaCpp.available()
    if not ok:
        pytest.skip(why)
    from edgeport.quantize import quantize_checkpoint

    ckpt, _ = block
    qdir = quantize_checkpoint(ckpt, tmp_path / "q4", scheme="q4_0", progress=False)
    onnx_dir = export_onnx(qdir, tmp_path / "onnx", "int4", mobile=False, progress=False)
    gguf = export_gguf(qdir, tmp_path / "m.gguf", "q4_0")
    ids = PROMPT
    a, b = OrtCpu(onnx_dir).logits(ids), LlamaCpp(gguf).logits(ids)
    ref = TorchRef(qdir).logits(ids)
    kl, top1 = _kl_top1(a, b)
    # both quantize activations to int8 per block (different kernels), so agreement is close, not bitwise
    assert kl < 5e-4 and top1 == 1.0, (kl, top1, np.abs(a - ref).max(), np.abs(b - ref).max())


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_external_data_export_is_the_same_graph_and_bytes(block, tmp_path, monkeypatch, precision):
    """Above EXTERNAL_DATA_BYTES the weights stay where the exporter streamed them (model.onnx.data, each
    tensor page-aligned); the graph and every tensor's bytes equal the self-contained export's."""
    import edgeport.export.onnx as onnx_export

    ckpt, _ = block
    inline = export_onnx(ckpt, tmp_path / "inline", precision, mobile=False, progress=False)
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    ext = export_onnx(ckpt, tmp_path / "ext", precision, mobile=False, progress=False)
    assert not (inline / "model.onnx.data").exists() and (ext / "model.onnx.data").is_file()
    a = onnx.load(str(inline / "model.onnx"))
    b = onnx.load(str(ext / "model.onnx"), load_external_data=False)
    external = [t for t in b.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all(
        int(e.value) % 4096 == 0 for t in external for e in t.external_data if e.key == "offset"
    )
    onnx.load_external_data_for_model(b, str(ext))
    for t in b.graph.initializer:
        t.ClearField("external_data")
        t.ClearField("data_location")
    assert b.SerializeToString() == a.SerializeToString()
    np.testing.assert_array_equal(OrtCpu(ext).logits(PROMPT), OrtCpu(inline).logits(PROMPT))


def test_mlas_layout_counts_a_block_sum_per_block(block, tmp_path):
    """edgeport bench's bytes per token in onnxruntime's repacked layout: every quantized weight (the per-head
    W_UK/W_UV inside LatentAttention too) streams its codes, its fp32 scales and one fp32 block sum per block."""
    from edgeport.bench import onnx_bytes

    ckpt, _ = block
    out = export_onnx(ckpt, tmp_path / "int4", "int4", mobile=False, progress=False)
    inits = {t.name: t for t in onnx.load(str(out / "model.onnx")).graph.initializer}
    codes = [t for n, t in inits.items() if n.endswith(".qweight")]
    assert any(".k_b" in t.name for t in codes) and any(".v_b" in t.name for t in codes)
    assert all(
        inits[t.name.removesuffix(".qweight") + ".scales"].data_type == onnx.TensorProto.FLOAT for t in codes
    )
    sums = sum(
        4 * -(-t.dims[0] // 16) * 16 * t.dims[1] for t in codes
    )  # rows rounded up to 16, blocks per row
    (file_w, kv), (packed_w, kv2) = onnx_bytes(out), onnx_bytes(out, mlas_layout=True)
    assert kv == kv2 and packed_w - file_w == sums
