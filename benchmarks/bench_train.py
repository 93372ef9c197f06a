"""Training throughput of the trainer's step (forward + backward + AdamW) for a preset, side by side.

    python benchmarks/bench_train.py [--preset tiny] [--batch 8] [--seq 512] [--steps 5] [--threads 1,2]
                                     [--set hidden_size=128 ...]

Prints the median step time and tokens/s per thread count (plus bf16 autocast where the CPU runs it), and
the ratio to the first row, all measured in the same run. Also reports the model FLOPs per token
(6 x parameters + attention) and the achieved GFLOP/s, so numbers from loaded machines can be judged.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from edgeport.model import YoutuForCausalLM, preset
from edgeport.trainer import lm_loss_sum


def step_times(cfg, batch: int, seq: int, steps: int, threads: int, bf16: bool) -> list[float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = YoutuForCausalLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq + 1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and is dropped
        t = time.perf_counter()
        with amp:
            loss = lm_loss_sum(model, ids, mask) / mask[:, 1:].sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=INT", help="override a config field")
    args = ap.parse_args()
    over = {k: int(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = preset(args.preset, **over)
    n_params = YoutuForCausalLM(cfg).num_parameters()
    attn = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * args.seq * (cfg.qk_head_dim + cfg.v_head_dim)
    flops_tok = (
        6 * n_params + attn
    )  # per token, forward + backward; attention counted over the full (unmasked) L
    tokens = args.batch * args.seq
    print(f"preset {args.preset} {over or ''}: {n_params:,} parameters, batch {args.batch} x {args.seq} tokens, "
          f"{flops_tok / 1e6:.1f} MFLOP/token")  # fmt: skip
    rows = []
    for th in [int(x) for x in args.threads.split(",")]:
        for bf16 in (False, True) if args.bf16 else (False,):
            med = statistics.median(step_times(cfg, args.batch, args.seq, args.steps, th, bf16))
            rows.append((f"{th} thread(s){' bf16' if bf16 else ''}", med))
    print(f"{'setting':<20} {'step s (median)':>16} {'tokens/s':>10} {'GFLOP/s':>8} {'vs first':>9}")
    for name, med in rows:
        tps = tokens / med
        print(f"{name:<20} {med:>16.3f} {tps:>10.0f} {tps * flops_tok / 1e9:>8.1f} {rows[0][1] / med:>8.2f}x")


if __name__ == "__main__":
    main()
