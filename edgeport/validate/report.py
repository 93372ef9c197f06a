"""The validation report: report.json, report.md, report.png, and the terminal table (`edgeport validate`).

One renderer: `cells` turns a report row into its displayed figures; the markdown table and the rich table of
the command line both print those cells.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeport.io import atomic_file

COLUMNS = (
    "runtime",
    "artifact",
    "max abs Δ",
    "KL",
    "top-1",
    "greedy",
    "tokenizer",
    "PPL",
    "tool success",
    "KL vs same codes",
    "status",
)
TEXT_COLUMNS = ("runtime", "artifact", "status")  # left-aligned; the figures are right-aligned
STATUS_STYLE = {"pass": "green", "reference": "cyan", "fail": "red", "error": "red"}


def _fmt(x: Any, spec: str) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf"
    return format(x, spec)


def shown_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a table shows: every runtime x artifact that ran (skipped ones are listed apart)."""
    return [r for r in report["rows"] if r["status"] != "skipped"]


def cells(r: dict[str, Any]) -> list[str]:
    """One report row as the text of each of COLUMNS (status without its failures)."""
    tok = f"{r['tokenizer_match']}/{r['tokenizer_total']}" if r.get("tokenizer_total") else "–"
    greedy = f"{r['greedy_match']}/{r['greedy_total']}" if "greedy_match" in r else "(ref)"
    success = _fmt(r.get("tool_success"), ".0%")
    if r.get("tool_success_vs_ref") is not None:
        success += f" ({r['tool_success_vs_ref']:.0%} of ref)"
    return [
        r["runtime"],
        r["artifact"],
        _fmt(r.get("max_abs"), ".2e"),
        _fmt(r.get("kl"), ".2e"),
        _fmt(r.get("top1"), ".1%"),
        greedy,
        tok,
        _fmt(r.get("ppl"), ".2f"),
        success,
        _fmt(r.get("kl_vs_dequant"), ".1e"),
        r["status"],
    ]


def markdown_table(report: dict[str, Any]) -> str:
    align = "|".join("---" if c in TEXT_COLUMNS else "---:" for c in COLUMNS)
    lines = [f"| {' | '.join(COLUMNS)} |", f"|{align}|"]
    for r in shown_rows(report):
        row = cells(r)
        if r["failures"]:
            row[-1] = f"**{r['status']}**: {'; '.join(r['failures'])}"
        lines.append(f"| {' | '.join(row)} |")
    return "\n".join(lines) + "\n"


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


def rich_table(report: dict[str, Any], title: str) -> Any:
    """The same cells as report.md, as a rich Table for the terminal (status coloured)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE)
    for col in COLUMNS:
        t.add_column(col, justify="left" if col in TEXT_COLUMNS else "right", no_wrap=True)
    for r in shown_rows(report):
        row = cells(r)
        row[-1] = f"[{STATUS_STYLE[r['status']]}]{r['status']}[/]"
        t.add_row(*row)
    return t


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
