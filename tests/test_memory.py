"""Every export stage streams: its peak RSS above the interpreter's stays below half the checkpoint's bytes.

A random bf16 checkpoint of about 250 MB (the 2B architecture, narrower and shallower) goes through each stage
(`edgeport quantize`, `edgeport export onnx` at every precision from the float checkpoint and from quantized
folders, `edgeport export gguf` from a quantized folder) in a fresh child process, which reports how far its
peak RSS (VmHWM) rose above its own RSS once the stages' modules were imported (the interpreter's baseline). A
stage that held the whole model (all quantized tensors, the float32 weights, an in-memory ModelProto, a mapped
shard) would need about the checkpoint's bytes or more and fails here. Not a timing test: only memory is asserted
(`pytest -s` prints each stage's figure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

SHAPE = dict(
    vocab_size=16384,
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=10,
    num_attention_heads=8,
    num_key_value_heads=8,
    q_lora_rank=768,
    kv_lora_rank=256,
    qk_nope_head_dim=64,
    qk_rope_head_dim=32,
    v_head_dim=64,
    max_position_embeddings=2048,
)

# A fresh interpreter per stage imports what the stages import and runs the stage once on a tiny checkpoint of the
# same kind (code pages, thread pools and allocator arenas that any model pays land in the baseline), notes its
# RSS, resets its peak (writing 5 to /proc/self/clear_refs sets VmHWM to the current RSS), runs the stage on the
# big checkpoint and prints how far VmHWM rose: the memory that grows with the model.
CHILD = r"""
import sys
import tempfile
from pathlib import Path
import tqdm  # noqa: F401 - imported lazily by the stages
from edgeport.export.gguf import export_gguf
from edgeport.export.onnx import export_onnx
from edgeport.quantize import quantize_checkpoint

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

def run(stage, src, out, arg):
    if stage == "quantize":
        quantize_checkpoint(src, out, scheme=arg, progress=False)
    elif stage == "onnx":
        export_onnx(src, out, arg, mobile=False, progress=False)
    else:
        export_gguf(src, out + ".gguf", None if arg == "-" else arg, progress=False)

stage, source, src, out, arg, tiny = sys.argv[1:]
with tempfile.TemporaryDirectory() as tmp:
    if source != "float":
        tiny = quantize_checkpoint(tiny, Path(tmp) / "q", scheme=source, progress=False)
    run(stage, str(tiny), str(Path(tmp) / "out"), arg)
start = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
run(stage, src, out, arg)
print(status("VmHWM:") - start)
"""

# (stage, source, argument): source "float" is the checkpoint, "q8_0"/"q4_0" the folders its quantize stages make
STAGES = [
    ("quantize", "float", "q8_0"),
    ("quantize", "float", "q4_0"),
    ("onnx", "float", "fp32"),
    ("onnx", "float", "fp16"),
    ("onnx", "float", "int4"),
    ("onnx", "q8_0", "int8"),
    ("onnx", "q4_0", "int4"),
    ("onnx", "q4_0", "fp32"),
    ("gguf", "q4_0", "-"),
]


def _random_checkpoint(folder: Path, tokenizer_dir: Path, **shape: int) -> Path:
    """A random bf16 checkpoint of `shape` with the test tokenizer."""
    from safetensors.torch import save_file

    from edgeport.checkpoint import copy_tokenizer, expected_shapes
    from edgeport.model import YoutuConfig

    cfg = YoutuConfig(**shape)
    g = torch.Generator().manual_seed(0)
    state = {
        name: (torch.ones(s) if len(s) == 1 else torch.randn(s, generator=g) * 0.02).to(torch.bfloat16)
        for name, s in expected_shapes(cfg).items()
    }
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**cfg.to_dict(), "dtype": "bfloat16"}))
    copy_tokenizer(tokenizer_dir, folder)
    return folder


@pytest.fixture(scope="session")
def big_checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """About 250 MB of random bf16 weights."""
    return _random_checkpoint(tmp_path_factory.mktemp("big"), tokenizer_dir, **SHAPE)


@pytest.fixture(scope="module")
def peak(
    big_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path
) -> Callable[[str, str, str], int]:
    """peak(stage, source, arg): bytes the stage's peak RSS rose above the interpreter's (each stage runs once,
    alone; a quantized source is made by its quantize stage first)."""
    root = tmp_path_factory.mktemp("stages")
    tiny = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, q_lora_rank=64, vocab_size=512)
    (root / "tiny").mkdir()
    tiny_ckpt = _random_checkpoint(root / "tiny", tokenizer_dir, **{**SHAPE, **tiny, "kv_lora_rank": 64})
    done: dict[tuple[str, str, str], int] = {}

    def run(stage: str, source: str, arg: str) -> int:
        if (stage, source, arg) not in done:
            src = big_checkpoint if source == "float" else root / f"quantize-float-{source}"
            if source != "float":
                run("quantize", "float", source)
            res = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    stage,
                    source,
                    str(src),
                    str(root / f"{stage}-{source}-{arg}"),
                    arg,
                ]
                + [str(tiny_ckpt)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert res.returncode == 0, res.stderr[-2000:]
            done[stage, source, arg] = int(res.stdout.split()[-1])
            print(f"{stage} {arg} from {source}: +{done[stage, source, arg] / 2**20:.0f} MiB peak RSS")
        return done[stage, source, arg]

    return run


@pytest.mark.parametrize(("stage", "source", "arg"), STAGES, ids=["-".join(s) for s in STAGES])
def test_stage_peak_rss_below_half_the_checkpoint(
    peak: Callable[[str, str, str], int], big_checkpoint: Path, stage: str, source: str, arg: str
) -> None:
    ckpt_bytes = (big_checkpoint / "model.safetensors").stat().st_size
    assert ckpt_bytes > 150 * 2**20  # the bound below means something only for a model this size
    extra = peak(stage, source, arg)
    assert 0 < extra < ckpt_bytes / 2, (
        f"{stage} {arg} from {source}: peak RSS {extra / 2**20:.0f} MiB above the interpreter's, "
        f"checkpoint {ckpt_bytes / 2**20:.0f} MiB"
    )
