"""quant/: block formats bit-exact with gguf-py and llama.cpp's C code, MatMulNBits packing run by onnxruntime,
GPTQ vs RTN on real activations, the quantized checkpoint round trip, the policy on odd dimensions, the CLI."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BLOCK_CONFIG, TEST_VOCAB, TOKENIZER_TEXT, _hf_checkpoint
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from typer.testing import CliRunner

from edgeport.errors import EdgeportError
from quant.checkpoint import (
    QuantTensor,
    dequantized_state_dict,
    iter_quantized,
    kv_b_heads,
    load_quantized_model,
    merge_kv_b,
    read_quant_config,
    split_kv_b,
)
from quant.formats import FORMATS, Q4_0, Q4_1, Q8_0, pack_matmulnbits, unpack_matmulnbits
from quant.gptq import gptq_quantize, layer_error
from quant.policy import choose

GGML = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1}


def edge_weights(rows: int = 48, cols: int = 256, seed: int = 0) -> np.ndarray:
    """Random rows on very different scales plus the awkward blocks: zeros, ties, exact halves, huge ranges."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * np.exp(rng.uniform(-12, 6, (rows, 1))).astype(
        np.float32
    )
    w[0, :32] = 0.0  # all-zero block
    w[1, :32] = 1.0  # all equal
    w[1, 32:64] = -1.0
    w[2, :32] = 3.0  # |max| tie between +3 and -3: the first one wins (sign of the scale)
    w[2, 7] = -3.0
    w[3, :32] = -3.0
    w[3, 9] = 3.0
    w[4, :32] = (np.arange(32) - 16) / 16 * 127 / 127  # codes exactly on .5 boundaries for q8_0
    w[5, :32] = np.arange(32, dtype=np.float32) * 0.5 - 8  # ties for the int4 grids
    w[6, :32] = np.float32(1e-30)  # subnormal-ish scales (underflow to fp16 zero)
    w[7, :32] = rng.uniform(-6e4, 6e4, 32)  # scale near the fp16 limit
    w[8, :32] = np.linspace(-1, 1, 32)
    w[9] = -np.abs(w[9])  # all negative rows: q4_1 min, q4_0 negative max
    return w


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q4_1"])
def test_formats_bit_exact_with_gguf_py(name: str) -> None:
    fmt = FORMATS[name]
    for seed in range(3):
        w = edge_weights(seed=seed)
        q = fmt.quantize(w)
        ref = gq.quantize(w, GGML[name])
        packed = fmt.pack_gguf(*q)
        assert packed.dtype == np.uint8 and packed.shape == ref.shape
        np.testing.assert_array_equal(packed, ref)
        for mine, theirs in zip(q, fmt.unpack_gguf(ref, *w.shape), strict=True):  # codes, scales[, mins]
            assert mine.dtype == theirs.dtype
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(fmt.dequantize(*q), gq.dequantize(ref, GGML[name]))
        assert fmt.unpack_gguf(packed.tobytes(), *w.shape)[0].shape == w.shape
    codes = q[0]
    if name == "q8_0":
        assert codes.dtype == np.int8 and codes.min() >= -127
    else:
        assert codes.dtype == np.uint8 and codes.max() <= 15


def _libggml() -> ctypes.CDLL:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    libdir = Path(llama_cpp.__file__).parent / "lib"
    libs = (
        sorted(libdir.glob("libggml-base*"))
        + sorted(libdir.glob("libggml*"))
        + sorted(libdir.glob("libllama*"))
    )
    for lib in libs:
        handle = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        if hasattr(handle, "dequantize_row_q4_0"):
            return handle
    pytest.skip(f"no ggml library exporting dequantize_row_q4_0 in {libdir}")


class TypeTraits(ctypes.Structure):  # struct ggml_type_traits (ggml.h)
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)),
        ("from_float_ref", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)),
    ]


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q4_1"])
def test_formats_bit_exact_with_llama_cpp_c(name: str) -> None:
    """quantize_row_*_ref, dequantize_row_* and type_traits->to_float of the libggml inside llama_cpp."""
    lib = _libggml()
    fmt = FORMATS[name]
    w = np.ascontiguousarray(edge_weights(seed=7))
    q = fmt.quantize(w)
    packed = np.ascontiguousarray(fmt.pack_gguf(*q))
    n = w.size
    c_bytes = np.zeros_like(packed)
    getattr(lib, f"quantize_row_{name}_ref")(
        w.ctypes.data_as(ctypes.c_void_p), c_bytes.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n)
    )
    np.testing.assert_array_equal(c_bytes, packed)
    out = np.zeros(n, np.float32)
    getattr(lib, f"dequantize_row_{name}")(
        packed.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n)
    )
    np.testing.assert_array_equal(out.reshape(w.shape), fmt.dequantize(*q))
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    traits = lib.ggml_get_type_traits(ctypes.c_int(fmt.ggml_type)).contents
    assert (
        traits.type_name.decode() == name and traits.blck_size == 32 and traits.type_size == fmt.block_bytes
    )
    out2 = np.zeros(n, np.float32)
    traits.to_float(packed.ctypes.data_as(ctypes.c_void_p), out2.ctypes.data_as(ctypes.c_void_p), n)
    np.testing.assert_array_equal(out2, out)


@pytest.mark.parametrize(("name", "bits"), [("q4_0", 4), ("q8_0", 8), ("q4_1", 4)])
def test_matmulnbits_packing_runs_in_onnxruntime(name: str, bits: int) -> None:
    """Our B/scales/zero_points in a real com.microsoft.MatMulNBits node compute X @ dequant(W)^T."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    n, k = 40, 96
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    x = rng.standard_normal((5, k)).astype(np.float32)
    fmt = FORMATS[name]
    q = fmt.quantize(w)
    b, scales, zp = pack_matmulnbits(*q[:2], bits, q[2] if len(q) == 3 else None)
    assert (
        b.shape == (n, k // 32, 32 * bits // 8)
        and scales.shape == (n * k // 32,)
        and scales.dtype == np.float32
    )
    np.testing.assert_array_equal(unpack_matmulnbits(b, bits), q[0])
    inits = [numpy_helper.from_array(b, "B"), numpy_helper.from_array(scales, "S")]
    inputs = ["X", "B", "S"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "Z"))
        inputs.append("Z")
    node = helper.make_node(
        "MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=k, N=n, bits=bits, block_size=32
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [5, n])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"X": x})
    np.testing.assert_allclose(y, x @ fmt.dequantize(*q).T, rtol=1e-4, atol=1e-4)


def test_kv_b_split_layout_matches_model_and_inverts() -> None:
    from edgeport.model import MLAttention, YoutuConfig

    cfg = YoutuConfig(
        hidden_size=64,
        num_attention_heads=3,
        kv_lora_rank=24,
        qk_nope_head_dim=12,
        v_head_dim=20,
        qk_rope_head_dim=8,
        q_lora_rank=40,
        vocab_size=64,
    )
    attn = MLAttention(cfg)
    torch.nn.init.normal_(attn.kv_b_proj.weight)
    kv_b = attn.kv_b_proj.weight.detach().numpy()
    k_b, v_b = split_kv_b(kv_b, cfg)
    assert k_b.shape == (3 * 24, 12) and v_b.shape == (3 * 20, 24)
    w_uk, w_uv = (t.detach().numpy() for t in attn.kv_b_split())  # [H, dn, r], [H, dv, r]
    kh, vh = kv_b_heads(k_b, v_b, cfg)
    np.testing.assert_array_equal(kh, w_uk.transpose(0, 2, 1))  # ggml attn_k_b [H, r, dn]
    np.testing.assert_array_equal(vh, w_uv)
    np.testing.assert_array_equal(merge_kv_b(k_b, v_b, cfg), kv_b)


def test_policy_reasons() -> None:
    assert choose("model.norm.weight", (64,), "q4_0", True)[0] == "f32"
    assert choose("model.embed_tokens.weight", (512, 64), "q4_0", True)[0] == "q8_0"
    assert choose("model.embed_tokens.weight", (512, 64), "q4_0", False)[0] == "q4_0"
    assert choose("lm_head.weight", (512, 64), "q4_1", False)[0] == "q8_0"
    assert choose("model.layers.0.self_attn.k_b", (128, 32), "q4_0_mla", True)[0] == "q8_0"
    assert choose("model.layers.0.self_attn.k_b", (128, 32), "q4_0", True)[0] == "q4_0"
    assert choose("model.layers.0.mlp.up_proj.weight", (128, 64), "q4_0_mla", True)[0] == "q4_0"
    fmt, why = choose("model.layers.0.mlp.up_proj.weight", (136, 72), "q4_0", True)
    assert fmt == "f16" and "72" in why
    assert choose("model.layers.0.self_attn.k_b", (72, 12), "q8_0", True)[0] == "f32"  # tiny: no point in f16
    with pytest.raises(ValueError, match="unknown scheme"):
        choose("x", (32, 32), "q3", True)


# ---- checkpoints ---------------------------------------------------------------------------------------
def _tokenizer(folder: Path) -> None:
    """A small byte-level BPE written with `tokenizers` itself (independent of edgeport.tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TEST_VOCAB - 8,
        special_tokens=["<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TOKENIZER_TEXT, trainer)
    tok.save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quant")
    out = {
        "block": _hf_checkpoint(root / "block", None, 1, **BLOCK_CONFIG),
        "odd": _hf_checkpoint(root / "odd", None, 2),
        "untied": _hf_checkpoint(root / "untied", None, 3, **BLOCK_CONFIG, tie_word_embeddings=False),
    }
    for f in out.values():
        _tokenizer(f)
    return out


def _calib_activations(folder: Path, module: str, tokens: int = 1024) -> np.ndarray:
    from edgeport.checkpoint import load_model
    from edgeport.quantize import calibration_ids

    model = load_model(folder)
    ids = calibration_ids(folder, None, tokens, seq_len=128)
    xs: list[torch.Tensor] = []
    h = model.get_submodule(module).register_forward_hook(
        lambda m, i, o: xs.append(i[0].reshape(-1, i[0].shape[-1]))
    )
    with torch.no_grad():
        model(ids)
    h.remove()
    return torch.cat(xs).numpy(), model.get_submodule(module).weight.detach().numpy()


@pytest.mark.parametrize("module", ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_b_proj"])
def test_gptq_beats_rtn_on_real_activations(ckpts: dict[str, Path], module: str) -> None:
    x, w = _calib_activations(ckpts["block"], module)
    hx = x.astype(np.float64).T @ x
    for fmt in (Q4_0, Q4_1, Q8_0):
        rtn = layer_error(x, w, fmt.dequantize(*fmt.quantize(w)))
        gptq = layer_error(x, w, fmt.dequantize(*gptq_quantize(w, hx, fmt)))
        assert gptq < 0.95 * rtn, (fmt.name, gptq, rtn)


def _kl_top1(ref: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    lp, lq = ref.log_softmax(-1), logits.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean().item()
    return kl, (ref.argmax(-1) == logits.argmax(-1)).float().mean().item()


def test_rtn_checkpoint_round_trip(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from edgeport.checkpoint import iter_tensors, load_model
    from edgeport.quantize import quantize_checkpoint

    src = ckpts["block"]
    out = quantize_checkpoint(src, tmp_path / "q", scheme="q4_0", method="rtn", progress=False)
    qc = read_quant_config(out)
    assert (qc["format"], qc["version"], qc["scheme"], qc["method"], qc["block_size"]) == (
        "edgeport-quant",
        2,
        "q4_0",
        "rtn",
        32,
    )
    assert (out / "config.json").read_text() == (src / "config.json").read_text()
    assert (out / "tokenizer.json").is_file()
    stored = dict(iter_quantized(out))
    assert list(stored) == list(qc["tensors"])
    float_w = {n: t.numpy() for n, t in iter_tensors(src, torch.float32)}
    # RTN codes are exactly gguf-py's for every block tensor, incl. the k_b / v_b halves of kv_b
    k_b, v_b = split_kv_b(
        float_w["model.layers.1.self_attn.kv_b_proj.weight"], json.loads((src / "config.json").read_text())
    )
    for name, w in [
        ("model.layers.0.mlp.down_proj.weight", float_w["model.layers.0.mlp.down_proj.weight"]),
        ("model.layers.1.self_attn.k_b", k_b),
        ("model.layers.1.self_attn.v_b", v_b),
        ("model.embed_tokens.weight", float_w["model.embed_tokens.weight"]),
    ]:
        t = stored[name]
        assert isinstance(t, QuantTensor) and t.format == qc["tensors"][name]["format"]
        np.testing.assert_array_equal(t.pack_gguf(), gq.quantize(w, GGML[t.format]))
    assert stored["model.embed_tokens.weight"].format == "q8_0"  # tied output layer under int4
    assert stored["model.norm.weight"].dtype == np.float32
    assert "lm_head.weight" not in stored and not any(n.endswith("kv_b_proj.weight") for n in stored)
    # dequantized state dict: HF names, kv_b reassembled, exactly the stored values
    state = dequantized_state_dict(out)
    kv = state["model.layers.1.self_attn.kv_b_proj.weight"].numpy()
    cfg = json.loads((src / "config.json").read_text())
    np.testing.assert_array_equal(
        kv,
        merge_kv_b(
            stored["model.layers.1.self_attn.k_b"].dequantize(),
            stored["model.layers.1.self_attn.v_b"].dequantize(),
            cfg,
        ),
    )
    assert set(state) == set(float_w)
    ids = torch.randint(0, TEST_VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, got = load_model(src)(ids), load_quantized_model(out)(ids)
    kl, top1 = _kl_top1(ref, got)
    assert 0 < kl < 0.5 and top1 > 0.5, (kl, top1)


def test_4bit_codes_are_stored_two_per_byte(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """q4_0 / q4_1 folders pack two codes per byte (MatMulNBits order), so a q4 folder is about half a q8_0
    one; the reader gives back exactly RTN's codes, whole or by row range. A version-1 folder is refused."""
    from edgeport.checkpoint import iter_tensors
    from edgeport.quantize import quantize_checkpoint
    from edgeport.tensorfile import SafetensorsReader
    from quant.checkpoint import QuantReader, unpack_nibbles

    src = ckpts["block"]
    w = {n: t.numpy() for n, t in iter_tensors(src, torch.float32)}
    sizes = {}
    for scheme in ("q8_0", "q4_0", "q4_1"):
        out = quantize_checkpoint(src, tmp_path / scheme, scheme=scheme, progress=False)
        sizes[scheme] = (out / "model.safetensors").stat().st_size
        raw = SafetensorsReader([out / "model.safetensors"])
        name = "model.layers.0.mlp.up_proj.weight"
        rows, cols = w[name].shape
        want = FORMATS[scheme].quantize(w[name])
        if scheme == "q8_0":
            assert raw.dtype(f"{name}.codes") == torch.int8 and raw.shape(f"{name}.codes") == (rows, cols)
            continue
        packed = raw.read(f"{name}.codes").numpy()
        assert packed.dtype == np.uint8 and packed.shape == (rows, cols // 2)
        np.testing.assert_array_equal(packed, want[0][:, 0::2] | (want[0][:, 1::2] << 4))
        np.testing.assert_array_equal(unpack_nibbles(packed), want[0])
        q = QuantReader(out)
        part = q.read(name, 5, 9)
        assert isinstance(part, QuantTensor) and part.format == scheme
        for got, exp in zip(part.arrays, want, strict=True):
            np.testing.assert_array_equal(got, exp[5:9])
    # the embedding (tied output layer) is q8_0 under every scheme; the rest halves its code bytes
    assert sizes["q4_0"] < 0.7 * sizes["q8_0"], sizes
    qc = json.loads((tmp_path / "q4_0" / "quant_config.json").read_text())
    (tmp_path / "q4_0" / "quant_config.json").write_text(json.dumps({**qc, "version": 1}))
    with pytest.raises(EdgeportError, match="unsupported version 1.*quantize the float checkpoint again"):
        QuantReader(tmp_path / "q4_0")


def test_gptq_checkpoint_lowers_kl_and_handles_untied(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from edgeport.checkpoint import load_model
    from edgeport.quantize import calibration_ids, quantize_checkpoint

    results = {}
    for src_name in ("block", "untied"):
        src = ckpts[src_name]
        model = load_model(src)
        ids = calibration_ids(src, None, 512, seq_len=128, split="eval")  # the built-in text's held-out split
        with torch.no_grad():
            ref = model(ids)
        for method in ("rtn", "gptq"):
            out = quantize_checkpoint(
                src,
                tmp_path / f"{src_name}-{method}",
                scheme="q4_0",
                method=method,
                n_calib_tokens=512,
                seq_len=128,
                progress=False,
            )
            with torch.no_grad():
                results[src_name, method] = _kl_top1(ref, load_quantized_model(out)(ids))[0]
        qc = read_quant_config(tmp_path / f"{src_name}-gptq")
        assert qc["method"] == "gptq" and qc["calibration"]["tokens"] == 512
    assert read_quant_config(tmp_path / "untied-gptq")["tensors"]["lm_head.weight"]["format"] == "q8_0"
    assert (
        read_quant_config(tmp_path / "untied-gptq")["tensors"]["model.embed_tokens.weight"]["format"]
        == "q4_0"
    )
    for src_name in ("block", "untied"):
        assert results[src_name, "gptq"] < results[src_name, "rtn"], results


def test_odd_dimensions_fall_back_to_float(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from edgeport.checkpoint import load_model
    from edgeport.quantize import quantize_checkpoint

    src = ckpts["odd"]
    ids = torch.randint(0, TEST_VOCAB, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = load_model(src)(ids)
    for method in ("rtn", "gptq"):
        out = quantize_checkpoint(
            src,
            tmp_path / method,
            scheme="q4_0_mla",
            method=method,
            n_calib_tokens=256,
            seq_len=64,
            progress=False,
        )
        tensors = read_quant_config(out)["tensors"]
        for name, m in tensors.items():
            if len(m["shape"]) == 1:
                assert m["format"] == "f32", name
            elif m["shape"][1] % 32:
                assert m["format"] in ("f16", "f32") and "not a multiple of 32" in m["note"], (name, m)
        assert tensors["model.layers.0.mlp.gate_proj.weight"]["format"] == "f16"  # 136 x 72: f16
        assert tensors["model.layers.0.self_attn.k_b"]["format"] == "f32"  # 72 x 12: tiny
        assert tensors["model.layers.1.self_attn.v_b"]["shape"] == [3 * 20, 24]
        assert all(not isinstance(t, QuantTensor) for _, t in iter_quantized(out))
        with torch.no_grad():
            got = load_quantized_model(out)(ids)
        torch.testing.assert_close(got, ref, atol=2e-2, rtol=0)  # only f16 rounding


def test_bad_inputs_are_one_line_errors(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from edgeport.cli import app
    from edgeport.quantize import quantize_checkpoint

    src = ckpts["block"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"nope": 1}\n')
    runner = CliRunner()
    cases = [
        (["quantize", str(src), "--scheme", "q3_k", "--out", str(tmp_path / "o1")], "unknown scheme"),
        (["quantize", str(src), "--method", "awq", "--out", str(tmp_path / "o2")], "unknown method"),
        (["quantize", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")], "not a folder"),
        (
            ["quantize", str(src), "--method", "gptq", "--calib", str(bad), "--out", str(tmp_path / "o4")],
            "bad.jsonl:2",
        ),
        (
            [
                "quantize",
                str(src),
                "--method",
                "gptq",
                "--calib",
                str(tmp_path / "x.csv"),
                "--out",
                str(tmp_path / "o5"),
            ],
            "not found",
        ),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        assert msg in r.output and "Traceback" not in r.output
        assert not Path(args[-1]).exists()  # nothing half-written
    txt = tmp_path / "calib.txt"
    txt.write_text(" ".join(TOKENIZER_TEXT))
    r = runner.invoke(
        app,
        [
            "quantize",
            str(src),
            "--scheme",
            "q8_0",
            "--method",
            "gptq",
            "--calib",
            str(txt),
            "--calib-tokens",
            "256",
            "--out",
            str(tmp_path / "ok"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert read_quant_config(tmp_path / "ok")["calibration"]["source"] == str(txt)
    with pytest.raises(EdgeportError, match="already a quantized checkpoint"):
        quantize_checkpoint(tmp_path / "ok", tmp_path / "again", progress=False)
    # a damaged quantized checkpoint is reported, not half-read
    qc = json.loads((tmp_path / "ok" / "quant_config.json").read_text())
    qc["tensors"]["model.layers.0.mlp.up_proj.weight"]["shape"] = [128, 96]
    (tmp_path / "ok" / "quant_config.json").write_text(json.dumps(qc))
    with pytest.raises(EdgeportError, match="up_proj.*do not match"):
        list(iter_quantized(tmp_path / "ok"))
    with pytest.raises(EdgeportError, match="quant_config.json"):
        read_quant_config(src)
