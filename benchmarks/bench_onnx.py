"""ORT int4 (MatMulNBits, accuracy_level 4) vs llama.cpp Q4_0 on the same quantized weights: prefill and decode
tok/s side by side at each thread count (interleaved repeats, medians), the fraction of the memory-bandwidth
bound each reaches in decode (weight bytes read per token / measured copy bandwidth), plus ONNX export time and
peak RSS. Each side computes only the logits it needs: ORT's prefill passes logits_to_keep=1, llama.cpp's asks
for the last row only. llama.cpp runs at its fastest CPU settings for this model: repacked Q4_0 kernels, flash
attention on, f16 cache (ORT's latent cache is float16 too).

Models: the embedded default model (quantized q4_0 with RTN), when it is built; and the real Youtu-LLM-2B shape
with random weights, written directly as a q4_0 quantized checkpoint (random codes and scales chosen per tensor
by quant's policy, so both exporters pack identical integers; generating 2B float weights and rounding them
would only cost time).

    python benchmarks/bench_onnx.py [--threads 1 2] [--prompt 128] [--decode 32] [--repeats 5] [--skip-2b]
        [--work DIR [--reuse]] [--compare LABEL=ONNX_DIR ...]

--compare times further ONNX exports of the same checkpoint in the same interleaved loop (e.g. an export made
by an older edgeport, to measure a graph change under identical machine load).

Measured 2026-12-06 on the 2-core x86 (AVX512-VNNI) dev box, machine quiet (training paused), 2B shape, prompt 128,
32 decoded tokens, 5 interleaved repeats (`--work DIR --reuse --skip-default`):

    threads  ORT int4 prefill / decode   llama.cpp Q4_0 prefill / decode   ratio prefill / decode
    1        36.1 / 10.88 tok/s          36.6 / 13.56 tok/s                0.99x / 0.80x
    2        67.9 / 15.40 tok/s          70.4 / 22.31 tok/s                0.96x / 0.69x

Decode streams the weights, and onnxruntime streams more of them: MatMulNBits repacks its codes at session start
into MLAS' CompInt8 layout (an fp32 scale and an fp32 block sum per 32 weights: 24 bytes where Q4_0 has 18), so
ORT reads 1,561 MiB per token (1,327 MiB in the file) where llama.cpp reads 1,178 (ratio 0.75). Both stream at
the machine's speed (ORT 17.8 / 25.2 GB/s, llama.cpp 16.7 / 27.6 GB/s at 1 / 2 threads; numpy copy 28.6 GB/s),
so the decode ratio is the bytes ratio: at the full copy bandwidth ORT would reach 17.5 tok/s, 0.78x of
llama.cpp's measured 2-thread decode. benchmarks/ort_nbits_layout.py shows the same on bare MatMulNBits GEMVs:
the time per step follows the packed bytes across block sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_random_2b(folder: Path, seed: int = 0, shape: str = "youtu-2b") -> Path:
    """A q4_0 quantized checkpoint of the Youtu-LLM-2B shape (or another preset) with random codes (docs/QUANT_FORMAT.md)."""
    from edgeport.checkpoint import expected_shapes
    from edgeport.model import preset
    from edgeport.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
    from quant.checkpoint import QuantTensor, write_quantized
    from quant.policy import choose

    if (folder / "quant_config.json").is_file():
        return folder
    src = folder.with_name(folder.name + "-src")
    src.mkdir(parents=True, exist_ok=True)
    save_tokenizer(train_tokenizer(["edgeport benchmark text 0123456789 東京 🙂"] * 50, vocab_size=400), src)
    tok = load_tokenizer(src)
    cfg = preset(shape, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, dtype="float32")
    (src / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    rng = np.random.default_rng(seed)
    H, dn, dv, r = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    shapes = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith("kv_b_proj.weight"):
            p = name[: -len("kv_b_proj.weight")]
            shapes[p + "k_b"], shapes[p + "v_b"] = (H * r, dn), (H * dv, r)
        else:
            shapes[name] = shape

    def tensors():
        for name, shape in shapes.items():
            fmt, why = choose(name, shape, "q4_0", cfg.tie_word_embeddings)
            if fmt == "f32":
                yield name, np.ones(shape, np.float32), why
                continue
            rows, cols = shape
            if fmt == "q4_0":
                codes = rng.integers(0, 16, size=shape, dtype=np.uint8)
            else:
                codes = rng.integers(-127, 128, size=shape, dtype=np.int8)
            std = 1.0 if "embed" in name else 0.02  # scale so a random code's value is ~ N(0, std)
            scale = std / (4.6 if fmt == "q4_0" else 73.0)
            scales = np.full((rows, cols // 32), scale, np.float16)
            yield name, QuantTensor(fmt, codes, scales), why

    return write_quantized(folder, src, tensors(), "q4_0", "random")


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


class OrtTimer:
    def __init__(self, onnx_dir: Path, threads: int) -> None:
        from runtimes.ort import OrtCpu

        self.rt = OrtCpu(onnx_dir, threads=threads)
        self.rt.step(np.asarray([[1, 2, 3, 4]]), self.rt.empty_cache())  # warm-up

    def close(self) -> None:
        self.rt.close()

    def run(self, prompt: list[int], n_decode: int) -> tuple[float, float]:
        rt = self.rt
        t = time.perf_counter()
        logits, cache = rt.step(np.asarray([prompt]), rt.empty_cache(), last_only=True)
        prefill = len(prompt) / (time.perf_counter() - t)
        nxt = int(logits[0, -1].argmax())
        t = time.perf_counter()
        for _ in range(n_decode):
            logits, cache = rt.step(np.asarray([[nxt]]), cache)
            nxt = int(logits[0, -1].argmax())
        return prefill, n_decode / (time.perf_counter() - t)


class LlamaTimer:
    def __init__(self, gguf: Path, threads: int, n_ctx: int) -> None:
        from runtimes.llamacpp import LlamaCpp

        self.rt = LlamaCpp(gguf, n_threads=threads, n_ctx=n_ctx, flash_attn=True)
        self.rt._clear()
        self.rt._decode([1, 2, 3, 4], 0, all_logits=False)  # warm-up

    def close(self) -> None:
        self.rt.close()

    def run(self, prompt: list[int], n_decode: int) -> tuple[float, float]:
        rt = self.rt
        rt._clear()
        t = time.perf_counter()
        rt._decode(prompt, 0, all_logits=False)
        prefill = len(prompt) / (time.perf_counter() - t)
        pos, nxt = len(prompt), int(rt._row(-1).argmax())
        t = time.perf_counter()
        for _ in range(n_decode):
            rt._decode([nxt], pos, all_logits=False)
            nxt, pos = int(rt._row(-1).argmax()), pos + 1
        return prefill, n_decode / (time.perf_counter() - t)


def side_by_side(
    onnx_dirs: dict[str, Path], gguf: Path, prompt: list[int], threads: int, args: argparse.Namespace
) -> dict[str, dict]:
    """All runtimes loaded at once and timed alternately, repeat by repeat, so that load from other processes
    on a shared machine hits them alike; medians over the repeats."""
    timers: dict[str, OrtTimer | LlamaTimer] = {k: OrtTimer(d, threads) for k, d in onnx_dirs.items()}
    timers["llama"] = LlamaTimer(gguf, threads, len(prompt) + args.decode + 8)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in timers}
    for i in range(args.repeats):
        for k, timer in timers.items():
            runs[k].append(timer.run(prompt, args.decode))
            print(
                f"   {threads} thr, repeat {i} {k:8s}: prefill {runs[k][-1][0]:7.2f} tok/s, "
                f"decode {runs[k][-1][1]:6.2f} tok/s",
                flush=True,
            )
    for timer in timers.values():
        timer.close()
    return {
        k: {"prefill_tok_s": _median([r[0] for r in v]), "decode_tok_s": _median([r[1] for r in v])}
        for k, v in runs.items()
    }


def timed_export(qdir: Path, out: Path) -> dict[str, float]:
    """ONNX int4 export (with the .ort conversion) in a child process: wall seconds and peak RSS."""
    code = (
        "import resource, sys, time; from edgeport.export.onnx import export_onnx; t = time.time(); "
        f"export_onnx({str(qdir)!r}, {str(out)!r}, 'int4', progress=False); "
        "print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip().splitlines()[-1])
    secs, rss_kib = res.stdout.split()[-2:]
    return {"export_s": float(secs), "export_peak_rss_gib": int(rss_kib) / 2**20}


def run_model(label: str, qdir: Path, work: Path, args: argparse.Namespace) -> dict:
    from edgeport.checkpoint import folder_size, load_config
    from edgeport.export.gguf import export_gguf

    print(f"== {label}: {qdir}", flush=True)
    onnx_dir = work / f"{label}-onnx-int4"
    if args.reuse and (onnx_dir / "model.onnx").is_file():
        exp = {"export_s": float("nan"), "export_peak_rss_gib": float("nan")}
    else:
        exp = timed_export(qdir, onnx_dir)
    print(
        f"   onnx export {exp['export_s']:.1f} s, peak RSS {exp['export_peak_rss_gib']:.2f} GiB", flush=True
    )
    gguf = work / f"{label}-q4_0.gguf"
    t = time.time()
    if not (args.reuse and gguf.is_file()):
        with (
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stderr(devnull),
        ):  # no progress bar in the log
            export_gguf(qdir, gguf, "q4_0")
    gguf_s = time.time() - t
    vocab = load_config(qdir).vocab_size
    rng = np.random.default_rng(1)
    prompt = rng.integers(10, min(vocab, 400), size=args.prompt).tolist()
    print(f"   gguf export {gguf_s:.1f} s", flush=True)
    from edgeport.bench import gguf_weight_bytes, memory_bandwidth, onnx_bytes

    onnx_dirs = {"ort": onnx_dir, **dict(args.compare)}
    bw = memory_bandwidth()["copy_gbps_best"] * 1e9  # bytes/s
    # what each side streams per decoded token: llama.cpp its blocks as stored; onnxruntime its MatMulNBits
    # weights as MLAS repacks them at session start (edgeport.bench.mlas_packed_bytes), not their file size
    files = {k: onnx_bytes(d)[0] for k, d in onnx_dirs.items()}
    read = {k: onnx_bytes(d, mlas_layout=True)[0] for k, d in onnx_dirs.items()} | {
        "llama": gguf_weight_bytes(gguf)
    }
    kv = {k: onnx_bytes(d)[1] for k, d in onnx_dirs.items()}
    print(
        f"   copy bandwidth {bw / 1e9:.1f} GB/s; weight MiB streamed per token: "
        + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in read.items())
        + " (ONNX file: "
        + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in files.items())
        + f"); bytes ratio llama/ort {read['llama'] / read['ort']:.2f}"
        + "; ONNX KV bytes/token: "
        + ", ".join(f"{k} {v}" for k, v in kv.items()),
        flush=True,
    )
    row = {
        "model": label,
        **exp,
        "gguf_export_s": gguf_s,
        "onnx_mib": (onnx_dir / "model.onnx").stat().st_size / 2**20
        + (
            (onnx_dir / "model.onnx.data").stat().st_size / 2**20
            if (onnx_dir / "model.onnx.data").exists()
            else 0
        ),
        "ort_mib": (onnx_dir / "model.ort").stat().st_size / 2**20
        if (onnx_dir / "model.ort").exists()
        else 0,
        "gguf_mib": gguf.stat().st_size / 2**20,
        "quantized_ckpt_mib": folder_size(qdir) / 2**20,
        "copy_gbps": bw / 1e9,
        "weight_bytes_per_token": read,
        "onnx_file_weight_bytes_per_token": files,
        "onnx_kv_bytes_per_token": kv,
        "threads": {},
    }
    for threads in args.threads:
        res = side_by_side(onnx_dirs, gguf, prompt, threads, args)
        for k, r in res.items():
            r["bound_fraction"] = r["decode_tok_s"] * read[k] / bw  # of the copy-bandwidth decode bound
        row["threads"][threads] = res
        llama = res["llama"]
        lines = [
            f"   {threads} thread(s){'':8s} {'prefill tok/s':>14s} {'decode tok/s':>13s} {'bound':>6s} {'GB/s':>6s}"
        ]
        for k, r in res.items():
            lines.append(
                f"   {k:18s} {r['prefill_tok_s']:14.1f} {r['decode_tok_s']:13.2f} {r['bound_fraction']:6.1%}"
                f" {r['decode_tok_s'] * read[k] / 1e9:6.1f}"
            )
        for k, r in res.items():
            if k != "llama":
                lines.append(
                    f"   ratio {k}/llama: prefill {r['prefill_tok_s'] / llama['prefill_tok_s']:.2f}x, "
                    f"decode {r['decode_tok_s'] / llama['decode_tok_s']:.2f}x"
                )
        print("\n".join(lines), flush=True)
    return row


def _labelled_dir(text: str) -> tuple[str, Path]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not (Path(folder) / "model.onnx").is_file():
        raise argparse.ArgumentTypeError(f"expected LABEL=ONNX_DIR (a folder with model.onnx), got {text!r}")
    return label, Path(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-2b", action="store_true")
    ap.add_argument(
        "--reuse", action="store_true", help="Reuse exports already in --work (time runtimes only)."
    )
    ap.add_argument("--shape", default="youtu-2b", help="Preset of the random model (tiny for a smoke run).")
    ap.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temp folder).")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    ap.add_argument(
        "--compare",
        type=_labelled_dir,
        action="append",
        default=[],
        metavar="LABEL=ONNX_DIR",
        help="Another ONNX export of the same checkpoint, timed in the same interleaved loop.",
    )
    ap.add_argument("--skip-default", action="store_true", help="Only the random 2B-shape model.")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgeport-bench-onnx-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"threads={args.threads} prompt={args.prompt} decode={args.decode} repeats={args.repeats} work={work}"
    )
    rows = []
    try:
        if args.skip_default:
            raise RuntimeError("--skip-default")
        from edgeport.default_model import default_model_path
        from edgeport.quantize import quantize_checkpoint

        default = default_model_path()
        qdir = work / "default-q4_0"
        if not qdir.exists():
            quantize_checkpoint(default, qdir, scheme="q4_0", method="rtn", progress=False)
        rows.append(run_model("default", qdir, work, args))
    except Exception as e:  # noqa: BLE001 - the default model may not be built yet
        print(f"== default model skipped: {e}")
    if not args.skip_2b:
        t = time.time()
        qdir = make_random_2b(work / f"{args.shape}-random-q4_0", shape=args.shape)
        print(f"({args.shape} random q4_0 checkpoint ready in {time.time() - t:.0f} s)")
        rows.append(run_model(args.shape, qdir, work, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
