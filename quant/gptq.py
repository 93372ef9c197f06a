"""GPTQ (Frantar et al., 2022): error-compensating rounding into the same block formats as RTN.

For a linear layer y = x W^T with calibration inputs X [n, cols], minimize ||X W^T - X Q^T|| column by column:
quantize column j, then spread its error over the not-yet-quantized columns through the inverse Hessian
H^-1 (H = X^T X, damped). Each block of 32 takes its scale (and min) from the current, error-updated
weights, chosen by the format's own rule, so the output is ordinary Q8_0 / Q4_0 / Q4_1 codes + scales and
the exporters never know which method made them.
"""

from __future__ import annotations

import numpy as np
import torch

from quant.formats import BLOCK, F32, BlockFormat


def hessian_inverse_factor(h: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """Upper Cholesky factor U of (H + damp * mean(diag H) * I)^-1, the only form of H GPTQ needs."""
    ht = torch.tensor(h, dtype=torch.float64)
    dead = torch.diagonal(ht) <= 0
    ht[dead, dead] = 1.0  # inputs that are always zero: any weight is as good; keep H positive definite
    eye = torch.eye(len(ht), dtype=torch.float64) * torch.diagonal(ht).mean() * damp
    threads = torch.get_num_threads()
    if len(ht) <= 2048:  # small factorizations: one thread beats waking (or fighting for) a thread pool
        torch.set_num_threads(1)
    try:
        for scale in (1.0, 10.0, 100.0, 1000.0):
            chol, info = torch.linalg.cholesky_ex(ht + eye * scale)
            if int(info) == 0:
                u, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(chol), upper=True)
                if int(info) == 0:
                    return u.float().numpy()
    finally:
        torch.set_num_threads(threads)
    raise np.linalg.LinAlgError("calibration Hessian is not positive definite even with heavy damping")


def gptq_quantize(
    w: np.ndarray, h: np.ndarray, fmt: type[BlockFormat], damp: float = 0.01, batch: int = 128
) -> tuple[np.ndarray, ...]:
    """GPTQ-round w [rows, cols] with Hessian h [cols, cols]; returns fmt's (codes, scales[, mins])."""
    w = np.array(w, dtype=F32)
    rows, cols = w.shape
    if cols % BLOCK or h.shape != (cols, cols):
        raise ValueError(f"GPTQ needs cols % {BLOCK} == 0 and H [cols, cols]; got W {w.shape}, H {h.shape}")
    batch = max(BLOCK, batch // BLOCK * BLOCK)
    u = hessian_inverse_factor(h, damp)
    wt = np.ascontiguousarray(w.T)  # [cols, rows]: each column of W is a contiguous row here
    wt[np.diag(np.asarray(h)) <= 0] = 0.0
    codes = np.empty((cols, rows), np.int8 if fmt.bits == 8 else np.uint8)
    stored: list[list[np.ndarray]] = [[], []]
    for i1 in range(0, cols, batch):
        i2 = min(i1 + batch, cols)
        err = np.empty((i2 - i1, rows), F32)
        for j in range(i1, i2):
            if j % BLOCK == 0:  # new block: its scale from the current (error-updated) weights
                p = tuple(a[:, 0] for a in fmt.params(wt[j : j + BLOCK].T))
                st = fmt.stored(p)
                for k, a in enumerate(st):
                    stored[k].append(a)
            q = fmt.encode(wt[j], p)
            codes[j] = q
            e = (wt[j] - fmt.decode(q, *st)) / u[j, j]
            wt[j:i2] -= np.outer(u[j, j:i2], e)
            err[j - i1] = e
        if i2 < cols:
            wt[i2:] -= (torch.from_numpy(u[i1:i2, i2:]).T @ torch.from_numpy(err)).numpy()
    scales = np.stack(stored[0], axis=1)
    assert scales.shape == (rows, cols // BLOCK)
    if fmt.asymmetric:
        return np.ascontiguousarray(codes.T), scales, np.stack(stored[1], axis=1)
    return np.ascontiguousarray(codes.T), scales


def layer_error(x: np.ndarray, w: np.ndarray, w_hat: np.ndarray) -> float:
    """Relative output error ||X W^T - X W_hat^T|| / ||X W^T|| of one linear layer."""
    ref = x @ w.T
    return float(np.linalg.norm(ref - x @ w_hat.T) / max(np.linalg.norm(ref), 1e-30))
