"""Apple adapters: llama.cpp with every layer on Metal, and onnxruntime with the CoreML execution provider.

Both need macOS on Apple silicon; elsewhere `available()` says so and validate/bench list them as skipped.
The Metal adapter's CPU twin (`LlamaCppCpuRef`) turns op offload off, so with n_gpu_layers=0 no matmul is sent to
Metal behind our back (ggml-metal's offload_op takes large-batch matmuls unless op_offload is off):
the pair measures Metal drift against llama.cpp's own CPU path.
Both pin flash attention off (llama.cpp's default is auto). The runtime libraries load only when an adapter is
built, so this module imports anywhere.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError
from runtimes.llamacpp import LlamaCpp
from runtimes.ort import OrtCpu


def apple_silicon() -> tuple[bool, str]:
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return False, f"requires macOS arm64 / Metal (this machine is {sys.platform} {platform.machine()})"
    return True, ""


class LlamaCppMetal(LlamaCpp):
    """A GGUF on llama.cpp's Metal backend: every layer offloaded, flash attention pinned off."""

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

    def __init__(self, path: str | Path, n_ctx: int = 2048) -> None:
        super().__init__(path, n_gpu_layers=-1, n_ctx=n_ctx, flash_attn=False)


class LlamaCppCpuRef(LlamaCpp):
    """The same GGUF on llama.cpp's CPU backend with op offload off: the Metal adapter's reference on a Mac.

    With n_gpu_layers=0 a Metal-enabled build still sends large-batch matmuls to the GPU unless the context
    says op_offload=False (and offload_kqv=False), so the context is rebuilt with both off.
    """

    name = "llama.cpp-cpu-ref"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return LlamaCppMetal.available()

    def __init__(self, path: str | Path, n_ctx: int = 2048) -> None:
        super().__init__(path, n_gpu_layers=0, n_ctx=n_ctx, flash_attn=False)
        lc = self.lc
        cp = lc.llama_context_default_params()
        cp.n_ctx = cp.n_batch = n_ctx
        cp.n_ubatch = min(512, n_ctx)
        cp.n_threads = cp.n_threads_batch = lc.llama_n_threads(self.ctx)
        cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.op_offload = False
        cp.offload_kqv = False
        lc.llama_free(self.ctx)
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise EdgeportError("llama.cpp cannot create a CPU-only context for it", self.artifact)


class OrtCoreML(OrtCpu):
    """An ONNX export on onnxruntime with the CoreML provider first; what CoreML cannot take runs on the CPU EP
    (MatMulNBits and the latent attention are not in the CoreML EP's supported operators), so parity and
    speed depend on
    the partition."""

    name = "onnxruntime-coreml"
    compute_units = "ALL"  # CPUOnly | CPUAndGPU | CPUAndNeuralEngine | ALL

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = apple_silicon()
        if not ok:
            return ok, why.replace("Metal", "CoreML")
        import onnxruntime as ort

        if "CoreMLExecutionProvider" not in ort.get_available_providers():
            return False, "this onnxruntime build has no CoreMLExecutionProvider"
        return True, ""

    def _session(self, ort: Any, so: Any, path: Path) -> Any:
        options = {"ModelFormat": "MLProgram", "MLComputeUnits": self.compute_units}
        return ort.InferenceSession(
            str(path), so, providers=[("CoreMLExecutionProvider", options), "CPUExecutionProvider"]
        )
