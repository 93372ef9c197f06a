"""The one interface every runtime adapter implements.

An adapter wraps one runtime (torch, onnxruntime, ORT-mobile `.ort`, onnxruntime-genai, llama.cpp CPU/Metal,
onnxruntime+CoreML) and one artifact. `available()` says whether it can run on this machine and, if not, why.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class Runtime(ABC):
    name: str = "runtime"
    requires: str | None = None  # the Python module this runtime needs, checked by `available()`

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when this runtime can run here, else (False, the reason it is skipped)."""
        if cls.requires:
            try:
                importlib.import_module(cls.requires)
            except ImportError as e:
                return False, f"{cls.requires} is not installed ({e})"
        return True, ""

    def __init__(self, artifact: str | Path) -> None:
        self.artifact = Path(artifact)

    @abstractmethod
    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Teacher-forced float32 logits [len(ids), vocab] for one sequence (batch 1)."""

    @abstractmethod
    def generate(self, ids: Sequence[int], max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[int]:
        """Greedy continuation of `ids` (new tokens only; includes the stop token if one is hit)."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` as this runtime's own tokenizer produces them (special tokens parsed, no BOS added)."""
        raise NotImplementedError(f"{self.name} has no tokenizer of its own")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
