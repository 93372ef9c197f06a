"""GGUF export against the real llama.cpp (llama-cpp-python): logits, greedy decode, quantized KL, tokenizer,
chat template, latent-only KV cache, and bad input. The torch reference is edgeport.model in fp32."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from edgeport import chat
from edgeport.checkpoint import load_config, load_model
from edgeport.errors import EdgeportError
from edgeport.export import gguf as G
from edgeport.export.gguf import export_gguf
from edgeport.tokenizer import load_tokenizer
from runtimes.llamacpp import LlamaCpp
from runtimes.torch_ref import TorchRef

F32_MAX_ABS = 1e-3  # measured ~5e-6 with an f32 KV cache and flash attention off (see runtimes/llamacpp.py)
Q8_KL, Q8_TOP1 = 2e-3, 0.95
Q4_KL, Q4_TOP1 = 0.08, 0.80


def _ids(n: int, vocab: int, seed: int = 0) -> list[int]:
    return [int(i) for i in np.random.RandomState(seed).randint(0, vocab - 16, n)]


def _torch_logits(folder: Path, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return load_model(folder)(torch.tensor([ids]))[0].numpy()


def _exact(path: Path) -> LlamaCpp:
    return LlamaCpp(path, n_ctx=256, kv_type="f32", flash_attn=False)


def _kl_top1(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    p = torch.log_softmax(torch.from_numpy(ref).double(), -1)
    q = torch.log_softmax(torch.from_numpy(got).double(), -1)
    kl = (p.exp() * (p - q)).sum(-1).mean().item()
    return kl, float((ref.argmax(-1) == got.argmax(-1)).mean())


def _tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


# ---- float parity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg",
    [
        {},  # odd dims, v_head_dim != qk_nope_head_dim, tied
        {"tie_word_embeddings": False},
        {"rope_interleave": False},  # rope rows permuted at export
        {"q_lora_rank": None},  # attn_q instead of q_a / q_b
    ],
    ids=["odd-tied", "untied", "rope-halves", "no-q-lora"],
)
def test_f32_logits_and_greedy_match_torch(hf_checkpoint, tmp_path, cfg):
    folder = hf_checkpoint(seed=3, **cfg)
    out = export_gguf(folder, tmp_path / "m.gguf", "f32", progress=False)
    names = _tensors(out)
    assert ("output.weight" in names) == (cfg.get("tie_word_embeddings") is False)
    assert ("blk.0.attn_q.weight" in names) == ("q_lora_rank" in cfg)
    ids = _ids(48, load_config(folder).vocab_size)
    rt = _exact(out)
    ref, got = _torch_logits(folder, ids), rt.logits(ids)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < F32_MAX_ABS
    assert rt.generate(ids[:8], 32) == TorchRef(folder, absorbed=True).generate(ids[:8], 32)


def test_f16_default_runtime_close_to_torch(hf_checkpoint, tmp_path):
    """llama.cpp's defaults (f16 weights, f16 KV cache, auto flash attention): close, same greedy tokens."""
    folder = hf_checkpoint(seed=4)
    out = export_gguf(folder, tmp_path / "m.gguf", "f16", progress=False)
    ids = _ids(40, load_config(folder).vocab_size, seed=1)
    rt = LlamaCpp(out, n_ctx=256)
    kl, top1 = _kl_top1(_torch_logits(folder, ids), rt.logits(ids))
    assert kl < 1e-3 and top1 >= 0.95


# ---- metadata and the latent KV cache -------------------------------------------------------------------
def test_metadata_matches_llamacpp_youtu_mapping(hf_checkpoint, tmp_path):
    folder = hf_checkpoint(seed=5)
    cfg = load_config(folder)
    out = export_gguf(folder, tmp_path / "m.gguf", "f16", progress=False)
    r, dr, L = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.num_hidden_layers
    fields = gguf.GGUFReader(out).fields
    want = {
        "general.architecture": "deepseek2",
        "deepseek2.block_count": L,
        "deepseek2.attention.head_count": cfg.num_attention_heads,
        "deepseek2.attention.head_count_kv": 1,
        "deepseek2.leading_dense_block_count": L,
        "deepseek2.attention.key_length": r + dr,
        "deepseek2.attention.value_length": r,
        "deepseek2.attention.key_length_mla": cfg.qk_nope_head_dim + dr,
        "deepseek2.attention.value_length_mla": cfg.v_head_dim,
        "deepseek2.attention.q_lora_rank": cfg.q_lora_rank,
        "deepseek2.attention.kv_lora_rank": r,
        "deepseek2.rope.dimension_count": dr,
        "deepseek2.expert_feed_forward_length": cfg.intermediate_size,
        "deepseek2.expert_shared_count": 0,
        "deepseek2.vocab_size": cfg.vocab_size,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "youtu",
        "tokenizer.ggml.add_bos_token": False,
    }
    for key, value in want.items():
        assert fields[key].contents() == value, key
    assert "deepseek2.expert_count" not in fields  # dense: no routed experts
    # the two keys older loaders require of any deepseek2 file (neutral values, see add_model_kv)
    assert fields["deepseek2.expert_weights_scale"].contents() == 1.0
    assert fields["deepseek2.rope.scaling.yarn_log_multiplier"].contents() == 0.0
    tok = load_tokenizer(folder)
    assert fields["tokenizer.ggml.bos_token_id"].contents() == tok.bos_id
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tok.eos_id
    types = fields["tokenizer.ggml.token_type"].contents()
    added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    for t in added:  # each added token's special flag, carried as the tokenizer has it
        assert types[t["id"]] == (gguf.TokenType.CONTROL if t["special"] else gguf.TokenType.USER_DEFINED)
    markers = {tok.special_ids[s] for s in chat.TEXT_MARKERS}  # edgeport's trained tokenizers: text markers
    assert {t["id"] for t in added if not t["special"]} == markers
    t = _tensors(out)
    H, dn, dv = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.v_head_dim
    assert tuple(t["blk.0.attn_k_b.weight"].shape) == (dn, r, H)  # ggml ne order
    assert tuple(t["blk.0.attn_v_b.weight"].shape) == (r, dv, H)
    assert "blk.0.attn_kv_b.weight" not in t
    # k_b is W_UK transposed per head: compare with the checkpoint's kv_b
    kv_b = load_model(folder).model.layers[0].self_attn.kv_b_proj.weight.detach().view(H, dn + dv, r)
    k_b = np.asarray(t["blk.0.attn_k_b.weight"].data, np.float32).reshape(H, r, dn)
    np.testing.assert_allclose(k_b, kv_b[:, :dn].transpose(1, 2).half().float().numpy())


def test_kv_cache_is_latent_only(hf_checkpoint, tmp_path):
    folder = hf_checkpoint(seed=6)
    cfg = load_config(folder)
    out = export_gguf(folder, tmp_path / "m.gguf", "f16", progress=False)
    rt = LlamaCpp(out, n_ctx=256)
    latent = cfg.num_hidden_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * 2  # f16
    assert rt.kv_bytes_per_token() == latent == cfg.kv_bytes_per_token(2)["latent"]
    assert latent < cfg.kv_bytes_per_token(2)["expanded"]
    log = rt.kv_cache_log()
    assert log["layers"] == cfg.num_hidden_layers and log["v_mib"] == 0.0  # K only: V is a view of the latent


# ---- quantized ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qtype,kl_max,top1_min", [("q8_0", Q8_KL, Q8_TOP1), ("q4_0", Q4_KL, Q4_TOP1)])
def test_quantized_kl_and_top1_vs_fp32(block_checkpoint, tmp_path, qtype, kl_max, top1_min):
    out = export_gguf(block_checkpoint, tmp_path / f"{qtype}.gguf", qtype, progress=False)
    types = {t.tensor_type for t in _tensors(out).values()}
    assert G.ggml_type(qtype) in types
    ids = _ids(64, load_config(block_checkpoint).vocab_size, seed=2)
    kl, top1 = _kl_top1(_torch_logits(block_checkpoint, ids), LlamaCpp(out, n_ctx=256).logits(ids))
    assert kl < kl_max and top1 >= top1_min, (kl, top1)


def test_odd_dims_fall_back_to_float(hf_checkpoint, tmp_path):
    """Rows that are not a multiple of 32 cannot hold Q8_0 blocks: quant/'s policy keeps them f16/f32."""
    folder = hf_checkpoint(seed=12, hidden_size=64)  # rows of 64 quantize; 136, 40, 12, 24, 60 cannot
    out = export_gguf(folder, tmp_path / "m.gguf", "q8_0", progress=False)
    t = _tensors(out)
    assert t["blk.0.ffn_gate.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert t["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    for name, x in t.items():
        if x.tensor_type == gguf.GGMLQuantizationType.Q8_0:
            assert int(x.shape[0]) % 32 == 0, name
        else:
            assert x.tensor_type in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32), name
    ids = _ids(32, load_config(folder).vocab_size, seed=5)
    kl, top1 = _kl_top1(_torch_logits(folder, ids), LlamaCpp(out, n_ctx=256).logits(ids))
    assert kl < 1e-2 and top1 >= 0.9, (kl, top1)


def test_quantized_checkpoint_is_packed_not_rerounded(block_checkpoint, tmp_path, monkeypatch):
    """A quantized folder's GGUF holds exactly pack_gguf(stored codes); it equals exporting the float folder with
    the same type (one RTN code path, here rounded in many small row chunks on the thread pool); llama.cpp on it
    matches torch on the dequantized weights."""
    from edgeport.quantize import quantize_checkpoint
    from quant.checkpoint import QuantTensor, iter_quantized

    qdir = quantize_checkpoint(block_checkpoint, tmp_path / "q4", scheme="q4_0", method="rtn", progress=False)
    from_q = export_gguf(qdir, tmp_path / "from_q.gguf", progress=False)
    monkeypatch.setattr(G, "CHUNK_BYTES", 1024)  # a few rows per chunk
    from_f = export_gguf(block_checkpoint, tmp_path / "from_f.gguf", "q4_0", progress=False)
    monkeypatch.undo()
    tq, tf = _tensors(from_q), _tensors(from_f)
    checked = 0
    for name, t in iter_quantized(qdir):
        g = tq[G.gguf_name(name)]
        if isinstance(t, QuantTensor):
            assert int(g.tensor_type) == t.ggml_type
            assert bytes(np.asarray(g.data)) == t.pack_gguf().tobytes(), name
            checked += 1
        assert bytes(np.asarray(g.data)) == bytes(np.asarray(tf[g.name].data)), name
    assert checked >= 10
    ids = _ids(48, load_config(block_checkpoint).vocab_size, seed=3)
    ref = TorchRef(qdir).logits(ids)
    kl, top1 = _kl_top1(ref, LlamaCpp(from_q, n_ctx=256).logits(ids))
    assert kl < 2e-3 and top1 >= 0.95, (kl, top1)  # same weights; llama.cpp rounds activations to q8 only
    with pytest.raises(EdgeportError, match="already quantized"):
        export_gguf(qdir, tmp_path / "x.gguf", "q8_0", progress=False)


def test_kquant_through_llama_model_quantize(block_checkpoint, tmp_path):
    out = export_gguf(block_checkpoint, tmp_path / "k" / "q6k.gguf", "q6_k", progress=False)
    assert [p.name for p in out.parent.iterdir()] == ["q6k.gguf"]  # the F16 intermediate is gone
    ids = _ids(32, load_config(block_checkpoint).vocab_size, seed=4)
    kl, top1 = _kl_top1(_torch_logits(block_checkpoint, ids), LlamaCpp(out, n_ctx=256).logits(ids))
    assert kl < 0.02 and top1 >= 0.9, (kl, top1)


# ---- tokenizer and chat template ------------------------------------------------------------------------
MIXED = [
    "The quick brown fox jumps over the lazy dog. It's 2026-11-25; we've got 1234 tokens!",
    "东京是日本的首都。我们在这里学习模型。한국어 문장도 있습니다。カタカナとひらがな。",
    "def add(a, b):\n    return a + b  # sum\n\n\tprint(add(17, 23))\r\n",
    "Emoji 🙂🚀✨ and CamelCaseWords, ALLCAPS, naïve café 3.14159 x² ÷ y",
    '<|User|>What is 3*7?<|Assistant|><think>\n\n</think>\n\n<tool_call>{"name": "calc"}</tool_call><|end_of_text|>',
    "   leading spaces and trailing   \n\n\n multiple newlines",
]


def test_tokenizer_matches_hf(hf_checkpoint, tmp_path):
    folder = hf_checkpoint(seed=7)
    out = export_gguf(folder, tmp_path / "m.gguf", "f16", progress=False)
    tok, rt = load_tokenizer(folder), LlamaCpp(out, n_ctx=64)
    for text in MIXED:
        assert rt.tokenize(text) == tok.encode(text), text


def test_chat_template_renders_like_edgeport(hf_checkpoint, tmp_path):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    folder = hf_checkpoint(seed=8)
    out = export_gguf(folder, tmp_path / "m.gguf", "f16", progress=False)
    template = LlamaCpp(out, n_ctx=64).meta("tokenizer.chat_template")
    assert template == chat.CHAT_TEMPLATE
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]
    convs = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "东京?"}],
        [
            {"role": "user", "content": "3*7?"},
            {
                "role": "assistant",
                "content": "<think>mult</think>\n\n",
                "tool_calls": [
                    {"type": "function", "function": {"name": "calc", "arguments": {"expr": "3*7"}}}
                ],
            },
            {"role": "tool", "content": "21"},
        ],
    ]
    for messages in convs:
        for kw in ({}, {"tools": tools}, {"enable_thinking": False}):
            fmt = Jinja2ChatFormatter(
                template, eos_token=chat.EOS, bos_token=chat.BOS, add_generation_prompt=True
            )
            got = fmt(messages=messages, **kw).prompt
            assert got == chat.render(messages, add_generation_prompt=True, **kw), (messages, kw)


# ---- bad input: one clear line, no file left ------------------------------------------------------------
def _no_output(d: Path) -> None:
    assert not [p for p in d.iterdir() if p.name.endswith((".gguf", ".tmp"))]


def test_unsupported_architecture(hf_checkpoint, tmp_path):
    folder = hf_checkpoint(seed=9)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**cfg, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    res = CliRunner().invoke(
        __import__("edgeport.cli").cli.app, ["export", "gguf", str(folder), "-o", str(tmp_path / "m.gguf")]
    )
    assert res.exit_code == 2 and "model_type" in res.output and len(res.output.strip().splitlines()) == 1
    (folder / "config.json").write_text(json.dumps({**cfg, "attention_bias": True}))
    with pytest.raises(EdgeportError, match="attention_bias"):
        export_gguf(folder, tmp_path / "m.gguf", progress=False)
    _no_output(tmp_path)


def test_missing_tensor_and_shape_mismatch(hf_checkpoint, tmp_path):
    folder = hf_checkpoint(seed=10)
    st = folder / "model.safetensors"
    state = load_file(st)
    save_file({k: v for k, v in state.items() if "layers.1.mlp.up_proj" not in k}, st)
    with pytest.raises(EdgeportError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        export_gguf(folder, tmp_path / "m.gguf", progress=False)
    state["model.layers.0.self_attn.kv_b_proj.weight"] = state["model.layers.0.self_attn.kv_b_proj.weight"][
        :-1
    ]
    save_file(state, st)
    with pytest.raises(EdgeportError, match="kv_b_proj.weight' has shape") as e:
        export_gguf(folder, tmp_path / "m.gguf", progress=False)
    assert "\n" not in str(e.value)
    _no_output(tmp_path)


def test_disk_full_leaves_no_file(hf_checkpoint, tmp_path, monkeypatch):
    folder = hf_checkpoint(seed=11)
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()
    out.write_bytes(b"GGUF old")  # an earlier GGUF (only those are replaced) survives a failed export
    calls = {"n": 0}
    real = G._write

    def full(f, data):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(G, "_write", full)
    with pytest.raises(EdgeportError, match="No space left on device") as e:
        export_gguf(folder, out, "f32", progress=False)
    assert str(out) in str(e.value) and "\n" not in str(e.value)
    assert out.read_bytes() == b"GGUF old"
    assert [p.name for p in out.parent.iterdir()] == ["m.gguf"]
