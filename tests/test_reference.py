"""The streamed fp32 reference: the same numbers as the in-memory model, with one decoder layer in memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgeport.checkpoint import expected_shapes, load_model, save_model
from edgeport.errors import EdgeportError
from edgeport.model import preset
from edgeport.reference import StreamedModel
from runtimes.torch_ref import TorchRef

IDS = list(range(3, 60))


@pytest.mark.parametrize("sharded", [False, True])
def test_streamed_equals_in_memory(hf_checkpoint, tmp_path: Path, sharded: bool) -> None:
    folder = hf_checkpoint(seed=3)
    if sharded:  # the same weights as several shards + index, as real Youtu-LLM-2B folders are
        folder = save_model(load_model(folder), tmp_path / "sharded", max_shard_bytes=40_000)
        assert (folder / "model.safetensors.index.json").is_file()
    full = load_model(folder)
    with torch.no_grad():
        want = full(torch.tensor([IDS]))[0].numpy()
    streamed = TorchRef(
        folder, streamed=True, resident_bytes=0
    )  # nothing kept: every forward reads every layer
    assert not streamed.streamed.resident
    np.testing.assert_array_equal(streamed.logits(IDS), want)  # same modules, same order: bit-exact
    assert streamed.generate(IDS, 8) == TorchRef(folder).generate(IDS, 8)
    assert not streamed.streamed._kept
    absorbed = TorchRef(
        folder, absorbed=True, streamed=True
    )  # small: layers stay resident after the first pass
    assert absorbed.streamed.resident
    np.testing.assert_allclose(absorbed.logits(IDS), want, atol=1e-4)
    assert absorbed.generate(IDS, 8) == TorchRef(folder, absorbed=True).generate(IDS, 8)
    assert len(absorbed.streamed._kept) == full.config.num_hidden_layers


def test_missing_tensor_is_one_line(hf_checkpoint) -> None:
    folder = hf_checkpoint(seed=0)
    state = dict(load_model(folder).state_dict())
    del state["model.layers.1.mlp.up_proj.weight"]
    state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(EdgeportError, match="missing tensor 'model.layers.1.mlp.up_proj.weight'"):
        StreamedModel(folder)


PEAK = """
import sys
import torch
from edgeport.checkpoint import expected_shapes, load_config
from runtimes.torch_ref import TorchRef

def hwm():  # this process's own peak RSS (ru_maxrss would start at the forking parent's)
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

torch.set_num_threads(1)
expected_shapes(load_config(sys.argv[1]))  # torch's one-time start-up allocations belong to the baseline
base = hwm()
m = TorchRef(sys.argv[1], streamed=True, resident_bytes=64 * 2**20)  # keeps one 45 MB layer, streams the rest
m.logits(list(range(3, 35)))
m.generate(list(range(3, 11)), 2)
print(hwm() - base)
"""


def test_streamed_peak_memory_is_one_layer(tmp_path: Path) -> None:
    """A 540 MB bf16 checkpoint (1.1 GB in fp32): the streamed reference's peak over the interpreter's baseline
    stays under half the checkpoint's bytes; loading the model whole would take twice them."""
    cfg = preset(
        "youtu-2b",
        vocab_size=512,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=24,
        num_attention_heads=8,
        num_key_value_heads=8,
        q_lora_rank=384,
        kv_lora_rank=256,
        qk_nope_head_dim=64,
        qk_rope_head_dim=32,
        v_head_dim=64,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=None,
    )
    g = torch.Generator().manual_seed(0)
    state = {
        k: (torch.ones(s) if len(s) == 1 else torch.randn(s, generator=g) * 0.02).to(torch.bfloat16)
        for k, s in expected_shapes(cfg).items()
    }
    folder = tmp_path / "big"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    ckpt_bytes = (folder / "model.safetensors").stat().st_size
    del state
    assert ckpt_bytes > 500e6
    out = subprocess.run(
        [sys.executable, "-c", PEAK, str(folder)], capture_output=True, text=True, check=True
    )
    grew = int(out.stdout.strip().splitlines()[-1])
    assert grew < ckpt_bytes / 2, f"streamed reference grew {grew / 2**20:.0f} MiB over its baseline"
