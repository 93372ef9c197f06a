"""Quantization quality side by side: KL(fp32 || quantized) and top-1 agreement on held-out text.

Every variant runs through the torch reference with the exact dequantized weights of its quantized
checkpoint (quant.checkpoint.load_quantized_model), so these numbers are what every runtime should reproduce.

    python benchmarks/bench_quant_quality.py [--model DIR] [--tokens 4096] [--calib-tokens 4096]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from edgeport.checkpoint import folder_size, load_model
from edgeport.quantize import calibration_ids, quantize_checkpoint
from quant.checkpoint import load_quantized_model

VARIANTS = [
    ("q8_0", "rtn"),
    ("q4_0", "rtn"),
    ("q4_0", "gptq"),
    ("q4_1", "rtn"),
    ("q4_1", "gptq"),
    ("q4_0_mla", "rtn"),
    ("q4_0_mla", "gptq"),
]


@torch.no_grad()
def logits(model: torch.nn.Module, ids: torch.Tensor, batch: int = 4) -> torch.Tensor:
    return torch.cat([model(ids[i : i + batch]).float() for i in range(0, len(ids), batch)])


def kl_top1(ref: torch.Tensor, got: torch.Tensor) -> tuple[float, float, float, float]:
    """Mean, median and p99 of per-token KL(ref || got), and top-1 agreement."""
    lp, lq = ref.log_softmax(-1), got.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).flatten()
    top1 = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
    return kl.mean().item(), kl.median().item(), kl.quantile(0.99).item(), top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="float checkpoint (default: the embedded model)")
    ap.add_argument("--tokens", type=int, default=4096, help="held-out tokens to score")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--calib-tokens", type=int, default=4096)
    ap.add_argument("--calib", type=Path, default=None, help="calibration file for gptq (default: built-in)")
    ap.add_argument(
        "--only", default="", help="comma-separated scheme:method subset, e.g. q4_0:rtn,q4_0:gptq"
    )
    args = ap.parse_args()
    if args.model is None:
        from edgeport.default_model import default_model_path

        args.model = default_model_path()
    torch.set_num_threads(min(4, torch.get_num_threads()))
    variants = [tuple(v.split(":")) for v in args.only.split(",")] if args.only else VARIANTS

    ids = calibration_ids(args.model, None, args.tokens, args.seq_len, split="heldout")
    ref = logits(load_model(args.model), ids)
    print(
        f"model {args.model} ({folder_size(args.model) / 2**20:.1f} MiB); {ids.numel()} held-out tokens "
        f"in {len(ids)} x {ids.shape[1]}; gptq calibration: {args.calib or 'built-in train text'}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scheme, method in variants:
            out = Path(tmp) / f"{scheme}-{method}"
            t0 = time.perf_counter()
            quantize_checkpoint(
                args.model,
                out,
                scheme,
                method,
                calib=args.calib,
                n_calib_tokens=args.calib_tokens,
                seq_len=args.seq_len,
                progress=False,
            )
            secs = time.perf_counter() - t0
            kl, kl50, kl99, top1 = kl_top1(ref, logits(load_quantized_model(out), ids))
            rows.append((f"{scheme} {method}", kl, kl50, kl99, top1, folder_size(out) / 2**20, secs))
    base = {r[0]: r for r in rows}
    head = ("variant", "KL mean", "KL p50", "KL p99", "top-1", "MiB", "quant s", "KL / rtn")
    print("\n{:<16}{:>10}{:>10}{:>10}{:>8}{:>8}{:>9}{:>10}".format(*head))
    for name, kl, kl50, kl99, top1, mib, secs in rows:
        rtn = base.get(name.replace("gptq", "rtn"))
        ratio = f"{kl / rtn[1]:.2f}x" if rtn and "gptq" in name and rtn[1] > 0 else ""
        print(
            f"{name:<16}{kl:>10.5f}{kl50:>10.6f}{kl99:>10.4f}{top1:>8.3f}{mib:>8.1f}{secs:>9.1f}{ratio:>10}"
        )
    gptq = [
        r[1] / base[r[0].replace("gptq", "rtn")][1]
        for r in rows
        if "gptq" in r[0] and r[0].replace("gptq", "rtn") in base
    ]
    if gptq:
        print(f"\nmedian KL(gptq) / KL(rtn) over schemes: {statistics.median(gptq):.2f}")


if __name__ == "__main__":
    main()
