"""edgeport's GGUF export vs llama.cpp's own path, on a Youtu-LLM-2B-shaped checkpoint, side by side.

    python benchmarks/make_youtu_2b.py /tmp/youtu-2b
    python benchmarks/bench_gguf_export.py /tmp/youtu-2b --work /tmp/bench-gguf

llama.cpp's path: convert_hf_to_gguf.py (from the llama-cpp-python 0.3.36 sdist) -> F16 GGUF, then
llama_model_quantize -> Q8_0 / Q4_0. edgeport's path: `edgeport export gguf -t q8_0|q4_0` straight from the
checkpoint (and -t f16 for the like-for-like F16 comparison). Every step runs as its own child process; wall time
and peak RSS (the child's ru_maxrss from wait4) are measured. Then decode tok/s and KV-cache bytes per token of
the results in llama.cpp, and a quality line on the embedded default model: KL vs fp32 of edgeport Q4_0 RTN,
edgeport Q4_0 GPTQ (`edgeport quantize --method gptq`) and llama.cpp's own Q4_0 (llama_model_quantize of F16).

Targets: edgeport peak RSS <= 1/2 of the converter's at F16; edgeport total time <= convert + quantize.
The converter does not know this synthetic tokenizer's pre-tokenizer hash, so the runner tells it "youtu" (the
name it uses for Youtu-LLM); nothing else of it is changed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

RUNNER = """
import sys
convert, model, out = sys.argv[1:4]
root = __import__("pathlib").Path(convert).parent
sys.path[:0] = [str(root), str(root / "gguf-py")]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "youtu"
sys.argv = [convert, model, "--outtype", "f16", "--outfile", out]
import runpy
runpy.run_path(convert, run_name="__main__")
"""
QUANTIZE = """
import sys, llama_cpp
src, dst, ftype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.nthread = ftype, threads
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p))
"""
FTYPES = {"q8_0": 7, "q4_0": 2}


def find_converter(hint: Path | None) -> Path:
    """convert_hf_to_gguf.py of the llama-cpp-python sdist: given, already extracted, or from /tmp/lcp/*.tar.gz."""
    for c in [
        hint,
        Path("/tmp/lcp_src/convert_hf_to_gguf.py"),
        Path("/tmp/lcp/convert/convert_hf_to_gguf.py"),
    ]:
        if c is not None and c.is_file():
            return c
    for sdist in sorted(Path("/tmp/lcp").glob("llama_cpp_python-*.tar.gz")):
        dest = Path("/tmp/lcp/convert")
        with tarfile.open(sdist) as tf:
            for m in tf.getmembers():
                rel = m.name.split("/vendor/llama.cpp/", 1)[-1] if "/vendor/llama.cpp/" in m.name else None
                if rel and (rel == "convert_hf_to_gguf.py" or rel.startswith(("conversion/", "gguf-py/"))):
                    m.name = rel
                    tf.extract(m, dest, filter="data")
        return dest / "convert_hf_to_gguf.py"
    sys.exit(
        "llama.cpp's convert_hf_to_gguf.py not found: pip download --no-deps --no-binary :all: "
        "llama-cpp-python==0.3.36 -d /tmp/lcp"
    )


def measured(cmd: list[str], log: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of a child process; its output goes to `log`."""
    with open(log, "ab") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)} (see {log})")
    return dt, ru.ru_maxrss * 1024


def decode_speed(path: Path, threads: int, n_new: int = 32, repack: bool = True) -> tuple[float, int, float]:
    """(decode tok/s, KV bytes/token as llama.cpp stores it, GGUF MiB)."""
    from runtimes.llamacpp import LlamaCpp

    rt = LlamaCpp(path, n_threads=threads, n_ctx=512, repack=repack)
    ids = list(range(1000, 1064))
    rt.generate(ids, 1)  # warm up
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        rt.generate(ids, 1)
        t1 = time.perf_counter()
        rt.generate(ids, n_new + 1)
        times.append((time.perf_counter() - t1) - (t1 - t0))  # minus the prefill
    kv = rt.kv_bytes_per_token()
    rt.close()
    return n_new / statistics.median(times), kv, path.stat().st_size / 2**20


def quality(
    work: Path, threads: int, log: Path, folder: Path | None = None
) -> list[tuple[str, float, float]]:
    """KL(fp32 || artifact) and top-1 agreement on held-out text with the embedded default model."""
    import torch

    from edgeport.checkpoint import load_model
    from edgeport.default_model import default_model_path
    from edgeport.export.gguf import export_gguf
    from edgeport.quantize import calibration_ids, quantize_checkpoint
    from runtimes.llamacpp import LlamaCpp

    folder = folder or default_model_path()
    windows = [[int(i) for i in w] for w in calibration_ids(folder, None, 1024, 256, split="val")][:4]
    model = load_model(folder)
    with torch.no_grad():
        refs = [model(torch.tensor([w]))[0].double() for w in windows]

    f16 = export_gguf(folder, work / "default-f16.gguf", "f16", progress=False)
    lq = work / "default-llamacpp-q4_0.gguf"
    measured([sys.executable, "-c", QUANTIZE, str(f16), str(lq), "2", str(threads)], log)
    rtn = export_gguf(folder, work / "default-rtn-q4_0.gguf", "q4_0", progress=False)
    gdir = quantize_checkpoint(
        folder, work / "default-gptq-q4_0", scheme="q4_0", method="gptq", progress=False
    )
    gptq = export_gguf(gdir, work / "default-gptq-q4_0.gguf", progress=False)
    rows = []
    for label, path in [
        ("edgeport Q4_0 RTN", rtn),
        ("edgeport Q4_0 GPTQ", gptq),
        ("llama.cpp Q4_0 (anchor)", lq),
    ]:
        rt = LlamaCpp(path, n_threads=threads, n_ctx=512)
        kls, top1 = [], []
        for w, ref in zip(windows, refs, strict=True):
            got = torch.from_numpy(rt.logits(w)).double()
            p, q = ref.log_softmax(-1), got.log_softmax(-1)
            kls.append((p.exp() * (p - q)).sum(-1).mean().item())
            top1.append((ref.argmax(-1) == got.argmax(-1)).double().mean().item())
        rt.close()
        rows.append((label, float(np.mean(kls)), float(np.mean(top1))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, nargs="?", help="checkpoint folder (benchmarks/make_youtu_2b.py)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-gguf"))
    ap.add_argument("--convert", type=Path, default=None, help="llama.cpp's convert_hf_to_gguf.py")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--quality-model", type=Path, default=None, help="instead of the embedded default model")
    ap.add_argument("--quality-only", action="store_true", help="only the default-model quality line")
    args = ap.parse_args()
    work, log = args.work, args.work / "bench.log"
    work.mkdir(parents=True, exist_ok=True)
    if args.quality_only:
        return print_quality(work, args.threads, log, args.quality_model)
    convert = find_converter(args.convert)
    runner = work / "run_convert.py"
    runner.write_text(RUNNER)
    ep = [sys.executable, "-m", "edgeport.cli", "export", "gguf", str(args.model)]

    res: dict[str, tuple[float, int]] = {}
    print("edgeport export gguf F16 / Q8_0 / Q4_0 ...", flush=True)
    for t in ("f16", "q8_0", "q4_0"):
        res[f"ep_{t}"] = measured(ep + ["-o", str(work / f"edgeport-{t}.gguf"), "-t", t], log)
        print(f"  {t}: {res[f'ep_{t}'][0]:.1f} s, {res[f'ep_{t}'][1] / 2**20:.0f} MiB", flush=True)
    print("llama.cpp convert_hf_to_gguf.py -> F16 ...", flush=True)
    f16 = work / "llamacpp-f16.gguf"
    res["lc_f16"] = measured([sys.executable, str(runner), str(convert), str(args.model), str(f16)], log)
    print(f"  f16: {res['lc_f16'][0]:.1f} s, {res['lc_f16'][1] / 2**20:.0f} MiB", flush=True)
    for t, ft in FTYPES.items():
        cmd = [
            sys.executable,
            "-c",
            QUANTIZE,
            str(f16),
            str(work / f"llamacpp-{t}.gguf"),
            str(ft),
            str(args.threads),
        ]
        res[f"lc_{t}"] = measured(cmd, log)
        print(f"  quantize {t}: {res[f'lc_{t}'][0]:.1f} s, {res[f'lc_{t}'][1] / 2**20:.0f} MiB", flush=True)

    mib = 2**20
    print(
        "\n| step | edgeport s | edgeport peak RSS MiB | llama.cpp s | llama.cpp peak RSS MiB | time ratio | RSS ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    (et, er), (lt, lr) = res["ep_f16"], res["lc_f16"]
    print(
        f"| F16 (convert) | {et:.1f} | {er / mib:.0f} | {lt:.1f} | {lr / mib:.0f} | {et / lt:.2f} | {er / lr:.2f} |"
    )
    for t in FTYPES:
        (et, er) = res[f"ep_{t}"]
        lt = res["lc_f16"][0] + res[f"lc_{t}"][0]
        lr = max(res["lc_f16"][1], res[f"lc_{t}"][1])
        print(
            f"| {t.upper()} (llama.cpp: convert + quantize) | {et:.1f} | {er / mib:.0f} | {lt:.1f} | {lr / mib:.0f} "
            f"| {et / lt:.2f} | {er / lr:.2f} |"
        )
    ok_rss = res["ep_f16"][1] <= 0.5 * res["lc_f16"][1]
    ok_t = all(res[f"ep_{t}"][0] <= res["lc_f16"][0] + res[f"lc_{t}"][0] for t in FTYPES)
    print(
        f"\ntarget peak RSS <= 1/2 converter at F16: {'met' if ok_rss else 'NOT met'}; "
        f"target time <= convert + quantize: {'met' if ok_t else 'NOT met'}"
    )

    if not args.skip_decode:
        from edgeport.checkpoint import load_config

        cfg = load_config(args.model)
        exp = cfg.kv_bytes_per_token(2)["expanded"]
        print(
            f"\n| GGUF (llama.cpp CPU, {args.threads} threads) | MiB | decode tok/s | KV bytes/token | vs expanded |"
        )
        print("|---|---|---|---|---|")
        for label, name, repack in [
            ("edgeport Q8_0", "edgeport-q8_0", True),
            ("llama.cpp Q8_0", "llamacpp-q8_0", True),
            ("edgeport Q4_0", "edgeport-q4_0", True),
            ("edgeport Q4_0, no repack", "edgeport-q4_0", False),
            ("llama.cpp Q4_0", "llamacpp-q4_0", True),
        ]:
            tps, kv, size = decode_speed(work / f"{name}.gguf", args.threads, repack=repack)
            print(f"| {label} | {size:.0f} | {tps:.2f} | {kv:,} | {exp / kv:.1f}x smaller |", flush=True)

    if not args.skip_quality:
        print_quality(work, args.threads, log, args.quality_model)


def print_quality(work: Path, threads: int, log: Path, folder: Path | None = None) -> None:
    try:
        rows = quality(work, threads, log, folder)
    except Exception as e:  # the default model may not be built on this machine
        print(f"\nquality: skipped ({type(e).__name__}: {e})")
        return
    print(f"\n| {folder or 'default model'}, held-out text | KL vs fp32 | top-1 agreement |\n|---|---|---|")
    for label, kl, top1 in rows:
        print(f"| {label} | {kl:.4f} | {top1:.3f} |")


if __name__ == "__main__":
    main()
