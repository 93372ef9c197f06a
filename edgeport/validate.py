"""`edgeport validate DIR`: every available runtime x artifact of an export against the fp32 torch reference.

Per (runtime, artifact): teacher-forced logits on fixed held-out ids (max |diff|, KL(ref || runtime), top-1
agreement), greedy decode equality (32 tokens), the runtime's own tokenizer against the HF tokenizer on mixed
text, perplexity on the held-out ids, and tool-use success on held-out agent episodes (tools run for real).
Each precision class has a gate (GATES); a row outside its gate, or a runtime that fails to load or run its
artifact, makes the report fail. Writes report.json, report.md and report.png next to the manifest.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.io import atomic_file
from runtimes.registry import PAIRS, REFERENCE, Artifact, Target, default_skip, targets

MANIFEST = "manifest.json"
FORMAT = "edgeport-export"
GREEDY_TOKENS = 32
SMALL_MODEL_BYTES = 256 * 2**20
PROMPT_TOKENS = 16


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
# Quantized bounds follow anchors.md A3 (proposed 2B gates: Q8_0 KL <= 0.003, RTN int4 KL <= ~0.1). Top-1 is
# looser than the 8B figures: the tiny default model's distributions are flat (its measured agreement: q8_0
# 96-98%, q4_0 82-84% at KL 2e-4 / 9e-3), so near-ties flip more often at the same KL.
GATES: dict[str, Gate] = {
    "fp32": Gate(max_abs=2e-3, top1=1.0, greedy_exact=True),
    "f16": Gate(max_abs=5e-2, top1=0.97, greedy_exact=True),
    "int8": Gate(kl=3e-3, top1=0.9),
    "int4": Gate(kl=0.1, top1=0.7),
}

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


# ---- the export folder -----------------------------------------------------------------------------------
def load_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise EdgeportError(
            "not a folder (expected an edgeport export made by `edgeport export all`)", folder
        )
    if not path.is_file():
        raise EdgeportError(
            f"not an edgeport export (no {MANIFEST}; make one with `edgeport export all`)", folder
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgeportError(f"invalid JSON ({e})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "artifacts" not in manifest:
        raise EdgeportError(
            f"not an edgeport export manifest (expected format {FORMAT!r} and artifacts)", path
        )
    return manifest


def artifacts(folder: str | Path, manifest: dict[str, Any]) -> list[Artifact]:
    folder = Path(folder)
    out = []
    for a in manifest["artifacts"]:
        path = folder / a["path"]
        if not path.exists():
            raise EdgeportError(f"artifact listed in {MANIFEST} is missing", path)
        out.append(Artifact(a["kind"], a["precision"], path, a.get("from", "")))
    return out


def reference_checkpoint(folder: str | Path, arts: list[Artifact]) -> Path:
    for a in arts:
        if a.kind == "checkpoint":
            return a.path
    raise EdgeportError(
        f"{MANIFEST} lists no float checkpoint to use as the reference", Path(folder) / MANIFEST
    )


# ---- metrics ------------------------------------------------------------------------------------------
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


# ---- the run ------------------------------------------------------------------------------------------
class Inputs:
    """Everything fixed across runtimes: held-out ids, the greedy prompt, mixed texts, agent episodes."""

    def __init__(self, checkpoint: Path, n_ids: int, episodes: int, seed: int) -> None:
        from tokenizers import Tokenizer

        from edgeport.checkpoint import load_config

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
        self.seed = seed
        self._episodes = None
        self._tok = None
        self.checkpoint = checkpoint

    def episodes(self):
        if self._episodes is None:
            from edgeport.data import generate_episodes
            from edgeport.tokenizer import load_tokenizer

            self._episodes = generate_episodes(self.n_episodes, seed=self.seed, split="eval")
            self._tok = load_tokenizer(self.checkpoint)
        return self._tok, self._episodes


def chat_prompt(tok, max_len: int) -> list[int] | None:
    """The greedy-decode prompt: the first held-out agent episode's user turn, ready for the assistant (a trained
    model answers it with a tool call, so the 32 greedy tokens exercise real decoding, not an early EOS)."""
    from edgeport.chat import render
    from edgeport.data import generate_episodes

    ep = generate_episodes(1, seed=0, split="eval")[0]
    turn = next(i for i, m in enumerate(ep.messages) if m.get("role") == "user")
    text = render(ep.messages[: turn + 1], ep.tools, add_generation_prompt=True, enable_thinking=False)
    ids = tok.encode(text, add_special_tokens=False).ids
    return ids if len(ids) <= max_len else None


def heldout_ids(tok, n: int) -> list[int]:
    """The first n ids of edgeport's built-in held-out text (repeated if it is shorter)."""
    from edgeport.data import builtin_text

    ids = tok.encode("\n\n".join(builtin_text("heldout")), add_special_tokens=False).ids
    if not ids:
        raise EdgeportError("the built-in held-out text tokenizes to nothing")
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def runtime_threads(checkpoint: Path) -> int | None:
    """1 for small models, whose decode is per-op overhead that more threads only add to (on a busy 2-core
    machine a 2-layer model decoded 10-20x slower with 2 threads than with 1, in torch and llama.cpp alike);
    None (each runtime's default) otherwise."""
    from edgeport.checkpoint import folder_size

    return 1 if folder_size(checkpoint) < SMALL_MODEL_BYTES else None


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


def agent_success(rt, inputs: Inputs) -> float | None:
    if inputs.n_episodes <= 0:
        return None
    from edgeport.agent import evaluate

    tok, episodes = inputs.episodes()
    return float(evaluate(rt.generate, tok, episodes, max_context=inputs.context)["success_rate"])


def measure(rt, inputs: Inputs, ref: dict[str, Any] | None) -> dict[str, Any]:
    """All figures for one runtime; against `ref` (the reference's own figures) unless this is the reference."""
    t0 = time.perf_counter()
    logits = rt.logits(inputs.ids)
    greedy = [
        int(t) for t in rt.generate(inputs.prompt, GREEDY_TOKENS, inputs.eos)
    ]  # every runtime stops at EOS
    row: dict[str, Any] = {"ppl": perplexity(logits, inputs.ids), "greedy": greedy}
    if ref is not None:
        row.update(compare_logits(ref["logits"], logits))
        row["greedy_match"] = matching_prefix(ref["greedy"], greedy)
        row["greedy_total"] = len(ref["greedy"])
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


def validate(
    folder: str | Path,
    n_ids: int = 128,
    episodes: int = 16,
    seed: int = 0,
    runtimes: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate an export folder; writes report.{json,md,png} into it and returns the report dict."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    folder = Path(folder)
    manifest = load_manifest(folder)
    arts = artifacts(folder, manifest)
    checkpoint = reference_checkpoint(folder, arts)
    inputs = Inputs(checkpoint, n_ids, episodes, seed)
    todo = [t for t in targets(arts, default_skip) if t.pair is not REFERENCE]
    if runtimes:
        todo = [t for t in todo if t.runtime in runtimes]
    dequant_ref: dict[str, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    started = time.time()

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    threads = runtime_threads(checkpoint)
    with torch_threads(threads), Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("torch fp32 reference", total=len(todo) + 1)
        ref_target = Target(REFERENCE, next(a for a in arts if a.path == checkpoint))
        ref_rt = ref_target.build()
        ref = measure(ref_rt, inputs, None)
        ref_rt.close()
        rows.append(_row(ref_target, folder, ref, [], "reference"))
        bar.advance(task)
        for t in todo:
            bar.update(task, description=f"{t.label:<32}")
            ok, why = t.available()
            if not ok:
                skipped.setdefault(t.runtime if not t.pair.available()[0] else t.label, why)
                rows.append(_row(t, folder, {}, [], "skipped", why))
                bar.advance(task)
                continue
            try:
                rt = t.build(threads)
                try:
                    got = measure(rt, inputs, ref)
                    if t.runtime == "torch-dequant":
                        dequant_ref[t.artifact.precision_class] = got["logits"]
                    elif t.artifact.precision_class in dequant_ref:
                        same = compare_logits(dequant_ref[t.artifact.precision_class], got["logits"])
                        got["kl_vs_dequant"] = same["kl"]
                        got["top1_vs_dequant"] = same["top1"]
                finally:
                    rt.close()
            except Exception as e:  # a runtime that cannot load or run its artifact fails the report
                rows.append(_row(t, folder, {}, [f"{type(e).__name__}: {e}"], "error"))
                bar.advance(task)
                continue
            fails = gate_failures(got, GATES[t.artifact.precision_class])
            rows.append(_row(t, folder, got, fails, "fail" if fails else "pass"))
            bar.advance(task)

    report = {
        "format": "edgeport-validate",
        "version": 1,
        "export": str(folder.resolve()),
        "reference": f"torch fp32 (expanded attention) on {checkpoint.relative_to(folder)}",
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "inputs": {
            "heldout_ids": len(inputs.ids),
            "greedy_prompt": len(inputs.prompt),
            "greedy_tokens": GREEDY_TOKENS,
            "tokenizer_texts": len(inputs.texts),
            "agent_episodes": episodes,
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


# ---- report files -------------------------------------------------------------------------------------
def _fmt(x: Any, spec: str) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf"
    return format(x, spec)


def markdown_table(report: dict[str, Any]) -> str:
    head = (
        "| runtime | artifact | max abs Δ | KL | top-1 | greedy | tokenizer | PPL | tool success "
        "| KL vs same codes | status |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for r in report["rows"]:
        if r["status"] == "skipped":
            continue
        tok = f"{r['tokenizer_match']}/{r['tokenizer_total']}" if r.get("tokenizer_total") else "–"
        greedy = f"{r['greedy_match']}/{r['greedy_total']}" if "greedy_match" in r else "(ref)"
        status = r["status"] if not r["failures"] else f"**{r['status']}**: {'; '.join(r['failures'])}"
        lines.append(
            f"| {r['runtime']} | {r['artifact']} | {_fmt(r.get('max_abs'), '.2e')} | {_fmt(r.get('kl'), '.2e')} "
            f"| {_fmt(r.get('top1'), '.1%')} | {greedy} | {tok} | {_fmt(r.get('ppl'), '.2f')} "
            f"| {_fmt(r.get('tool_success'), '.0%')} | {_fmt(r.get('kl_vs_dequant'), '.1e')} | {status} |"
        )
    return head + "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    gates = "\n".join(f"- **{k}**: {g['rule']}" for k, g in report["gates"].items())
    skipped = "\n".join(f"- {name}: {why}" for name, why in report["skipped"].items()) or "- none"
    verdict = "PASSED" if report["passed"] else "FAILED"
    inp = report["inputs"]
    return (
        f"# edgeport validate: {verdict}\n\n"
        f"Export `{report['export']}` on {report['machine']}. Reference: {report['reference']}.\n"
        f"Logits on {inp['heldout_ids']} held-out ids (teacher forced); greedy up to {inp['greedy_tokens']} tokens "
        f"(stopping at EOS) after a {inp['greedy_prompt']}-token held-out agent prompt; tokenizer on {inp['tokenizer_texts']} mixed texts (HF vs the runtime's own); "
        f"tool success on {inp['agent_episodes']} held-out episodes. KL vs same codes: against torch running the "
        "dequantized codes of the same quantized checkpoint (isolates runtime arithmetic from rounding).\n\n"
        + markdown_table(report)
        + f"\n## Gates (against the fp32 reference)\n{gates}\n\n## Skipped on this machine\n{skipped}\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["status"] not in ("skipped", "error")]
    labels = [f"{r['runtime']}\n{r['precision']}" for r in rows]
    colors = {"fp32": "tab:blue", "f16": "tab:cyan", "int8": "tab:orange", "int4": "tab:red"}
    c = [colors.get(r["gate"], "gray") for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(max(8, 0.7 * len(rows)), 7), sharex=True)
    kl = [math.nan if r.get("kl") is None else min(max(r["kl"], 1e-12), 1e3) for r in rows]  # ref: no bar
    a.bar(range(len(rows)), kl, color=c)
    a.set_yscale("log")
    a.set_ylabel("KL(ref || runtime), nats")
    a.set_title("edgeport validate: parity with the fp32 torch reference")
    for k, g in report["gates"].items():
        if g["kl"] is not None:
            a.axhline(g["kl"], color=colors[k], ls="--", lw=0.8, label=f"{k} KL gate")
    a.legend(fontsize=7)
    succ = [100 * (r.get("tool_success") or 0.0) for r in rows]
    b.bar_label(b.bar(range(len(rows)), succ, color=c), fmt="%.0f%%", fontsize=7)
    b.set_ylim(0, 110)
    b.set_ylabel(f"tool-use success, % of {report['inputs']['agent_episodes']} episodes")
    b.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_report(folder: Path, report: dict[str, Any]) -> None:
    with atomic_file(folder / "report.json", "w") as f:
        json.dump(report, f, indent=2, default=float)
        f.write("\n")
    with atomic_file(folder / "report.md", "w") as f:
        f.write(markdown(report))
    plot(report, folder / "report.png")


def runtime_names() -> list[str]:
    return [p.runtime for p in PAIRS]
