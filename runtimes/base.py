"""The one interface every runtime adapter implements.

An adapter wraps one runtime (torch, onnxruntime, ORT-mobile `.ort`, onnxruntime-genai, llama.cpp CPU/Metal,
onnxruntime+CoreML) and one artifact. `available()` says whether it can run on this machine and, if not, why.

Decoding has one path: an adapter implements `_start(ids)` (prefill, the last position's logits) and
`_next(token)` (append one token, its logits); `stream` turns them into a token iterator with stop ids and an
edgeport.sampling.Sampler (greedy when temperature is 0, else temperature + top-p with a seed, and logits
processors that can mask tokens, e.g. edgeport.constrain's tool-call constraint). `generate` is `stream` collected into a list.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.sampling import GREEDY, LogitsProcessor, Sampler

__all__ = ["GREEDY", "LogitsProcessor", "Runtime", "Sampler"]


class Runtime(ABC):
    name: str = "runtime"
    requires: str | None = None  # the Python module this runtime needs, checked by `available()`
    context_length: int | None = None  # the most tokens (prompt + generated) one stream can hold, if bounded

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
    def _start(self, ids: Sequence[int], max_new_tokens: int) -> np.ndarray:
        """Start a fresh sequence: run the prompt `ids`, return the next token's logits [vocab]."""

    @abstractmethod
    def _next(self, token: int) -> np.ndarray:
        """Append `token` to the current sequence, return the following token's logits [vocab]."""

    def stream(
        self,
        ids: Sequence[int],
        *,
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        sampler: Sampler = GREEDY,
    ) -> Iterator[int]:
        """New tokens one at a time, until a stop id (yielded too), max_new_tokens or the context is full.
        Stopping the iteration early (e.g. a client went away) is fine: the next stream starts afresh."""
        budget = max_new_tokens
        if self.context_length is not None:
            if len(ids) > self.context_length:
                raise EdgeportError(
                    f"a prompt of {len(ids)} tokens does not fit the context of {self.context_length}",
                    self.artifact,
                )
            budget = min(budget, self.context_length - len(ids))
        if budget <= 0:
            return
        pick = sampler.picker()
        stops = set(stop_ids)
        out: list[int] = []
        row = self._start(ids, budget)
        while True:
            token = pick(row, out)
            out.append(token)
            yield token
            if token in stops or len(out) >= budget:
                return
            row = self._next(token)

    def generate(
        self,
        ids: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        sampler: Sampler = GREEDY,
    ) -> list[int]:
        """`stream` collected: the new tokens (including the stop token if one is hit); greedy by default."""
        return list(self.stream(ids, max_new_tokens=max_new_tokens, stop_ids=stop_ids, sampler=sampler))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` as this runtime's own tokenizer produces them (special tokens parsed, no BOS added)."""
        raise NotImplementedError(f"{self.name} has no tokenizer of its own")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
