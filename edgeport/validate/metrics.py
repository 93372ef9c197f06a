"""Parity metrics of one runtime's logits against the reference, and the gate each precision class must meet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GREEDY_TOKENS = 32


@dataclass(frozen=True)
class Gate:
    """Bounds one precision class must meet against the fp32 torch reference (None: not gated)."""

    max_abs: float | None = None  # max |logit difference| over every position and vocab entry
    kl: float | None = None  # mean KL(reference || runtime) per position, nats
    top1: float | None = None  # fraction of positions with the same argmax
    greedy_exact: bool = False  # all GREEDY_TOKENS greedy tokens equal

    def describe(self) -> str:
        parts = []
        if self.max_abs is not None:
            parts.append(f"max|Δ| ≤ {self.max_abs:g}")
        if self.kl is not None:
            parts.append(f"KL ≤ {self.kl:g}")
        if self.top1 is not None:
            parts.append(f"top-1 ≥ {self.top1:.0%}")
        if self.greedy_exact:
            parts.append(f"greedy exact (up to {GREEDY_TOKENS} tokens or EOS)")
        return ", ".join(parts)


# fp32 artifacts differ from torch only by summation order; f16 weights round each weight by ~2^-11 (and
# llama.cpp also rounds activations to f16 in its matmuls), which may flip a near-tie argmax but no greedy token.
# Quantized bounds sit above llama.cpp's measured KL divergences for Llama-3-8B (tools/perplexity/README.md in
# ggml-org/llama.cpp: Q8_0 0.0014, Q4_0 0.072), with headroom for smaller models. Top-1 is looser than the 8B figures:
# the tiny default model's distributions are flat (its measured agreement: q8_0 96-98%, q4_0 82-84% at KL
# 2e-4 / 9e-3), so near-ties flip more often at the same KL.
GATES: dict[str, Gate] = {
    "fp32": Gate(max_abs=2e-3, top1=1.0, greedy_exact=True),
    "f16": Gate(max_abs=5e-2, top1=0.97, greedy_exact=True),
    "int8": Gate(kl=3e-3, top1=0.9),
    "int4": Gate(kl=0.1, top1=0.7),
}


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def compare_logits(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """max |diff|, mean KL(ref || got) and top-1 agreement over positions, for [T, V] logits."""
    if got.shape != ref.shape:
        raise ValueError(f"logits shape {got.shape}, reference {ref.shape}")
    if not np.isfinite(got).all():
        return {"max_abs": math.inf, "kl": math.inf, "top1": float((ref.argmax(-1) == got.argmax(-1)).mean())}
    lp, lq = log_softmax(ref), log_softmax(got)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    return {
        "max_abs": float(np.abs(ref.astype(np.float64) - got).max()),
        "kl": float(max(kl.mean(), 0.0)),
        "top1": float((ref.argmax(-1) == got.argmax(-1)).mean()),
    }


def perplexity(logits: np.ndarray, ids: list[int]) -> float:
    lp = log_softmax(logits[:-1])
    nll = -lp[np.arange(len(ids) - 1), ids[1:]]
    return float(np.exp(nll.mean()))


def matching_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def gate_failures(row: dict[str, Any], gate: Gate) -> list[str]:
    out = []
    if gate.max_abs is not None and not row["max_abs"] <= gate.max_abs:
        out.append(f"max|Δ| {row['max_abs']:.3g} > {gate.max_abs:g}")
    if gate.kl is not None and not row["kl"] <= gate.kl:
        out.append(f"KL {row['kl']:.3g} > {gate.kl:g}")
    if gate.top1 is not None and not row["top1"] >= gate.top1:
        out.append(f"top-1 {row['top1']:.1%} < {gate.top1:.0%}")
    total = row.get("greedy_total", GREEDY_TOKENS)
    if gate.greedy_exact and row["greedy_match"] < total:
        out.append(f"greedy {row['greedy_match']}/{total}")
    if row.get("tokenizer_match") is not None and row["tokenizer_match"] < row["tokenizer_total"]:
        out.append(f"tokenizer {row['tokenizer_match']}/{row['tokenizer_total']} texts")
    return out
