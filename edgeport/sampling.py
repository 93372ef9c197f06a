"""How the next token is picked from a logits row: greedy, or temperature + top-p with a seed, after logits
processors (e.g. edgeport.constrain's tool-call constraint). runtimes.base.Runtime.stream applies it; it lives in
the core so the agent loop, chat and serve can build one without importing a runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# (tokens generated so far in this stream, logits of the next position [vocab]) -> logits to sample from
LogitsProcessor = Callable[[Sequence[int], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Sampler:
    """How the next token is picked. temperature 0 = greedy (argmax); processors run first, in order."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    processors: tuple[LogitsProcessor, ...] = ()

    def picker(self) -> Callable[[np.ndarray, Sequence[int]], int]:
        """A fresh picking function for one stream (its own random generator, seeded once)."""
        rng = np.random.default_rng(self.seed)

        def pick(logits: np.ndarray, generated: Sequence[int]) -> int:
            for proc in self.processors:
                logits = proc(generated, logits)
            if self.temperature <= 0:
                return int(np.argmax(logits))
            z = np.asarray(logits, np.float64) / self.temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            if self.top_p < 1.0:  # nucleus: the most likely tokens whose mass first reaches top_p
                order = np.argsort(-p, kind="stable")
                keep = order[: int(np.searchsorted(np.cumsum(p[order]), self.top_p)) + 1]
                q = np.zeros_like(p)
                q[keep] = p[keep]
                p = q / q.sum()
            return int(rng.choice(len(p), p=p))

        return pick


GREEDY = Sampler()


def make_sampler(temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None) -> Sampler:
    """A Sampler from user options; out-of-range values are an EdgeportError (one line)."""
    from edgeport.errors import EdgeportError

    if not 0.0 <= temperature <= 100.0:
        raise EdgeportError(f"temperature must be between 0 and 100, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise EdgeportError(f"top_p must be in (0, 1], got {top_p}")
    return Sampler(float(temperature), float(top_p), seed)
