"""The validation run: every available runtime x artifact of an export measured on the same fixed inputs.

Bounded memory at any model size:
- the fp32 torch reference is `TorchRef(streamed=True)` over `edgeport.reference.StreamedModel` (one decoder
  layer in memory at a time); its logits and greedy tokens are cached on disk in the export (`.validate/reference-<key>.npz`), so no runtime
  runs beside it and a second `validate` of the same export does not recompute it;
- for a model above SMALL_MODEL_BYTES each row runs in its own spawned process, one at a time, so the peak is
  that of one runtime with one artifact, and all of it goes back to the OS when the row is done (a script that
  calls validate() on such a model needs Python's `if __name__ == "__main__":` guard, as any spawn does);
- for a model above LARGE_MODEL_PARAMS the default rows and agent episodes are those that finish in minutes
  (see large_model_skip); `all_rows=True` (`--all-rows`) runs every row, `episodes`/`agent_tokens` set the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import multiprocessing
import platform
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.io import atomic_file
from edgeport.manifest import (
    SMALL_MODEL_BYTES,
    artifact_entries,
    load_manifest,
    reference_checkpoint,
    runtime_threads,
)
from edgeport.validate.metrics import (
    GATES,
    GREEDY_TOKENS,
    compare_logits,
    gate_failures,
    matching_prefix,
    perplexity,
)
from edgeport.validate.report import write_report
from runtimes.registry import REFERENCE, Artifact, Target, default_skip, targets

PROMPT_TOKENS = 16
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
CACHE = ".validate"  # the reference's cached figures, inside the export folder
LARGE_MODEL_PARAMS = 200_000_000
# Agent episodes and their per-turn token cap, small vs large models. A random-weight model never emits EOS, so
# every episode runs to its cap: at 2B on a 2-core laptop CPU a token costs 0.1-1 s in the runtimes and seconds
# in the streamed fp32 reference. So for a large model by default only the int4 rows (what ships to laptops and
# phones) run episodes and the reference none; an explicit `episodes` applies to every runtime row.
EPISODES = {"small": 16, "large": 2}
AGENT_TOKENS = {"small": 160, "large": 64}  # small: edgeport eval's cap (agent.run_episode), same scoring

# Mixed text for the tokenizer check: English, CJK, digits, code, emoji, chat markup, odd whitespace.
TOKENIZER_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "It's 2026-11-25; we've got 1234567 tokens and 3.14159 apples.",
    "东京是日本的首都。我们在这里学习模型。",
    "한국어 문장도 있습니다. カタカナとひらがな。",
    "def add(a, b):\n    return a + b  # sum\n\n\tprint(add(17, 23))",
    'Emoji 🙂🚀✨ {"name": "calc", "arguments": {"expr": "3*7"}}',
    "  leading spaces,\ttabs\r\nand   runs of   spaces  ",
    "naïve café résumé — “quotes” ‘and’ … ellipses",
    # chat markup: control tokens must parse as single special tokens in both tokenizers
    "<|begin_of_text|><|User|>What is 3*7?<|Assistant|><think>\n\n</think>\n\n"
    '<tool_call>{"name": "calc", "arguments": {"expr": "3*7"}}</tool_call><|end_of_text|>',
]


class Inputs:
    """Everything fixed across runtimes: held-out ids, the greedy prompt, mixed texts, agent episodes."""

    def __init__(
        self, checkpoint: Path, n_ids: int, episodes: int, seed: int, agent_tokens: int = 96
    ) -> None:
        from tokenizers import Tokenizer

        from edgeport.checkpoint import load_config
        from edgeport.data import heldout_ids

        path = checkpoint / "tokenizer.json"
        if not path.is_file():
            raise EdgeportError("the reference checkpoint has no tokenizer.json", checkpoint)
        self.hf = Tokenizer.from_file(str(path))
        cfg = load_config(checkpoint)
        self.context = cfg.max_position_embeddings
        n_ids = min(n_ids, cfg.max_position_embeddings - GREEDY_TOKENS - 1)
        self.ids = heldout_ids(self.hf, n_ids)
        self.eos = [i for i in [self.hf.token_to_id("<|end_of_text|>")] if i is not None]
        self.prompt = chat_prompt(self.hf, self.context - GREEDY_TOKENS) or self.ids[:PROMPT_TOKENS]
        self.texts = TOKENIZER_TEXTS
        self.hf_tokens = [self.hf.encode(t, add_special_tokens=False).ids for t in self.texts]
        self.n_episodes = episodes
        self.agent_tokens = agent_tokens
        self.seed = seed
        self._episodes = None
        self._tok = None
        self.checkpoint = checkpoint

    def episodes(self) -> tuple[Any, list[Any]]:
        if self._episodes is None:
            from edgeport.data import generate_episodes
            from edgeport.tokenizer import load_tokenizer

            # the first episodes of `edgeport eval` (trainer.evaluate_model draws them with seed + 1)
            self._episodes = generate_episodes(self.n_episodes, seed=self.seed + 1, split="eval")
            self._tok = load_tokenizer(self.checkpoint)
        return self._tok, self._episodes

    def key(self, checkpoint_sha256: str, episodes: int) -> str:
        """Names the reference's cached figures: the checkpoint's bytes, every input that shapes them and the code
        that computes them (edgeport.model, edgeport.reference, and the torch runtime's token stream)."""
        import edgeport.model
        import edgeport.reference
        import runtimes.base
        import runtimes.torch_ref

        code = [
            hashlib.sha256(Path(m.__file__).read_bytes()).hexdigest()
            for m in (edgeport.model, edgeport.reference, runtimes.base, runtimes.torch_ref)
        ]
        parts = [checkpoint_sha256, self.ids, self.prompt, GREEDY_TOKENS, self.texts]
        parts += [episodes, self.agent_tokens, self.seed, code]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def chat_prompt(tok: Any, max_len: int) -> list[int] | None:
    """The greedy-decode prompt: the first held-out agent episode's user turn, ready for the assistant (a trained
    model answers it with a tool call, so the 32 greedy tokens exercise real decoding, not an early EOS)."""
    from edgeport.chat import render
    from edgeport.data import generate_episodes

    ep = generate_episodes(1, seed=0, split="eval")[0]
    turn = next(i for i, m in enumerate(ep.messages) if m.get("role") == "user")
    text = render(ep.messages[: turn + 1], ep.tools, add_generation_prompt=True, enable_thinking=False)
    ids = tok.encode(text, add_special_tokens=False).ids
    return ids if len(ids) <= max_len else None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def agent_success(rt: Any, inputs: Inputs) -> float | None:
    if inputs.n_episodes <= 0:
        return None
    from edgeport.agent import evaluate

    tok, episodes = inputs.episodes()
    res = evaluate(rt.generate, tok, episodes, max_new_tokens=inputs.agent_tokens, max_context=inputs.context)
    return float(res["success_rate"])


def measure(rt: Any, inputs: Inputs) -> dict[str, Any]:
    """One runtime's own figures: logits, perplexity, greedy tokens, tokenizer agreement, tool-use success."""
    t0 = time.perf_counter()
    logits = rt.logits(inputs.ids)
    greedy = [
        int(t) for t in rt.generate(inputs.prompt, GREEDY_TOKENS, inputs.eos)
    ]  # every runtime stops at EOS
    row: dict[str, Any] = {"ppl": perplexity(logits, inputs.ids), "greedy": greedy}
    try:
        toks = [list(rt.tokenize(t)) for t in inputs.texts]
    except NotImplementedError:
        toks = None
    if toks is not None:
        row["tokenizer_match"] = sum(a == b for a, b in zip(toks, inputs.hf_tokens, strict=True))
        row["tokenizer_total"] = len(inputs.texts)
        row["tokenizer_mismatch"] = [
            t for t, a, b in zip(inputs.texts, toks, inputs.hf_tokens, strict=True) if a != b
        ]
    row["tool_success"] = agent_success(rt, inputs)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    row["logits"] = logits
    return row


def against(got: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """`got` with its parity figures against the reference's logits and greedy tokens."""
    got = {**got, **compare_logits(ref["logits"], got["logits"])}
    got["greedy_match"] = matching_prefix(ref["greedy"], got["greedy"])
    got["greedy_total"] = len(ref["greedy"])
    if got.get("tool_success") is not None and ref.get(
        "tool_success"
    ):  # the share of the reference's figure kept
        got["tool_success_vs_ref"] = got["tool_success"] / ref["tool_success"]
    return got


# ---- one row, in this process or in its own ----------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """What a worker needs to measure one target (picklable: it crosses into a spawned process)."""

    target: Target
    checkpoint: Path
    n_ids: int
    episodes: int
    agent_tokens: int
    seed: int
    threads: int | None


def build(t: Target, threads: int | None) -> Any:
    """The target's runtime; the torch rows on the float checkpoint run the streamed fp32 model."""
    if t.artifact.kind == "checkpoint" and t.pair.target.startswith("runtimes.torch_ref"):
        from runtimes.torch_ref import TorchRef

        return TorchRef(t.artifact.path, streamed=True, **t.pair.kwargs)
    return t.build(threads)


def run_job(job: Job) -> dict[str, Any]:
    """Measure one target; a runtime that cannot load or run its artifact gives {"error": ...}."""
    try:
        inputs = Inputs(job.checkpoint, job.n_ids, job.episodes, job.seed, job.agent_tokens)
        with torch_threads(job.threads):
            rt = build(job.target, job.threads)
            try:
                return measure(rt, inputs)
            finally:
                rt.close()
    except Exception as e:  # reported as the row's error, never a traceback
        return {"error": f"{type(e).__name__}: {e}"}


def _child(send: Any, fn: Callable, arg: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux: end with the parent, even when it is killed
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    out = fn(arg)
    with contextlib.suppress(OSError):  # VmHWM: this process's own peak resident set
        line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
        out["peak_rss_mib"] = round(int(line.split()[1]) / 1024, 1)
    send.send(out)
    send.close()


def isolated(fn: Callable[[Any], dict[str, Any]], arg: Any) -> dict[str, Any]:
    """fn(arg) in a fresh spawned process (no inherited memory; all of its memory is returned when it ends)."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(send, fn, arg), daemon=True)
    p.start()
    send.close()
    try:
        out = recv.recv()
    except EOFError:
        p.join()
        killed = " (killed: out of memory?)" if p.exitcode == -9 else ""
        out = {"error": f"its process died with exit code {p.exitcode}{killed}"}
    finally:
        recv.close()
    p.join()
    return out


# ---- which rows -------------------------------------------------------------------------------------------
def n_parameters(checkpoint: Path) -> int:
    from edgeport.checkpoint import expected_shapes, load_config

    cfg = load_config(checkpoint)
    return sum(int(np.prod(s)) for s in expected_shapes(cfg).values())


def large_model_skip(t: Target, params: int) -> str | None:
    """Why a row does not run by default for a model above LARGE_MODEL_PARAMS (None: it runs)."""
    fp32 = f"{params * 4 / 2**30:.1f} GiB"
    if t.runtime == "torch-absorbed":
        return "a second streamed fp32 pass; absorbed == expanded attention is checked on every small export"
    if t.runtime == "torch-dequant":
        return f"holds the whole dequantized model in fp32 ({fp32})"
    if t.runtime == "llama.cpp-norepack":
        return "the same GGUF as the llama.cpp row, on llama.cpp's plain (not repacked) kernels"
    if t.artifact.kind == "onnx" and t.artifact.precision_class in ("fp32", "f16"):
        return f"the runtime holds all {t.artifact.precision} weights in memory ({fp32} in fp32)"
    if t.runtime == "onnxruntime-genai" and t.artifact.precision_class != "int4":
        return "the same model.onnx as the onnxruntime row; genai's generator loop is checked on int4"
    return None


def validate(
    folder: str | Path,
    n_ids: int = 128,
    episodes: int | None = None,
    seed: int = 0,
    runtimes: list[str] | None = None,
    progress: bool = True,
    all_rows: bool = False,
    agent_tokens: int | None = None,
    isolate: bool | None = None,
) -> dict[str, Any]:
    """Validate an export folder; writes report.{json,md,png} into it and returns the report dict.

    episodes / agent_tokens: agent episodes per row and their per-turn token cap (None: by model size, EPISODES
    and AGENT_TOKENS). all_rows: also the rows large_model_skip leaves out. isolate: each row in its own process
    (None: when the checkpoint is above SMALL_MODEL_BYTES)."""
    from rich.console import Console

    from edgeport.checkpoint import folder_size

    folder = Path(folder)
    manifest = load_manifest(folder)
    entries = artifact_entries(folder, manifest)
    arts = [Artifact(**e) for e in entries]
    checkpoint = reference_checkpoint(folder, entries)
    params = n_parameters(checkpoint)
    size = "large" if params > LARGE_MODEL_PARAMS else "small"
    every_row = episodes is not None or size == "small"
    episodes = EPISODES[size] if episodes is None else episodes
    agent_tokens = AGENT_TOKENS[size] if agent_tokens is None else agent_tokens
    isolate = folder_size(checkpoint) > SMALL_MODEL_BYTES if isolate is None else isolate
    threads = runtime_threads(checkpoint)
    inputs = Inputs(checkpoint, n_ids, episodes, seed, agent_tokens)
    todo = [t for t in targets(arts, default_skip) if t.pair is not REFERENCE]
    if runtimes:
        todo = [t for t in todo if t.runtime in runtimes]
    console = Console(stderr=True, quiet=not progress)
    started = time.time()

    def run(t: Target, n_episodes: int) -> dict[str, Any]:
        job = Job(t, checkpoint, n_ids, n_episodes, agent_tokens, seed, threads)
        return isolated(run_job, job) if isolate else run_job(job)

    def skip_reason(t: Target) -> str:
        ok, why = t.available()
        if ok and size == "large" and not all_rows and (why := large_model_skip(t, params) or ""):
            size_note = f"not run by default for a {params / 1e9:.2f} B-parameter model"
            return f"{size_note}: {why} (--all-rows runs it)"
        return "" if ok else (why or "not available here")

    plan = [(t, skip_reason(t)) for t in todo]
    n_rows = 1 + sum(not why for _, why in plan)

    def say(i: int, t: Target, what: str) -> None:
        el = time.time() - started
        at = time.strftime("%H:%M:%S" if el >= 3600 else "%M:%S", time.gmtime(el))
        console.print(f"[bold]\\[validate {i}/{n_rows}][/] {t.label:<28} {what} [dim](at {at})[/]")

    # the reference: from the cache, or measured alone and cached (no agent episodes for a large model: the
    # streamed fp32 decode takes seconds per token)
    ref_target = Target(REFERENCE, next(a for a in arts if a.path == checkpoint))
    ref_episodes = episodes if size == "small" else 0
    sha = next(a.get("sha256", "") for a in manifest["artifacts"] if a["kind"] == "checkpoint")
    cache = folder / CACHE / f"reference-{inputs.key(sha, ref_episodes)}.npz"
    ref = load_reference(cache) if sha else None
    say(1, ref_target, "cached" if ref else "streamed fp32 reference ...")
    if ref is None:
        ref = run(ref_target, ref_episodes)
        if "error" in ref:
            raise EdgeportError(f"the fp32 torch reference cannot run: {ref['error']}", checkpoint)
        save_reference(cache, ref)
        mem = f", peak {ref['peak_rss_mib'] / 1024:.2f} GiB" if "peak_rss_mib" in ref else ""
        say(1, ref_target, f"[cyan]reference[/] in {ref['seconds']:.0f} s{mem}")
    rows = [_row(ref_target, folder, ref, [], "reference")]
    dequant_ref: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    i = 1
    for t, why in plan:
        if why:
            skipped.setdefault(t.runtime if not t.pair.available()[0] else t.label, why)
            rows.append(_row(t, folder, {}, [], "skipped", why))
            continue
        i += 1
        say(i, t, "...")
        got = run(t, episodes if every_row or t.artifact.precision_class == "int4" else 0)
        if "error" in got:
            rows.append(_row(t, folder, {}, [got["error"]], "error"))
            say(i, t, f"[red]error[/]: {got['error']}")
            continue
        got = against(got, ref)
        if t.runtime == "torch-dequant":
            dequant_ref[t.artifact.precision_class] = got["logits"]
        elif t.artifact.precision_class in dequant_ref:
            same = compare_logits(dequant_ref[t.artifact.precision_class], got["logits"])
            got["kl_vs_dequant"] = same["kl"]
            got["top1_vs_dequant"] = same["top1"]
        fails = gate_failures(got, GATES[t.artifact.precision_class])
        status = "fail" if fails else "pass"
        rows.append(_row(t, folder, got, fails, status))
        mem = f", peak {got['peak_rss_mib'] / 1024:.2f} GiB" if "peak_rss_mib" in got else ""
        say(i, t, f"{'[red]fail[/]' if fails else '[green]pass[/]'} in {got['seconds']:.0f} s{mem}")

    report = {
        "format": "edgeport-validate",
        "version": 1,
        "export": str(folder.resolve()),
        "reference": f"torch fp32 (expanded attention, layers streamed) on {checkpoint.relative_to(folder)}",
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "inputs": {
            "heldout_ids": len(inputs.ids),
            "greedy_prompt": len(inputs.prompt),
            "greedy_tokens": GREEDY_TOKENS,
            "tokenizer_texts": len(inputs.texts),
            "agent_episodes": episodes,
            "agent_rows": "every row" if every_row else "int4 rows",
            "agent_tokens": agent_tokens,
            "reference_episodes": ref_episodes,
            "parameters": params,
            "rows": "all"
            if all_rows or size == "small"
            else f"default above {LARGE_MODEL_PARAMS:,} parameters",
            "isolated": isolate,
            "seed": seed,
        },
        "gates": {k: {**asdict(g), "rule": g.describe()} for k, g in GATES.items()},
        "rows": rows,
        "skipped": skipped,
        "passed": all(r["status"] in ("pass", "reference", "skipped") for r in rows),
        "seconds": round(time.time() - started, 1),
    }
    write_report(folder, report)
    return report


def load_reference(path: Path) -> dict[str, Any] | None:
    """The cached reference figures, or None when absent or unreadable (then they are measured again)."""
    try:
        with np.load(path) as z:
            return {**json.loads(str(z["row"])), "logits": z["logits"]}
    except (OSError, ValueError, KeyError):
        return None


def save_reference(path: Path, ref: dict[str, Any]) -> None:
    row = json.dumps({k: v for k, v in ref.items() if k != "logits"})
    with atomic_file(path) as f:
        np.savez(f, logits=ref["logits"], row=np.array(row))


def _row(
    t: Target, folder: Path, got: dict[str, Any], failures: list[str], status: str, reason: str = ""
) -> dict:
    row = {
        "runtime": t.runtime,
        "artifact": str(t.artifact.path.relative_to(folder)),
        "kind": t.artifact.kind,
        "precision": t.artifact.precision,
        "gate": t.artifact.precision_class,
        "status": status,
        "failures": failures,
        "reason": reason,
    }
    row.update({k: v for k, v in got.items() if k != "logits"})
    return row
