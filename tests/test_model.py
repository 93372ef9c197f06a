"""The Dense-MLA model against transformers.YoutuForCausalLM (the independent reference), both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ODD_CONFIG, TEST_VOCAB, _hf_checkpoint

from edgeport.checkpoint import iter_tensors, load_config, load_model, save_model
from edgeport.errors import EdgeportError
from edgeport.model import YoutuConfig, YoutuForCausalLM, preset
from runtimes.torch_ref import TorchRef

transformers = pytest.importorskip("transformers")

CASES = {
    "odd": {},
    "untied": {"tie_word_embeddings": False},
    "no_q_lora": {"q_lora_rank": None},
    "rope_half": {"rope_interleave": False},
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers_both_ways(tmp_path: Path, case: str) -> None:
    folder = _hf_checkpoint(tmp_path / "hf", None, seed=3, **CASES[case])
    ref = transformers.YoutuForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, TEST_VOCAB, (2, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(ids).logits
        ours = load_model(folder)
        assert (ours(ids) - want).abs().max().item() < 1e-5  # their checkpoint into edgeport
        save_model(ours, tmp_path / "ours")
        back = transformers.YoutuForCausalLM.from_pretrained(tmp_path / "ours").eval()
        assert (back(ids).logits - want).abs().max().item() < 1e-5  # edgeport's checkpoint into transformers


def test_absorbed_decode_with_latent_cache_equals_full_forward(tmp_path: Path) -> None:
    model = load_model(_hf_checkpoint(tmp_path / "hf", None, seed=4))
    cfg = model.config
    ids = torch.randint(0, TEST_VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        tol = 1e-5 * (1 + full.abs().max().item())  # fp32 rounding of a different summation order
        assert (model(ids, absorbed=True) - full).abs().max().item() < tol
        cache = model.new_cache()
        steps = [model(ids[:, :5], cache=cache)] + [
            model(ids[:, i : i + 1], cache=cache) for i in range(5, 12)
        ]
    assert (torch.cat(steps, dim=1) - full).abs().max().item() < tol
    # The cache holds only the latent: kv_lora_rank + qk_rope_head_dim values per token per layer.
    assert all(t.shape == (2, 12, cfg.kv_lora_rank + cfg.qk_rope_head_dim) for t in cache.layers)


def test_generate_matches_transformers_greedy(tmp_path: Path) -> None:
    folder = _hf_checkpoint(tmp_path / "hf", None, seed=5)
    ref = transformers.YoutuForCausalLM.from_pretrained(folder).eval()
    prompt = [5, 17, 99, 3, 250]
    with torch.no_grad():
        want = ref.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, min_new_tokens=20)
    assert TorchRef(folder, absorbed=True).generate(prompt, 20) == want[0, len(prompt) :].tolist()


def test_legacy_config_spelling(tmp_path: Path) -> None:
    folder = _hf_checkpoint(tmp_path / "hf", None, seed=6)
    cfg = json.loads((folder / "config.json").read_text())
    theta = cfg["rope_parameters"]["rope_theta"]
    del cfg["rope_parameters"], cfg["dtype"]
    cfg.update(model_type="youtu_llm", rope_theta=theta, torch_dtype="bfloat16")
    cfg["rope_scaling"] = {"type": "yarn", "factor": 1.0, "mscale_all_dim": 0}
    (folder / "config.json").write_text(json.dumps(cfg))
    legacy = load_config(folder)
    assert legacy.rope_theta == theta and legacy.softmax_scale == legacy.qk_head_dim**-0.5
    assert legacy.dtype == "bfloat16"


def test_sharded_and_half_precision_checkpoints(tmp_path: Path) -> None:
    model = load_model(_hf_checkpoint(tmp_path / "hf", None, seed=7))
    ids = torch.arange(10)[None]
    for dtype, tol in [("float32", 0.0), ("bfloat16", 0.5), ("float16", 0.05)]:
        out = save_model(model, tmp_path / dtype, dtype=dtype, max_shard_bytes=20_000)
        assert (out / "model.safetensors.index.json").is_file()
        with torch.no_grad():
            diff = (load_model(out)(ids) - model(ids)).abs().max().item()
        assert diff <= tol, (dtype, diff)


def test_real_2b_shape_parameter_count() -> None:
    from edgeport.checkpoint import expected_shapes

    shapes = expected_shapes(preset("youtu-2b"))
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 1_961_560_064
    assert preset("youtu-2b").kv_bytes_per_token(2) == {"latent": 36_864, "expanded": 327_680}


def test_bad_checkpoints_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgeportError, match="missing config.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EdgeportError, match="invalid JSON"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(EdgeportError, match="unsupported model_type"):
        load_config(tmp_path)

    good = _hf_checkpoint(tmp_path / "hf", None, seed=8)
    cfg = json.loads((good / "config.json").read_text())
    del cfg["kv_lora_rank"]
    (good / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EdgeportError, match="kv_lora_rank"):
        load_config(good)

    model = YoutuForCausalLM(YoutuConfig(**{**ODD_CONFIG, "vocab_size": TEST_VOCAB}))
    folder = save_model(model, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "kv_lora_rank": 32}))
    with pytest.raises(EdgeportError, match="has shape"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(EdgeportError, match="missing tensor"):
        list(iter_tensors(folder))
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(EdgeportError, match="cannot read safetensors"):
        load_model(folder)
