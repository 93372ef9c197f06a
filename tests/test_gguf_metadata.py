"""GGUF metadata for the loaders people use (LM Studio, Ollama): the model's own name, never the folder or the
scheme, and every key older llama.cpp builds required of a deepseek2 file, read back by the real llama.cpp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest

from edgeport.default_model import default_model_path
from edgeport.export.gguf import export_gguf

# What llama.cpp's deepseek2 loader read without a default (so a file lacking one did not open) in the builds
# that refused Youtu GGUFs for a missing `deepseek2.expert_weights_scale` (llm_load_hparams, LLM_ARCH_DEEPSEEK2).
OLDER_LOADER_KEYS = [
    "deepseek2.attention.layer_norm_rms_epsilon",
    "deepseek2.leading_dense_block_count",
    "deepseek2.attention.q_lora_rank",
    "deepseek2.attention.kv_lora_rank",
    "deepseek2.expert_feed_forward_length",
    "deepseek2.expert_shared_count",
    "deepseek2.expert_weights_scale",
    "deepseek2.rope.scaling.yarn_log_multiplier",
]


def _fields(path: Path) -> dict:
    return {
        k: v.contents() for k, v in gguf.GGUFReader(path).fields.items() if not k.startswith("tokenizer.")
    }


def test_name_is_the_models_and_older_loaders_find_their_keys(tmp_path: Path) -> None:
    folder = shutil.copytree(
        default_model_path(),
        tmp_path / "my-run-q8_0-final",
        ignore=shutil.ignore_patterns("*.py", "__pycache__"),
    )
    a = _fields(export_gguf(folder, tmp_path / "a-q4_0.gguf", "q4_0", progress=False))
    b = _fields(export_gguf(default_model_path(), tmp_path / "b.gguf", "f16", progress=False))
    params = json.loads((default_model_path() / "metrics.json").read_text())["parameters"]
    label = f"{params / 1e6:.1f}M"  # e.g. 3.4M
    assert a["general.name"] == b["general.name"] == f"Youtu {label}"  # neither folder nor scheme
    assert a["general.size_label"] == label
    for key in OLDER_LOADER_KEYS:
        assert key in a, key
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "_name_or_path": "tencent/Youtu-LLM-2B"}))
    named = export_gguf(folder, tmp_path / "c.gguf", "f16", progress=False)
    assert _fields(named)["general.name"] == "Youtu-LLM-2B"
    pytest.importorskip("llama_cpp")
    from runtimes.llamacpp import LlamaCpp

    rt = LlamaCpp(named)  # the real loader opens it and reads the name back
    assert (
        rt.meta("general.name") == "Youtu-LLM-2B" and float(rt.meta("deepseek2.expert_weights_scale")) == 1.0
    )
    rt.close()
