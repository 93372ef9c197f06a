"""The `edgeport` command: a thin typer layer over the library. Each command imports its module lazily.

User mistakes raise `EdgeportError` and are printed as one line (`error: <file>: <problem>`), exit code 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from edgeport.errors import EdgeportError
from edgeport.inputs import nonfinite_allowed
from edgeport.io import check_out

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Train, quantize, export and validate Dense-MLA models."
)
export_app = typer.Typer(
    no_args_is_help=True, help="Export a checkpoint to GGUF, ONNX, or every format at once."
)
app.add_typer(export_app, name="export")
console = Console()


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn EdgeportError (and a missing file) into one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeportError as e:
            Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as e:  # the machine said no (permissions, disk full, a path that is not a folder...)
            where = f"{e.filename}: " if e.filename else ""
            Console(stderr=True).print(
                f"[bold red]error:[/] {where}{e.strerror or e}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def default_model_dir() -> Path:
    from edgeport.default_model import default_model_path

    return default_model_path()


@app.command()
@user_errors
def info(
    model: Optional[Path] = typer.Argument(None, help="Checkpoint folder (default: the embedded model)."),
) -> None:
    """Config, parameter count and KV-cache bytes per token (latent vs expanded) of a checkpoint."""
    from edgeport.checkpoint import check_weights, expected_shapes, folder_size, load_config

    folder = model or default_model_dir()
    cfg = load_config(folder)
    check_weights(folder, cfg)  # the weights' headers agree with config.json (no data is read)
    n_params = sum(_prod(s) for s in expected_shapes(cfg).values())
    kv = cfg.kv_bytes_per_token(2)
    t = Table(title=f"edgeport info {folder}", show_header=False)
    t.add_row("architecture", f"Youtu (Dense MLA, SwiGLU) model_type=youtu, {cfg.num_hidden_layers} layers")
    t.add_row("hidden / intermediate", f"{cfg.hidden_size} / {cfg.intermediate_size}")
    t.add_row(
        "heads", f"{cfg.num_attention_heads} (q_lora_rank {cfg.q_lora_rank}, kv_lora_rank {cfg.kv_lora_rank})"
    )
    t.add_row("head dims", f"nope {cfg.qk_nope_head_dim} + rope {cfg.qk_rope_head_dim}, v {cfg.v_head_dim}")
    t.add_row("vocab", str(cfg.vocab_size))
    t.add_row("tied embeddings", str(cfg.tie_word_embeddings))
    t.add_row("parameters", f"{n_params:,}")
    t.add_row("weights on disk", f"{folder_size(folder) / 2**20:.1f} MiB")
    t.add_row(
        "KV cache / token (fp16)",
        f"latent {kv['latent']:,} B vs expanded {kv['expanded']:,} B "
        f"({kv['expanded'] / kv['latent']:.1f}x smaller)",
    )
    t.add_row("latent values / token / layer", f"{cfg.latent_dim} (kv_lora_rank + qk_rope_head_dim)")
    console.print(t)


@app.command()
@user_errors
def train(
    preset: Optional[str] = typer.Option(None, help="Model preset: tiny | youtu-2b."),
    out: Path = typer.Option(
        ..., help="Run folder: OUT/checkpoint (HF folder + trainer state), OUT/log.jsonl."
    ),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps."),
    batch_size: Optional[int] = typer.Option(None, help="Sequences per micro-batch per process."),
    seq_len: Optional[int] = typer.Option(None, help="Tokens per training row."),
    grad_accum: Optional[int] = typer.Option(None, help="Micro-batches per optimizer step."),
    lr: Optional[float] = typer.Option(
        None, help="Peak learning rate (linear warmup, cosine decay to --min-lr)."
    ),
    min_lr: Optional[float] = typer.Option(None, help="Final learning rate."),
    warmup: Optional[int] = typer.Option(None, help="Warmup steps."),
    data: Optional[list[Path]] = typer.Option(None, help="Extra training data (.txt or .jsonl), repeatable."),
    stage: Optional[str] = typer.Option(
        None, help="Curriculum: name[:fraction],... (pretrain, midtrain, sft)."
    ),
    episodes: Optional[int] = typer.Option(None, help="Generated tool-use trajectories for training."),
    tokenizer: Optional[Path] = typer.Option(None, help="Use this tokenizer folder instead of training one."),
    init: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights (fine-tuning)."),
    eval_every: Optional[int] = typer.Option(None, help="Held-out eval every N steps."),
    save_every: Optional[int] = typer.Option(None, help="Checkpoint every N steps (and at the end)."),
    seed: Optional[int] = typer.Option(None),
    dtype: Optional[str] = typer.Option(
        None, help="auto (bf16 autocast on CUDA, fp32 on CPU) | float32 | bfloat16."
    ),
    fsdp: Optional[bool] = typer.Option(
        None, "--fsdp/--no-fsdp", help="Shard the model with FSDP (under torchrun) instead of DDP."
    ),
    resume: Optional[bool] = typer.Option(
        None, "--resume/--no-resume", help="Continue the run in --out from its last checkpoint."
    ),
) -> None:
    """Train (or resume) a model; runs single-process or under `torchrun --nproc_per_node N -m edgeport.cli train`.

    An option left out takes its default from edgeport.trainer.TrainConfig."""
    from edgeport.trainer import TrainConfig
    from edgeport.trainer import train as run_training

    for p in data or []:
        if not p.is_file():
            raise EdgeportError("training data file not found", p)
    given = {
        "preset": preset, "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "grad_accum": grad_accum,
        "lr": lr, "min_lr": min_lr, "warmup": warmup, "stages": stage, "n_episodes": episodes,
        "tokenizer": str(tokenizer) if tokenizer else None, "init": str(init) if init else None, "eval_every": eval_every,
        "save_every": save_every, "seed": seed, "dtype": dtype, "fsdp": fsdp, "resume": resume,
    }  # fmt: skip
    cfg = TrainConfig(
        out=str(out), data=[str(p) for p in data or []], **{k: v for k, v in given.items() if v is not None}
    )
    done = run_training(cfg)
    console.print(f"wrote {done}")


def _exported(path: Path) -> bool:
    """A .gguf file or an ONNX export folder (eval runs it on its runtime); anything else is a checkpoint or run
    folder for evaluate_model, which names what is wrong with it."""
    from edgeport.chat_cli import detect_runtime

    try:
        return path.exists() and detect_runtime(path) != "torch"
    except EdgeportError:
        return False


@app.command("eval")
@user_errors
def eval_cmd(
    model: Optional[Path] = typer.Argument(
        None,
        help="Checkpoint or run folder (default: the embedded model), or an exported .gguf / ONNX folder "
        "(tool-use success only, decoded by llama.cpp / onnxruntime).",
    ),
    tasks: int = typer.Option(
        210, help="Held-out tool-use episodes to run (all tools offered; the kinds in turn, 30 each at 210)."
    ),
    seed: int = typer.Option(0),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
    transcripts: Optional[Path] = typer.Option(
        None,
        help="Also write every episode as a JSON line: requests, reference calls, the model's calls and answer, "
        "where it failed.",
    ),
) -> None:
    """Held-out loss and perplexity (text, trajectories) and agentic tool-use success rate."""
    import json

    from edgeport.io import atomic_file
    from edgeport.trainer import evaluate_artifact, evaluate_model

    if tasks < 1:
        raise EdgeportError(f"--tasks must be >= 1, got {tasks}")
    for out in (json_out, transcripts):  # refused before the minutes of evaluation, not after
        if out is not None:
            check_out(out, folder=False)
    records: list[dict] = []
    if model is not None and _exported(model):
        m = evaluate_artifact(model, n_tasks=tasks, seed=seed, progress=True, records=records)
    else:
        m = evaluate_model(
            model or default_model_dir(), n_tasks=tasks, seed=seed, progress=True, records=records
        )
    a = m["agent"]
    t = Table(title=f"edgeport eval {m['model']}", show_header=False)
    if "runtime" in m:
        t.add_row("runtime", m["runtime"])
    else:
        t.add_row("parameters", f"{m['parameters']:,}")
        t.add_row("held-out text: loss / ppl", f"{m['val_text']['loss']:.3f} / {m['val_text']['ppl']:.2f}")
        t.add_row(
            "held-out trajectories: loss / ppl", f"{m['val_sft']['loss']:.3f} / {m['val_sft']['ppl']:.2f}"
        )
    t.add_row(
        f"tool-use success ({a['n']} tasks)",
        f"{a['success_rate']:.1%} (echo baseline {a['baseline_echo']:.1%})",
    )
    t.add_row("tool-call rate / valid JSON", f"{a['tool_call_rate']:.1%} / {a['valid_json_rate']}")
    t.add_row("by kind", ", ".join(f"{k} {v:.0%}" for k, v in a["by_kind"].items()))
    t.add_row("by rendering", ", ".join(f"{k} {v:.0%}" for k, v in a["by_rendering"].items()))
    t.add_row("held-out phrasings", f"{a['heldout_phrasing']:.1%}")
    t.add_row("failures", ", ".join(f"{k} {v}" for k, v in a["reasons"].items() if k != "ok") or "none")
    modes = sorted(a.get("failure_modes", {}).items(), key=lambda kv: -kv[1])
    t.add_row("where failures start", ", ".join(f"{k} {v}" for k, v in modes) or "none")
    console.print(t)
    if json_out is not None:
        with atomic_file(json_out, "w") as f:
            f.write(json.dumps(m, indent=2) + "\n")
    if transcripts is not None:
        with atomic_file(transcripts, "w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


@app.command()
@user_errors
def quantize(
    model: Optional[Path] = typer.Argument(
        None, help="Float checkpoint folder (default: the embedded model)."
    ),
    scheme: str = typer.Option("q4_0", help="q8_0 | q4_0 | q4_1 | q4_0_mla (q4_0, MLA latent path at q8_0)."),
    method: str = typer.Option("rtn", help="rtn (round to nearest) | gptq (calibrated, error-compensating)."),
    calib: Optional[Path] = typer.Option(
        None, help="Calibration text for gptq: .txt or .jsonl (default: built-in)."
    ),
    calib_tokens: int = typer.Option(4096, help="Calibration tokens for gptq."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: ./<model>-<scheme>[-gptq])."),
    allow_nonfinite: bool = typer.Option(
        False, "--allow-nonfinite", help="Quantize NaN/Inf weights as they are instead of refusing them."
    ),
) -> None:
    """Quantize once (int8/int4 codes + scales) for every runtime: the GGUF and ONNX exporters reuse the codes."""
    from edgeport.checkpoint import folder_size
    from edgeport.quantize import quantize_checkpoint

    folder = model or default_model_dir()
    out = out or Path(f"{folder.name}-{scheme}{'-gptq' if method == 'gptq' else ''}")
    check_out(out, folder=True, marker="quant_config.json")  # before any work
    with nonfinite_allowed(allow_nonfinite):
        done = quantize_checkpoint(
            folder, out, scheme=scheme, method=method, calib=calib, n_calib_tokens=calib_tokens
        )
    console.print(f"wrote {done} ({folder_size(done) / 2**20:.1f} MiB, {scheme} {method})")


@export_app.command("gguf")
@user_errors
def export_gguf_cmd(
    model: Path | None = typer.Argument(
        None, help="Checkpoint folder, float or quantized (default: the embedded model)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="GGUF file to write (atomically)."),
    type: str | None = typer.Option(
        None,
        "--type",
        "-t",
        help="f32|f16|bf16|q8_0|q4_0|q4_1|q4_k_m|q6_k (default: f16; a quantized folder keeps its own).",
    ),
    allow_nonfinite: bool = typer.Option(
        False, "--allow-nonfinite", help="Export NaN/Inf weights as they are instead of refusing them."
    ),
) -> None:
    """Checkpoint -> one llama.cpp GGUF (arch deepseek2, latent-only KV cache, tokenizer + chat template)."""
    from edgeport.export.gguf import export_gguf

    with nonfinite_allowed(allow_nonfinite):
        path = export_gguf(model or default_model_dir(), out, type)
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")


@export_app.command("onnx")
@user_errors
def export_onnx_cmd(
    model: Path | None = typer.Argument(
        None, help="Checkpoint folder, float or quantized (default: the embedded model)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to write (atomically): model.onnx, model.ort, genai_config.json."
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        "-p",
        help="fp32|fp16|int8|int4 (a quantized folder: its own int precision, or fp32/fp16).",
    ),
    no_mobile: bool = typer.Option(False, "--no-mobile", help="Skip the ORT Mobile model.ort conversion."),
    allow_nonfinite: bool = typer.Option(
        False, "--allow-nonfinite", help="Export NaN/Inf weights as they are instead of refusing them."
    ),
    kv_cache: str | None = typer.Option(
        None,
        "--kv-cache",
        help="Latent cache type fp16|fp32 (default: fp32 for --precision fp32, else fp16).",
    ),
) -> None:
    """Checkpoint -> ONNX folder for onnxruntime, onnxruntime-genai and ORT Mobile (latent-only KV cache)."""
    from edgeport.checkpoint import folder_size
    from edgeport.export.onnx import export_onnx

    check_out(out, folder=True, marker="genai_config.json")  # before any work
    with nonfinite_allowed(allow_nonfinite):
        done = export_onnx(
            model or default_model_dir(), out, precision, mobile=not no_mobile, kv_cache=kv_cache
        )
    console.print(f"wrote {done} ({folder_size(done) / 2**20:.2f} MiB, {precision})")


EPISODES_HELP = "Held-out agent episodes per row (0: none; default 16, 2 above 200 M parameters)."
ALL_ROWS_HELP = (
    "Above 200 M parameters, also the rows left out by default (torch absorbed/dequant, llama.cpp without "
    "repacking, fp32 ONNX)."
)
AGENT_TOKENS_HELP = "Token cap of one agent turn (default 96, 64 above 200 M parameters)."


@export_app.command("all")
@user_errors
def export_all_cmd(
    model: Path | None = typer.Argument(None, help="Checkpoint folder (default: the embedded model)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Export folder to create (replaced if it is an export)."
    ),
    method: str = typer.Option("rtn", help="Quantization method (each scheme is quantized once)."),
    schemes: str = typer.Option("q8_0,q4_0", help="Quantized schemes, comma-separated."),
    formats: str = typer.Option("gguf,onnx", help="Formats, comma-separated."),
    episodes: Optional[int] = typer.Option(None, help=EPISODES_HELP),
    all_rows: bool = typer.Option(False, "--all-rows", help=ALL_ROWS_HELP),
    no_validate: bool = typer.Option(False, "--no-validate", help="Build only; skip the validation report."),
    allow_nonfinite: bool = typer.Option(
        False, "--allow-nonfinite", help="Export NaN/Inf weights as they are instead of refusing them."
    ),
) -> None:
    """Checkpoint -> GGUF (f16, q8_0, q4_0) + ONNX (fp32, int8, int4) + .ort + manifest + validation report."""
    from edgeport.export.all import export_all

    reports: list[dict] = []

    def finish(tmp: Path) -> None:
        """The report is part of the export: written into the new folder before it replaces --out."""
        from edgeport.validate import validate as run_validate
        from edgeport.validate.report import write_report

        report = run_validate(tmp, episodes=episodes, all_rows=all_rows)
        report["export"] = str(out.resolve())  # not the temporary folder's name
        write_report(tmp, report)
        reports.append(report)

    with nonfinite_allowed(allow_nonfinite):
        manifest = export_all(
            model or default_model_dir(),
            out,
            schemes=_csv(schemes),
            formats=_csv(formats),
            method=method,
            finish=None if no_validate else finish,
        )
    t = Table(title=f"edgeport export all -> {out}")
    for col in ("artifact", "from", "MiB", "seconds"):
        t.add_column(col, justify="right" if col in ("MiB", "seconds") else "left")
    for a in manifest["artifacts"]:
        src = a["from"] if not a["from"].startswith("/") else "(source)"
        t.add_row(a["path"], src, f"{a['bytes'] / 2**20:.2f}", f"{a['seconds']:.1f}")
    console.print(t)
    for report in reports:
        _print_validate(report, out)
        if not report["passed"]:
            raise typer.Exit(1)


@app.command()
@user_errors
def validate(
    folder: Path = typer.Argument(..., help="An export folder made by `edgeport export all`."),
    episodes: Optional[int] = typer.Option(None, help=EPISODES_HELP),
    ids: int = typer.Option(128, help="Held-out token ids for the teacher-forced logits and perplexity."),
    runtime: list[str] | None = typer.Option(None, help="Only these runtimes (repeatable)."),
    all_rows: bool = typer.Option(False, "--all-rows", help=ALL_ROWS_HELP),
    agent_tokens: Optional[int] = typer.Option(None, help=AGENT_TOKENS_HELP),
) -> None:
    """Every runtime x artifact against the fp32 torch reference; exits 1 when a gate is exceeded."""
    from edgeport.validate import validate as run_validate

    report = run_validate(
        folder, n_ids=ids, episodes=episodes, runtimes=runtime, all_rows=all_rows, agent_tokens=agent_tokens
    )
    _print_validate(report, folder)
    if not report["passed"]:
        raise typer.Exit(1)


def _print_validate(report: dict, folder: Path) -> None:
    from edgeport.validate.report import rich_table

    _wide().print(
        rich_table(report, f"edgeport validate {folder}: {'PASSED' if report['passed'] else 'FAILED'}")
    )
    for r in report["rows"]:
        if r["failures"]:
            line = f"[red]{r['status']}[/] {r['runtime']} {r['artifact']}: {'; '.join(r['failures'])}"
            console.print(line, highlight=False, soft_wrap=True)
    for name, why in report["skipped"].items():
        console.print(f"[yellow]skipped[/] {name}: {why}", highlight=False, soft_wrap=True)
    console.print(f"report: {Path(folder) / 'report.md'} (+ .json, .png)", highlight=False, soft_wrap=True)


def _wide() -> Console:
    """The console, at least 150 columns wide when it is not a terminal (piped tables stay one row per line)."""
    return console if console.is_terminal else Console(width=max(console.width, 150))


@app.command()
@user_errors
def bench(
    folder: Path = typer.Argument(..., help="An export folder made by `edgeport export all`."),
    prompt: int = typer.Option(64, help="Prompt tokens (prefill)."),
    tokens: int = typer.Option(32, help="Decoded tokens."),
    repeats: int = typer.Option(3, help="Repeats; medians are reported."),
    threads: int | None = typer.Option(None, help="Threads per runtime (default: min(4, cores))."),
    runtime: list[str] | None = typer.Option(None, help="Only these runtimes (repeatable)."),
) -> None:
    """Prefill/decode tok/s, TTFT, peak RSS, size, KV bytes/token and bandwidth-bound fraction per runtime."""
    from edgeport.bench import BENCH_FILE, table
    from edgeport.bench import bench as run_bench

    result = run_bench(
        folder, prompt_tokens=prompt, new_tokens=tokens, repeats=repeats, threads=threads, runtimes=runtime
    )
    _wide().print(table(result))
    for name, why in result["skipped"].items():
        console.print(f"[yellow]skipped[/] {name}: {why}", highlight=False, soft_wrap=True)
    console.print(f"json: {Path(folder) / BENCH_FILE}")


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


@app.command()
@user_errors
def chat(
    model: Optional[Path] = typer.Argument(
        None, help="Checkpoint folder, .gguf file or ONNX export folder (default: the embedded model)."
    ),
    runtime: Optional[str] = typer.Option(
        None, help="torch | llamacpp | onnx (default: from MODEL's files)."
    ),
    tools: bool = typer.Option(True, "--tools/--no-tools", help="Offer tools; run the model's tool calls."),
    tool_names: Optional[str] = typer.Option(None, help="Comma-separated tools to offer (default: all)."),
    prompt: Optional[str] = typer.Option(None, help="Answer this one message and exit (non-interactive)."),
    system: Optional[str] = typer.Option(None, help="System prompt."),
    max_new_tokens: int = typer.Option(256, help="Token budget of one model reply."),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0: greedy)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling: keep the most likely tokens up to this mass."),
    seed: Optional[int] = typer.Option(None, help="Sampling seed (same seed, same answers)."),
    min_new_tokens: int = typer.Option(
        0, help="A reply does not end before this many tokens (its end token is ruled out until then)."
    ),
    constrain: bool = typer.Option(
        True, "--constrain/--no-constrain", help="Decode tool calls under the offered tools' JSON schemas."
    ),
    think: bool = typer.Option(
        False, "--think/--no-think", help="Let the model reason first (shown dimmed)."
    ),
) -> None:
    """Offline chat with streaming and real tool execution. /help lists the commands, /exit quits."""
    from edgeport.chat_cli import run_chat
    from edgeport.sampling import make_sampler

    names = [n.strip() for n in tool_names.split(",") if n.strip()] if tool_names else None
    sampler = make_sampler(temperature, top_p, seed, min_new_tokens)
    run_chat(model, runtime, tools, names, prompt, max_new_tokens, system, sampler=sampler,
             constrain=constrain, thinking=think)  # fmt: skip


@app.command()
@user_errors
def serve(
    model: Optional[Path] = typer.Argument(
        None, help="Checkpoint folder, .gguf file or ONNX export folder (default: the embedded model)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    runtime: Optional[str] = typer.Option(
        None, help="torch | llamacpp | onnx (default: from MODEL's files)."
    ),
    constrain: bool = typer.Option(
        True, "--constrain/--no-constrain", help="Decode tool calls under the request's tool schemas."
    ),
) -> None:
    """An OpenAI-compatible server: /v1/models and /v1/chat/completions (tools, streaming, sampling)."""
    from edgeport.serve import serve as run_server

    run_server(model, host=host, port=port, runtime=runtime, constrain=constrain)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="edgeport")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
