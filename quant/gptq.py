"""GPTQ (Frantar et al., 2022): error-compensating rounding into the same block formats as RTN.

For a linear layer y = x W^T with calibration inputs X [n, cols], minimize ||X W^T - X Q^T|| column by column:
quantize column j, then spread its error over the not-yet-quantized columns through the inverse Hessian
H^-1 (H = X^T X, damped). Each block of 32 takes its scale (and min) from the current, error-updated
weights, chosen by the format's own rule, so the output is ordinary Q8_0 / Q4_0 / Q4_1 codes + scales and
the exporters never know which method made them.
"""

from __future__ import annotations

import numpy as np

from quant.formats import BLOCK, F32, BlockFormat


def hessian_inverse_factor(h: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """Upper Cholesky factor U of (H + damp * mean(diag H) * I)^-1, the only form of H GPTQ needs."""
    h = np.array(h, dtype=np.float64)
    diag = np.diag(h)
    dead = diag <= 0
    h[dead, dead] = 1.0  # inputs that are always zero: any weight is as good; keep H positive definite
    mean = float(np.mean(np.diag(h)))
    for scale in (1.0, 10.0, 100.0, 1000.0):
        try:
            hd = h + np.eye(len(h)) * (damp * scale * mean)
            hinv = np.linalg.inv(np.linalg.cholesky(hd))  # L^-1
            hinv = hinv.T @ hinv  # (L L^T)^-1
            return np.linalg.cholesky(hinv).T.astype(F32)
        except np.linalg.LinAlgError:
            continue
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
    w[:, np.diag(np.asarray(h)) <= 0] = 0.0
    nb = cols // BLOCK
    codes = np.empty((rows, cols), np.int8 if fmt.bits == 8 else np.uint8)
    stored: list[list[np.ndarray]] = [[] for _ in range(3 if fmt.asymmetric else 2)]
    for i1 in range(0, cols, batch):
        i2 = min(i1 + batch, cols)
        wb = w[:, i1:i2].copy()
        err = np.zeros_like(wb)
        for j in range(i2 - i1):
            if j % BLOCK == 0:  # new block: its scale from the current (error-updated) weights
                p = fmt.params(wb[:, j : j + BLOCK])
                st = fmt.stored(p)
                stored[0].append(st[0][:, 0])
                if fmt.asymmetric:
                    stored[1].append(st[1][:, 0])
            col = wb[:, j : j + 1]
            q = fmt.encode(col, p)
            codes[:, i1 + j] = q[:, 0]
            deq = fmt.decode(q, *st)
            e = (col - deq)[:, 0] / u[i1 + j, i1 + j]
            wb[:, j:] -= np.outer(e, u[i1 + j, i1 + j : i2])
            err[:, j] = e
        if i2 < cols:
            w[:, i2:] -= err @ u[i1:i2, i2:]
    scales = np.stack(stored[0], axis=1)
    assert scales.shape == (rows, nb)
    if fmt.asymmetric:
        return codes, scales, np.stack(stored[1], axis=1)
    return codes, scales


def layer_error(x: np.ndarray, w: np.ndarray, w_hat: np.ndarray) -> float:
    """Relative output error ||X W^T - X W_hat^T|| / ||X W^T|| of one linear layer."""
    ref = x @ w.T
    return float(np.linalg.norm(ref - x @ w_hat.T) / max(np.linalg.norm(ref), 1e-30))
