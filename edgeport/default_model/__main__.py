"""Rebuild the embedded default model: `python -m edgeport.default_model [--steps N] [--work DIR] [--resume]`.

Trains the `tiny` preset on edgeport's generated tool-use trajectories plus the builtin text (a pretrain ->
agentic midtrain -> SFT curriculum), evaluates it on held-out text and held-out tool-use tasks, and copies the
HF checkpoint (config.json, model.safetensors, tokenizer files) plus TRAINING.md and metrics.json into this
package folder. The run folder (--work) keeps the trainer state, so an interrupted build resumes with --resume.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from edgeport.checkpoint import TOKENIZER_FILES
from edgeport.io import atomic_file
from edgeport.tokenizer import load_tokenizer
from edgeport.trainer import TrainConfig, evaluate_model, read_log, train

HERE = Path(__file__).resolve().parent

# The recipe of the shipped model. Tuned for ~10-15 minutes on 2 CPU cores.
RECIPE = dict(
    preset="tiny",
    steps=260,
    batch_size=8,
    seq_len=512,
    grad_accum=1,
    lr=3e-3,
    min_lr=2e-4,
    warmup=30,
    weight_decay=0.1,
    grad_clip=1.0,
    eval_every=50,
    eval_rows=32,
    save_every=25,
    log_every=10,
    seed=0,
    stages="pretrain:0.05,midtrain:0.15,sft:0.8",
    n_episodes=3000,
    threads=1,
    model=dict(
        vocab_size=2048,
        hidden_size=128,
        intermediate_size=384,
        q_lora_rank=64,
        kv_lora_rank=64,
        max_position_embeddings=1024,
    ),
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgeport.default_model", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", default="runs/default_model", help="run folder (trainer state, logs, data cache)"
    )
    ap.add_argument("--steps", type=int, default=None, help=f"training steps (default {RECIPE['steps']})")
    ap.add_argument("--tasks", type=int, default=100, help="held-out tool-use tasks to evaluate")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted build in --work")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a recipe key")
    ap.add_argument(
        "--no-install", action="store_true", help="train and evaluate only; leave this folder alone"
    )
    args = ap.parse_args(argv)

    recipe = dict(RECIPE)
    if args.steps:
        recipe["steps"] = args.steps
    for kv in args.set:
        k, _, v = kv.partition("=")
        recipe[k] = json.loads(v)
    cfg = TrainConfig(out=args.work, resume=args.resume, **recipe)
    t0 = time.perf_counter()
    ckpt = train(cfg)
    train_s = time.perf_counter() - t0
    log = read_log(args.work)
    tok_s = [r["tok_s"] for r in log if "tok_s" in r]
    metrics = evaluate_model(ckpt, n_tasks=args.tasks, seed=cfg.seed, progress=True)
    metrics.update(
        train_seconds=round(train_s, 1),
        train_tokens=cfg.steps * cfg.batch_size * cfg.grad_accum * cfg.seq_len,
        train_tok_s_median=round(sorted(tok_s)[len(tok_s) // 2], 1) if tok_s else None,
        final_train_loss=log[-1]["loss"] if log else None,
        recipe=recipe,
        machine=f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
    )
    print(json.dumps(metrics, indent=2))
    if not args.no_install:
        install(ckpt, metrics)


def install(ckpt: Path, metrics: dict) -> None:
    """Copy the checkpoint's HF files into the package folder, each file atomically."""
    tok = load_tokenizer(ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config.update(bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)  # (runs before these were set by train)
    with atomic_file(HERE / "config.json", "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")
    for name in ("model.safetensors", *TOKENIZER_FILES):
        src = ckpt / name
        if src.is_file():
            with atomic_file(HERE / name) as f, open(src, "rb") as g:
                shutil.copyfileobj(g, f)
    with atomic_file(HERE / "metrics.json", "w") as f:
        f.write(json.dumps(metrics, indent=2) + "\n")
    with atomic_file(HERE / "TRAINING.md", "w") as f:
        f.write(training_md(metrics))
    print(f"installed the default model in {HERE}")


def training_md(m: dict) -> str:
    a = m["agent"]
    size = (HERE / "model.safetensors").stat().st_size if (HERE / "model.safetensors").is_file() else 0
    return f"""# The embedded default model

Rebuilt by `python -m edgeport.default_model` (recipe in `edgeport/default_model/__main__.py`).
A `tiny`-preset Youtu model (Dense MLA + SwiGLU) trained from scratch on edgeport's generated tool-use
trajectories (edgeport.data) plus Python's own documentation text, with a pretrain -> agentic midtrain -> SFT
curriculum ({m["recipe"]["stages"]}).

| | |
|---|---|
| parameters | {m["parameters"]:,} |
| model.safetensors | {size / 2**20:.1f} MiB (float32) |
| training | {m["recipe"]["steps"]} steps, {m["train_tokens"]:,} tokens, {m["train_seconds"]:.0f} s \
({m["train_tok_s_median"]} tokens/s median) on {m["machine"]} |
| held-out text loss / ppl | {m["val_text"]["loss"]:.3f} / {m["val_text"]["ppl"]:.1f} |
| held-out trajectories loss / ppl (assistant tokens) | {m["val_sft"]["loss"]:.3f} / {m["val_sft"]["ppl"]:.2f} |
| tool-use success, {a["n"]} held-out tasks | {a["success_rate"]:.1%} (echo baseline {a["baseline_echo"]:.1%}) |
| valid tool-call JSON | {a["valid_json_rate"]} |
| success by kind | {", ".join(f"{k} {v:.0%}" for k, v in a["by_kind"].items())} |

{m.get("note", "")}

Held-out tasks come from a disjoint seed stream, and half of them use user paraphrases never seen in training.
The checkpoint is float32; `edgeport quantize` makes the int8 / int4 variants.
"""


if __name__ == "__main__":
    main()
