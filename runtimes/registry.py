"""Which runtime runs which artifact kind, whether it can run here, and how to build its adapter.

An export folder holds artifacts of five kinds (manifest.json lists them): `checkpoint` (float HF folder),
`quantized` (edgeport quantized checkpoint), `gguf` (one file), `onnx` (a folder with model.onnx, model.ort,
genai_config.json). `targets(artifacts)` pairs each artifact with every runtime that takes its kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from quant.formats import gate_class
from runtimes.base import Runtime


@dataclass(frozen=True)
class Pair:
    """A runtime adapter class (module:Class) that runs artifacts of one kind, with fixed constructor kwargs."""

    runtime: str
    kind: str
    target: str
    kwargs: dict = field(default_factory=dict)
    note: str = ""
    threads_kw: str | None = None  # the constructor's thread-count argument, if it has one
    needs: str = ""  # a file the artifact folder must hold for this runtime (else the pair is skipped)

    def load_class(self) -> type[Runtime]:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)

    def available(self) -> tuple[bool, str]:
        try:
            cls = self.load_class()
        except Exception as e:  # a runtime missing from this install is a skip reason, not a crash
            return False, f"{self.target} cannot be imported ({type(e).__name__}: {e})"
        try:
            return cls.available()
        except Exception as e:
            return False, f"{type(e).__name__}: {e}"


PAIRS: list[Pair] = [
    Pair(
        "torch", "checkpoint", "runtimes.torch_ref:TorchRef", note="fp32 expanded attention (the reference)"
    ),
    Pair("torch-absorbed", "checkpoint", "runtimes.torch_ref:TorchRef", {"absorbed": True}, "latent cache"),
    Pair("torch-dequant", "quantized", "runtimes.torch_ref:TorchRef", note="dequantized codes, fp32"),
    Pair("onnxruntime", "onnx", "runtimes.ort:OrtCpu", note="CPU EP, model.onnx", threads_kw="threads"),
    Pair(
        "ort-mobile",
        "onnx",
        "runtimes.ort:OrtMobile",
        note="CPU EP, model.ort (ORT format)",
        threads_kw="threads",
        needs="model.ort",
    ),
    Pair("onnxruntime-genai", "onnx", "runtimes.ort:OrtGenai", note="og.Generator", threads_kw="threads"),
    Pair(
        "llama.cpp",
        "gguf",
        "runtimes.llamacpp:LlamaCpp",
        note="CPU, repacked quant kernels",
        threads_kw="n_threads",
    ),
    Pair(
        "llama.cpp-norepack",
        "gguf",
        "runtimes.llamacpp:LlamaCpp",
        {"repack": False},
        "CPU, plain kernels",
        threads_kw="n_threads",
    ),
    Pair("llama.cpp-metal", "gguf", "runtimes.apple:LlamaCppMetal", note="all layers on Metal"),
    Pair(
        "onnxruntime-coreml",
        "onnx",
        "runtimes.apple:OrtCoreML",
        note="CoreML EP (MLProgram, ALL)",
        threads_kw="threads",
    ),
]
REFERENCE = PAIRS[0]


@dataclass(frozen=True)
class Artifact:
    kind: str
    precision: str
    path: Path
    source: str = ""

    @property
    def precision_class(self) -> str:
        """The validate gate of this artifact's precision (quant.formats.TABLE: q4_0 and int4 -> int4, ...)."""
        return gate_class(self.precision)


@dataclass(frozen=True)
class Target:
    """One runtime x one artifact."""

    pair: Pair
    artifact: Artifact

    @property
    def runtime(self) -> str:
        return self.pair.runtime

    @property
    def label(self) -> str:
        return f"{self.pair.runtime} {self.artifact.precision}"

    def available(self) -> tuple[bool, str]:
        """The runtime's own availability, then the artifact's (e.g. no model.ort above ORT's 2 GiB limit)."""
        ok, why = self.pair.available()
        if ok and self.pair.needs and not (self.artifact.path / self.pair.needs).is_file():
            return False, f"{self.artifact.path.name} has no {self.pair.needs} (the exporter skipped it)"
        return ok, why

    def build(self, threads: int | None = None) -> Runtime:
        kw = dict(self.pair.kwargs)
        if threads and self.pair.threads_kw:
            kw[self.pair.threads_kw] = threads
        return self.pair.load_class()(self.artifact.path, **kw)


def targets(
    artifacts: Iterable[Artifact], skip: Callable[[Pair, Artifact], bool] | None = None
) -> list[Target]:
    """Every (runtime, artifact) pair whose kinds match, in PAIRS order then artifact order."""
    artifacts = list(artifacts)
    out = []
    for pair in PAIRS:
        for a in artifacts:
            if a.kind == pair.kind and not (skip and skip(pair, a)):
                out.append(Target(pair, a))
    return out


def default_skip(pair: Pair, artifact: Artifact) -> bool:
    """Repack on/off only differs for quantized GGUF types (f16 is never repacked)."""
    return pair.runtime == "llama.cpp-norepack" and artifact.precision_class not in ("int8", "int4")


def available() -> dict[str, tuple[bool, str]]:
    """runtime name -> (can run here, reason if not)."""
    return {p.runtime: p.available() for p in PAIRS}
