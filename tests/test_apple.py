"""llama.cpp Metal and onnxruntime CoreML parity. Runs on Apple silicon macOS only; elsewhere
the parity tests skip with the adapters' own reason, and the reason itself is checked."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeport.validate import compare_logits
from runtimes.apple import LlamaCppCpuRef, LlamaCppMetal, OrtCoreML
from runtimes.registry import PAIRS, available

ON_APPLE = sys.platform == "darwin" and platform.machine() == "arm64"
METAL_OK, METAL_WHY = LlamaCppMetal.available()
COREML_OK, COREML_WHY = OrtCoreML.available()

# Starting points, not yet measured (calibrate on the first Mac run): teacher-forced logits, Metal vs llama.cpp CPU
# with op offload off. Metal prefill tiles in half precision, so prefill rows drift more than decode rows.
METAL_BOUNDS = {"f16": (1e-4, 1.0), "q8_0": (1e-3, 0.98), "q4_0": (1e-2, 0.97)}  # (mean KL <=, top-1 >=)
# CoreML MLProgram computes in fp16 on GPU/ANE; MatMulNBits runs on the CPU EP either way.
COREML_BOUNDS = {"fp32": (1e-3, 0.98), "int8": (2e-3, 0.97), "int4": (1e-2, 0.95)}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    from test_validate import build_export

    formats = (["gguf"] if METAL_OK else []) + (["onnx"] if COREML_OK else [])
    return build_export(tmp_path_factory.mktemp("apple"), tokenizer_dir, formats=formats)


def ids_for(n: int, vocab: int = 512) -> list[int]:
    return [int(i) for i in np.random.default_rng(0).integers(0, vocab - 16, size=n)]


@pytest.mark.skipif(ON_APPLE, reason="checks the reason given off Apple silicon")
def test_apple_runtimes_say_why_they_are_skipped() -> None:
    assert not METAL_OK and "macOS arm64" in METAL_WHY and "Metal" in METAL_WHY
    assert not COREML_OK and "macOS arm64" in COREML_WHY and "CoreML" in COREML_WHY
    assert LlamaCppCpuRef.available() == (METAL_OK, METAL_WHY)
    avail = available()
    assert avail["llama.cpp-metal"] == (False, METAL_WHY)
    assert avail["onnxruntime-coreml"] == (False, COREML_WHY)
    assert {p.runtime for p in PAIRS} >= {"llama.cpp-metal", "onnxruntime-coreml"}


@pytest.mark.skipif(not METAL_OK, reason=METAL_WHY)
@pytest.mark.parametrize("gguf_type", ["f16", "q8_0", "q4_0"])
def test_metal_matches_llamacpp_cpu(export_dir: Path, gguf_type: str) -> None:
    path = export_dir / f"gguf/model-{gguf_type}.gguf"
    ids = ids_for(48)
    cpu, metal = LlamaCppCpuRef(path), LlamaCppMetal(path)
    try:
        a, b = cpu.logits(ids), metal.logits(ids)
        kl_max, top1_min = METAL_BOUNDS[gguf_type]
        got = compare_logits(a, b)
        assert got["kl"] <= kl_max and got["top1"] >= top1_min, got
        if gguf_type == "f16":
            assert cpu.generate(ids[:8], 16) == metal.generate(ids[:8], 16)
    finally:
        cpu.close()
        metal.close()


@pytest.mark.skipif(not COREML_OK, reason=COREML_WHY)
@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_coreml_matches_ort_cpu(export_dir: Path, precision: str) -> None:
    from runtimes.ort import OrtCpu

    folder = export_dir / f"onnx/{precision}"
    ids = ids_for(48)
    a, b = OrtCpu(folder).logits(ids), OrtCoreML(folder).logits(ids)
    kl_max, top1_min = COREML_BOUNDS[precision]
    got = compare_logits(a, b)
    assert got["kl"] <= kl_max and got["top1"] >= top1_min, got
