"""`edgeport export all` on a Youtu-LLM-2B-shaped checkpoint: wall time and peak RSS of every stage, with
llama.cpp's own convert + quantize of the same GGUF types as the anchor, under one harness.

    python benchmarks/make_youtu_2b.py /tmp/youtu-2b          (or any checkpoint folder)
    python benchmarks/bench_export_all.py /tmp/youtu-2b --out /tmp/bench-all

1. The whole `edgeport export all CHECKPOINT --out OUT/export` (build + validation report) as one process tree;
   its progress lines ("[3/9] GGUF f16", "[validate 2/9] llama.cpp q4_0") split it into stages and validation rows
   (--skip-all leaves it out).
2. Each export stage alone, as the CLI runs it (`edgeport quantize`, `export gguf`, `export onnx`), in its own
   process (--skip-stages leaves these out).
3. llama.cpp's path: convert_hf_to_gguf.py -> F16, llama_model_quantize -> Q8_0 / Q4_0
   (benchmarks/bench_gguf_export.py runs them; --skip-llamacpp leaves these out).

Peak RSS is the resident set of the whole process tree (the command and its children, e.g. validate's per-row
processes), sampled every 0.2 s with psutil, and never below the largest child's own VmHWM (ru_maxrss from
wait4), which no sample can miss. Targets (issue 8): each export stage <= 1.5 GiB; export all <= 10 GiB and
<= 45 min.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gguf_export import FTYPES, QUANTIZE, RUNNER, find_converter  # noqa: E402

GIB = 2**30
STAGE_LIMIT, ALL_LIMIT, ALL_MINUTES = 1.5 * GIB, 10 * GIB, 45
MARK = re.compile(r"^\[(\d+/\d+)\] (.+?)(?: \(at [\d:]+\))?$|^\[validate (\d+/\d+)\] (\S+ \S+)")


@dataclass
class Span:
    label: str
    start: float
    end: float = 0.0
    peak: int = 0  # bytes, process tree
    extra: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def tree_rss(p: psutil.Process) -> int:
    total = 0
    for q in [p, *p.children(recursive=True)]:
        try:
            total += q.memory_info().rss
        except psutil.Error:  # a child that just ended
            pass
    return total


def run(cmd: list[str], log: Path, label: str, marks: bool = False) -> list[Span]:
    """Run `cmd`, sampling its process tree's RSS; with marks=True split it at its progress lines.

    Returns the whole run as the first span, then one span per stage/row."""
    whole = Span(label, time.perf_counter())
    spans = [whole]
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        p = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE if marks else f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        proc = psutil.Process(p.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss = tree_rss(proc)
                whole.peak = max(whole.peak, rss)
                if len(spans) > 1:
                    spans[-1].peak = max(spans[-1].peak, rss)
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        if marks:
            for raw in p.stdout:
                f.write(raw)
                f.flush()
                line = raw.decode("utf-8", "replace").strip()
                m = MARK.match(line)
                if m:
                    now = time.perf_counter()
                    if len(spans) > 1 and not spans[-1].end:
                        spans[-1].end = now
                    name = m.group(2) or m.group(4)
                    if not (len(spans) > 1 and spans[-1].label == name):  # a row's start and end line
                        spans.append(Span(name, now))
                    if m.group(3) and any(
                        w in line for w in ("pass", "fail", "error", "cached", "reference in")
                    ):
                        spans[-1].extra.append(line.split(name, 1)[1].split("(at")[0].strip())
                        spans[-1].end = now
                elif len(spans) > 1 and line.startswith("done in"):
                    spans[-1].end = time.perf_counter()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    whole.end = time.perf_counter()
    if len(spans) > 1 and not spans[-1].end:
        spans[-1].end = whole.end
    whole.peak = max(
        whole.peak, ru.ru_maxrss * 1024
    )  # children's high-water mark (wait4 reports the largest)
    if p.returncode != 0:
        whole.extra.append(f"exit code {p.returncode} (see {log})")
    return spans


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="checkpoint folder (benchmarks/make_youtu_2b.py)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (outputs, logs)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama_model_quantize threads")
    ap.add_argument("--skip-stages", action="store_true", help="no standalone stage runs")
    ap.add_argument("--stage", action="append", help="only this standalone stage, e.g. 'export onnx int4'")
    ap.add_argument("--skip-all", action="store_true", help="no `export all` run")
    ap.add_argument("--skip-llamacpp", action="store_true", help="no llama.cpp convert + quantize anchor")
    ap.add_argument("--keep", action="store_true", help="keep the outputs (default: removed after timing)")
    ap.add_argument("--all-args", default="", help="extra arguments for `export all`, e.g. '--all-rows'")
    args = ap.parse_args()
    work, log = args.out, args.out / "bench.log"
    work.mkdir(parents=True, exist_ok=True)
    ep = [sys.executable, "-m", "edgeport.cli"]
    ck = str(args.model)
    results: list[tuple[str, Span]] = []

    def show(group: str, s: Span) -> None:
        results.append((group, s))
        note = f" {'; '.join(s.extra)}" if s.extra else ""
        print(f"  {s.label}: {s.seconds:.1f} s, peak {s.peak / GIB:.2f} GiB{note}", flush=True)

    if not args.skip_all:
        print("edgeport export all (build + validation report) ...", flush=True)
        out = work / "export"
        cmd = ep + ["export", "all", ck, "--out", str(out), *args.all_args.split()]
        spans = run(cmd, log, "export all (whole command)", marks=True)
        show("export all", spans[0])
        for s in spans[1:]:
            show("in export all", s)
        between = spans[0].seconds - sum(s.seconds for s in spans[1:])
        print(f"  (outside the stages and rows: {between:.1f} s: start-up, manifest and input checks)")
        report = out / "report.md"
        if report.is_file():
            print("\n" + report.read_text())
            shutil.copyfile(report, work / "report.md")
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    if not args.skip_stages:
        print("edgeport, each stage alone ...", flush=True)
        q = {s: work / f"quantized-{s}" for s in ("q8_0", "q4_0")}
        stages = [
            ("quantize q8_0", ["quantize", ck, "--scheme", "q8_0", "--out", str(q["q8_0"])]),
            ("quantize q4_0", ["quantize", ck, "--scheme", "q4_0", "--out", str(q["q4_0"])]),
            ("export gguf f16", ["export", "gguf", ck, "-o", str(work / "f16.gguf"), "-t", "f16"]),
            ("export gguf q8_0", ["export", "gguf", str(q["q8_0"]), "-o", str(work / "q8_0.gguf")]),
            ("export gguf q4_0", ["export", "gguf", str(q["q4_0"]), "-o", str(work / "q4_0.gguf")]),
            ("export onnx fp32", ["export", "onnx", ck, "--out", str(work / "onnx-fp32"), "-p", "fp32"]),
            (
                "export onnx int8",
                ["export", "onnx", str(q["q8_0"]), "--out", str(work / "onnx-int8"), "-p", "int8"],
            ),
            (
                "export onnx int4",
                ["export", "onnx", str(q["q4_0"]), "--out", str(work / "onnx-int4"), "-p", "int4"],
            ),
        ]
        if args.stage:  # with the quantize stage whose output a chosen stage reads
            needs = {"export gguf q8_0": "q8_0", "export onnx int8": "q8_0"}
            needs.update({"export gguf q4_0": "q4_0", "export onnx int4": "q4_0"})
            wanted = set(args.stage) | {f"quantize {needs[n]}" for n in args.stage if n in needs}
            stages = [(label, cmd) for label, cmd in stages if label in wanted]
        for label, cmd in stages:
            show("stage alone", run(ep + cmd, log, label)[0])
            if label.startswith("export") and not args.keep:  # disk: 2B outputs add up to ~25 GB
                for p in [work / "f16.gguf", work / "q8_0.gguf", work / "q4_0.gguf", *work.glob("onnx-*")]:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if not args.keep:
            for p in q.values():
                shutil.rmtree(p, ignore_errors=True)

    if not args.skip_llamacpp:
        print("llama.cpp convert_hf_to_gguf.py -> F16, llama_model_quantize -> Q8_0 / Q4_0 ...", flush=True)
        convert = find_converter(None)
        runner = work / "run_convert.py"
        runner.write_text(RUNNER)
        f16 = work / "llamacpp-f16.gguf"
        show(
            "llama.cpp", run([sys.executable, str(runner), str(convert), ck, str(f16)], log, "convert F16")[0]
        )
        for t, ft in FTYPES.items():
            dst = work / f"llamacpp-{t}.gguf"
            cmd = [sys.executable, "-c", QUANTIZE, str(f16), str(dst), str(ft), str(args.threads)]
            show("llama.cpp", run(cmd, log, f"quantize {t.upper()}")[0])
            if not args.keep:
                dst.unlink(missing_ok=True)
        if not args.keep:
            f16.unlink(missing_ok=True)

    print("\n| run | step | wall s | peak RSS GiB | target met | notes |\n|---|---|---:|---:|---|---|")
    for group, s in results:
        if group == "export all":
            ok = s.peak <= ALL_LIMIT and s.seconds <= ALL_MINUTES * 60 and not s.extra
            target = f"{mark(ok)} (<= 10 GiB, <= 45 min)"
        elif group == "stage alone":
            target = f"{mark(s.peak <= STAGE_LIMIT and not s.extra)} (<= 1.5 GiB)"
        else:
            target = ""
        print(
            f"| {group} | {s.label} | {s.seconds:.1f} | {s.peak / GIB:.2f} | {target} | {'; '.join(s.extra)} |"
        )
    print(f"\nmachine: {os.cpu_count()} cores, {psutil.virtual_memory().total / GIB:.0f} GiB; log: {log}")


if __name__ == "__main__":
    main()
