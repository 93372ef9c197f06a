"""The validation run: every available runtime x artifact of an export measured on the same fixed inputs."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.manifest import artifact_entries, load_manifest, reference_checkpoint, runtime_threads
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

    def __init__(self, checkpoint: Path, n_ids: int, episodes: int, seed: int) -> None:
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
    entries = artifact_entries(folder, load_manifest(folder))
    arts = [Artifact(**e) for e in entries]
    checkpoint = reference_checkpoint(folder, entries)
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
