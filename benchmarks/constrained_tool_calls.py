"""Held-out tool-use success with and without constrained tool calls (edgeport.constrain), same episodes.

    python benchmarks/constrained_tool_calls.py [MODEL] [--tasks 60] [--runtime torch|llamacpp|onnx]

The episodes are those of `edgeport eval --tasks N` (generate_episodes(N, seed=1, split="eval")), played by
edgeport.agent.evaluate with greedy decoding through the model's runtime adapter; the only difference between
the two rows is the constraint on the text inside <tool_call>...</tool_call>.
"""

from __future__ import annotations

import argparse
import json
import time

from edgeport.agent import evaluate
from edgeport.chat_cli import open_engine
from edgeport.data import generate_episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runtime", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: a tiny model decodes fastest)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    engine = open_engine(args.model, args.runtime)
    episodes = generate_episodes(args.tasks, seed=args.seed + 1, split="eval")
    rows = {}
    for constrain in (False, True):
        t0 = time.perf_counter()
        r = evaluate(engine.generate, engine.tokenizer, episodes, max_context=engine.context_length,
                     constrain=constrain)  # fmt: skip
        rows["constrained" if constrain else "raw"] = r
        print(
            f"{'constrained' if constrain else 'raw':>11}: success {r['success_rate']:.1%} of {r['n']}, "
            f"valid JSON {r['valid_json_rate']}, tool-call rate {r['tool_call_rate']:.1%}, "
            f"reasons {json.dumps(r['reasons'])} ({time.perf_counter() - t0:.0f} s, {engine.name})",
            flush=True,
        )
    engine.close()


if __name__ == "__main__":
    main()
