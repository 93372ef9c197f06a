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
    """How the next token is picked. temperature 0 = greedy (argmax); processors run first, in order.
    min_new_tokens: a reply does not end before this many tokens (the agent's Reply suppresses the stop ids
    until then, as transformers' `min_new_tokens` and llama.cpp's `--ignore-eos` do): for speed measurements and
    for an answer that is surely still streaming when a test interrupts it."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    processors: tuple[LogitsProcessor, ...] = ()
    min_new_tokens: int = 0

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


def suppress_until(ids: Sequence[int], n: int) -> LogitsProcessor:
    """A processor that rules out `ids` while fewer than `n` tokens have been generated (run it last; where
    the other processors left nothing else, e.g. a finished constrained call, it rules out nothing)."""
    banned = list(ids)

    def proc(generated: Sequence[int], logits: np.ndarray) -> np.ndarray:
        if len(generated) >= n or not banned:
            return logits
        out = np.array(logits, copy=True)
        out[[i for i in banned if 0 <= i < len(out)]] = -np.inf
        return out if np.isfinite(out).any() else logits

    return proc


def make_sampler(
    temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, min_new_tokens: int = 0
) -> Sampler:
    """A Sampler from user options; out-of-range values are an EdgeportError (one line)."""
    from edgeport.errors import EdgeportError

    if not 0.0 <= temperature <= 100.0:
        raise EdgeportError(f"temperature must be between 0 and 100, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise EdgeportError(f"top_p must be in (0, 1], got {top_p}")
    if min_new_tokens < 0:
        raise EdgeportError(f"min_new_tokens must be 0 or more, got {min_new_tokens}")
    return Sampler(float(temperature), float(top_p), seed, min_new_tokens=int(min_new_tokens))
