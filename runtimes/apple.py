"""Apple adapters: llama.cpp with every layer on Metal, and onnxruntime with the CoreML execution provider.

Both need macOS on Apple silicon; elsewhere `available()` says so and validate/bench list them as skipped.
The Metal adapter's CPU twin (`LlamaCppCpuRef`) turns op offload off, so with n_gpu_layers=0 no matmul is sent to
Metal behind our back (mobile.md section 4): the pair measures Metal drift against llama.cpp's own CPU path.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtimes.base import Runtime

# Both sides pin flash attention off (llama-cpp-python's default; llama.cpp's CLI defaults to auto).
LLAMA_KW = dict(flash_attn=False, op_offload=False, offload_kqv=False)


def apple_silicon() -> tuple[bool, str]:
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return False, f"requires macOS arm64 / Metal (this machine is {sys.platform} {platform.machine()})"
    return True, ""


class _Delegate(Runtime):
    """Forwards the Runtime interface to an inner adapter built by a subclass."""

    inner: Runtime

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        return self.inner.logits(ids)

    def generate(self, ids: Sequence[int], max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[int]:
        return self.inner.generate(ids, max_new_tokens, stop_ids)

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def __getattr__(self, name: str):  # kv/weight byte figures and the like come from the inner adapter
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


class LlamaCppMetal(_Delegate):
    """A GGUF on llama.cpp's Metal backend, all layers offloaded."""

    name = "llama.cpp-metal"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = apple_silicon()
        if not ok:
            return ok, why
        try:
            import llama_cpp
        except ImportError as e:
            return False, f"llama-cpp-python is not installed ({e})"
        if not llama_cpp.llama_supports_gpu_offload():
            return False, "this llama-cpp-python build has no Metal (reinstall it from source on the Mac)"
        return True, ""

    def __init__(self, path: str | Path) -> None:
        from runtimes.llamacpp import LlamaCpp

        super().__init__(path)
        self.inner = LlamaCpp(path, n_gpu_layers=-1, flash_attn=False)


class LlamaCppCpuRef(_Delegate):
    """The same GGUF on llama.cpp's CPU backend with Metal op offload off: the Metal adapter's reference."""

    name = "llama.cpp-cpu-ref"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return LlamaCppMetal.available()

    def __init__(self, path: str | Path) -> None:
        from runtimes.llamacpp import LlamaCpp

        super().__init__(path)
        self.inner = LlamaCpp(path, n_gpu_layers=0, **LLAMA_KW)


class OrtCoreML(_Delegate):
    """An ONNX export on onnxruntime with the CoreML provider first (what it cannot take falls back to the CPU)."""

    name = "onnxruntime-coreml"
    compute_units = "ALL"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = apple_silicon()
        if not ok:
            return ok, why.replace("Metal", "CoreML")
        import onnxruntime as ort

        if "CoreMLExecutionProvider" not in ort.get_available_providers():
            return False, "this onnxruntime build has no CoreMLExecutionProvider"
        return True, ""

    def __init__(self, folder: str | Path) -> None:
        from runtimes.ort import OrtCpu

        super().__init__(folder)
        options = {"ModelFormat": "MLProgram", "MLComputeUnits": self.compute_units}
        self.inner = OrtCpu(folder, providers=[("CoreMLExecutionProvider", options), "CPUExecutionProvider"])
