"""`edgeport bench DIR`: speed and memory of every available runtime x artifact of an export.

Per target, in a fresh process (so peak RSS is its own): prefill tok/s and time to first token on a held-out
prompt, decode tok/s (medians over repeats), peak RSS, artifact size, KV-cache bytes per token and weight
bytes read per decoded token. The machine's memory bandwidth comes from a numpy copy test; each decode figure
is also given as a fraction of its bandwidth bound (bandwidth / weight bytes per token).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.io import atomic_file
from edgeport.manifest import artifact_entries, load_manifest, reference_checkpoint, runtime_threads
from runtimes.registry import Artifact, Pair, Target, default_skip, targets

BENCH_FILE = "bench.json"


# ---- the machine ----------------------------------------------------------------------------------------
def memory_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 7) -> dict[str, float]:
    """Best and median GB/s of a numpy copy (one read + one write per byte) over buffers far above cache size."""
    a = np.ones(nbytes // 8, dtype=np.float64)
    b = np.empty_like(a)
    np.copyto(b, a)  # fault the pages in
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - t0)
    gb = 2 * a.nbytes / 1e9
    return {
        "copy_gbps_best": gb / min(times),
        "copy_gbps_median": gb / statistics.median(times),
        "buffer_mib": nbytes / 2**20,
    }


# ---- bytes per token ---------------------------------------------------------------------------------
def gguf_weight_bytes(path: Path) -> int:
    """Bytes of every tensor read per decoded token (the token embedding is one row when a separate head exists)."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(path)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors.get("token_embd.weight", 0)
    return total


def mlas_packed_bytes(K: int, N: int, block: int, bits: int) -> int:
    """Bytes onnxruntime's CPU MatMulNBits streams for one [K, N] weight at accuracy_level 4 (int8 compute) on
    x86: at session start MLAS repacks the codes into its CompInt8 layout, which keeps an fp32 scale and an fp32
    block sum per block of `block` weights (the sums for N rounded up to 16), as SQ4BitGemmPackQuantBDataSize in
    onnxruntime/core/mlas/lib/sqnbitgemm_kernel_avx512.cpp computes it. For bits=4, block=32 that is 24 bytes per
    32 weights where llama.cpp's Q4_0 reads 18."""
    blocks = -(-K // block)
    return N * blocks * block * bits // 8 + N * blocks * 4 + -(-N // 16) * 16 * blocks * 4


def onnx_bytes(folder: Path, mlas_layout: bool = False) -> tuple[int, int]:
    """(weight bytes read per decoded token, KV-cache bytes per token) of an ONNX decoder. mlas_layout: count
    each accuracy_level-4 MatMulNBits weight (also the per-head ones inside LatentAttention) at the size onnxruntime
    repacks it to (mlas_packed_bytes) instead of its size in the file."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    g = model.graph
    sizes = {}
    for init in g.initializer:
        if uses_external_data(init):
            sizes[init.name] = int(next((e.value for e in init.external_data if e.key == "length"), 0))
        else:
            sizes[init.name] = len(init.raw_data) or _numel(init.dims) * _itemsize(init.data_type)
    consumers: dict[str, set[str]] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in sizes:
                consumers.setdefault(name, set()).add(node.op_type if i == 0 else "")
    gather_only = [n for n, ops in consumers.items() if ops and all(op.startswith("Gather") for op in ops)]
    weights = sum(sizes.values()) - sum(sizes[n] for n in gather_only)
    if mlas_layout:
        weights += _mlas_extra(model, sizes)
    kv = 0
    for out in g.output:
        if out.name.startswith("present"):
            t = out.type.tensor_type
            dims = [d.dim_value for d in t.shape.dim]
            # [batch, heads, seq, head] (genai layout): bytes per token = heads * head * itemsize
            if len(dims) == 4 and dims[1] and dims[3]:
                kv += dims[1] * dims[3] * _itemsize(t.elem_type)
            elif dims and dims[-1]:
                kv += dims[-1] * _itemsize(t.elem_type)
    return weights, kv


def _mlas_extra(model: Any, sizes: dict[str, int]) -> int:
    """Packed minus file bytes of every accuracy_level-4 MatMulNBits weight read per token (see onnx_bytes)."""
    from onnx import helper

    def nbits(node: Any) -> tuple[int, int, int, int] | None:
        if node.op_type != "MatMulNBits":
            return None
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        if a.get("accuracy_level") != 4:
            return None
        return a["K"], a["N"], a.get("block_size", 32), a.get("bits", 4)

    functions = {(f.domain, f.name): f for f in model.functions}
    extra = 0
    for node in model.graph.node:
        q = nbits(node)
        if q and node.input[1] in sizes:  # codes and scales are initializers
            extra += mlas_packed_bytes(*q) - sizes[node.input[1]] - sizes.get(node.input[2], 0)
        f = functions.get((node.domain, node.op_type))
        inner = [q for q in map(nbits, f.node) if q] if f else []
        if inner:  # per-head MatMulNBits inside a function, on Slices of its weight inputs
            extra += sum(mlas_packed_bytes(*q) for q in inner)
            made_by = {out: n for n in f.node for out in n.output}
            read = {n.input[i] for n in f.node if nbits(n) for i in (1, 2)}
            formals = {
                made_by[x].input[0] if x in made_by and made_by[x].op_type == "Slice" else x for x in read
            }
            extra -= sum(sizes.get(a, 0) for fo, a in zip(f.input, node.input, strict=False) if fo in formals)
    return extra


def _numel(dims: Any) -> int:
    return math.prod(dims) if dims else 1


def _itemsize(onnx_type: int) -> int:
    import onnx

    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_type)).itemsize


def byte_figures(t: Target, rt: Any) -> tuple[int | None, int | None]:
    """(weight bytes read per decoded token, KV-cache bytes per token) for one target.

    torch reports both itself; llama.cpp measures its own cache (state size per token); ONNX figures come from
    the graph (initializers; `present.*` output widths)."""
    kv = getattr(rt, "kv_bytes_per_token", None)
    kv = kv() if callable(kv) else None
    weights = getattr(rt, "weight_bytes_per_token", None)
    weights = weights() if callable(weights) else None
    a = t.artifact
    if weights is None and a.kind == "gguf":
        weights = gguf_weight_bytes(a.path)
    if a.kind == "onnx":
        w, k = onnx_bytes(a.path)
        weights, kv = weights or w, kv or k
    return weights, kv


def artifact_bytes(t: Target) -> int:
    p = t.artifact.path
    if t.runtime == "ort-mobile" and (p / "model.ort").is_file():
        return (p / "model.ort").stat().st_size
    if p.is_dir() and t.artifact.kind == "onnx":
        return sum(
            f.stat().st_size
            for f in p.iterdir()
            if f.is_file()
            and not f.name.endswith(".ort")
            and not f.name.startswith(("tokenizer", "special_tokens"))
        )
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.suffix == ".safetensors")
    return p.stat().st_size


# ---- one target, in its own process ---------------------------------------------------------------------
def _peak_rss() -> int:
    """Peak resident bytes of this process. On Linux VmHWM (ru_maxrss survives exec, so a spawned child would
    report its parent's peak); elsewhere ru_maxrss (bytes on macOS)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def bench_one(
    pair: Pair, artifact: Artifact, prompt: list[int], new_tokens: int, repeats: int, threads: int
) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if pair.target.startswith("runtimes.torch_ref"):  # only torch runtimes pay for importing torch
        import torch

        torch.set_num_threads(threads)
    t = Target(pair, artifact)
    t0 = time.perf_counter()
    rt = t.build(threads)
    load_s = time.perf_counter() - t0
    rt.generate(prompt[:8], 2, ())  # warm up
    prefill, first, decode = [], [], []
    for _ in range(repeats):
        s = time.perf_counter()
        rt.logits(prompt)
        prefill.append(time.perf_counter() - s)
        s = time.perf_counter()
        rt.generate(prompt, 1, ())
        first.append(time.perf_counter() - s)
        s = time.perf_counter()
        out = rt.generate(prompt, new_tokens, ())
        decode.append((time.perf_counter() - s, first[-1]))
    peak_rss = _peak_rss()  # before byte_figures: its onnx.load of model.onnx is not the runtime's memory
    weights, kv = byte_figures(t, rt)
    rt.close()
    # decode: the time of N tokens minus the time of the first (prefill + 1), per extra token; if timing noise
    # makes that non-positive, fall back to N tokens over the whole time (a lower bound on the decode rate)
    n = len(out)
    per_token = statistics.median((full - one) / max(n - 1, 1) for full, one in decode)
    if per_token <= 0:
        per_token = statistics.median(full for full, _ in decode) / n
    return {
        "load_s": load_s,
        "prefill_tok_s": len(prompt) / statistics.median(prefill),
        "ttft_ms": 1e3 * statistics.median(first),
        "decode_tok_s": 1 / per_token if n > 1 else None,
        "decoded": n,
        "peak_rss_mib": peak_rss / 2**20,
        "weight_bytes_per_token": weights,
        "kv_bytes_per_token": kv,
    }


# ---- the whole export ----------------------------------------------------------------------------------
def bench(
    folder: str | Path,
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    repeats: int = 3,
    threads: int | None = None,
    runtimes: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark an export folder; writes DIR/bench.json and returns it."""
    from rich.progress import Progress
    from tokenizers import Tokenizer

    from edgeport.checkpoint import load_config
    from edgeport.data import heldout_ids

    folder = Path(folder)
    entries = artifact_entries(folder, load_manifest(folder))
    arts = [Artifact(**e) for e in entries]
    checkpoint = reference_checkpoint(folder, entries)
    if not (checkpoint / "tokenizer.json").is_file():
        raise EdgeportError("the reference checkpoint has no tokenizer.json", checkpoint)
    cfg = load_config(checkpoint)
    n = min(prompt_tokens, cfg.max_position_embeddings - new_tokens - 1)
    prompt = heldout_ids(Tokenizer.from_file(str(checkpoint / "tokenizer.json")), n)
    threads = threads or runtime_threads(checkpoint) or min(4, os.cpu_count() or 1)
    bw = memory_bandwidth()
    todo = targets(arts, default_skip)
    if runtimes:
        todo = [t for t in todo if t.runtime in runtimes]
    rows, skipped = [], {}
    ctx = mp.get_context("spawn")
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("bench", total=len(todo))
        for t in todo:
            bar.update(task, description=f"{t.label:<32}")
            row = {
                "runtime": t.runtime,
                "artifact": str(t.artifact.path.relative_to(folder)),
                "precision": t.artifact.precision,
                "file_bytes": artifact_bytes(t),
            }
            ok, why = t.available()
            if not ok:
                skipped.setdefault(t.runtime if not t.pair.available()[0] else t.label, why)
                bar.advance(task)
                continue
            try:
                with ProcessPoolExecutor(
                    1, mp_context=ctx
                ) as pool:  # a fresh process per target: its own peak RSS
                    row.update(
                        pool.submit(
                            bench_one, t.pair, t.artifact, prompt, new_tokens, repeats, threads
                        ).result()
                    )
                if row["kv_bytes_per_token"] is None:
                    row["kv_bytes_per_token"] = cfg.kv_bytes_per_token(4)["latent"]
                w = row["weight_bytes_per_token"]
                if w and row["decode_tok_s"]:
                    row["bound_tok_s"] = bw["copy_gbps_best"] * 1e9 / w
                    row["bw_fraction"] = row["decode_tok_s"] / row["bound_tok_s"]
                row["status"] = "ok"
            except Exception as e:
                row["status"] = "error"
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
            bar.advance(task)
    result = {
        "format": "edgeport-bench",
        "version": 1,
        "export": str(folder.resolve()),
        "machine": {
            "system": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "threads": threads,
            **bw,
        },
        "settings": {"prompt_tokens": len(prompt), "new_tokens": new_tokens, "repeats": repeats},
        "rows": rows,
        "skipped": skipped,
    }
    with atomic_file(folder / BENCH_FILE, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return result


def table(result: dict[str, Any]) -> Any:
    """A rich Table of a bench result (weights B/tok: weight bytes read per decoded token; %BW: decode tok/s as a
    fraction of copy bandwidth / weight bytes per token)."""
    from rich import box
    from rich.table import Table

    m = result["machine"]
    title = f"edgeport bench ({m['system']}, {m['threads']} threads, copy bandwidth {m['copy_gbps_best']:.1f} GB/s)"
    t = Table(title=title, box=box.SIMPLE)
    cols = (
        "runtime",
        "precision",
        "prefill t/s",
        "decode t/s",
        "TTFT ms",
        "RSS MiB",
        "file MiB",
        "KV B/tok",
        "weights B/tok",
        "%BW",
    )
    for col in cols:
        t.add_column(col, justify="left" if col in ("runtime", "precision") else "right", no_wrap=True)
    for r in result["rows"]:
        if r["status"] != "ok":
            t.add_row(r["runtime"], r["precision"], f"[red]{r['error'][:70]}[/]")
            continue
        t.add_row(
            r["runtime"],
            r["precision"],
            f"{r['prefill_tok_s']:.0f}",
            f"{r['decode_tok_s']:.1f}" if r["decode_tok_s"] else "–",
            f"{r['ttft_ms']:.1f}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['file_bytes'] / 2**20:.2f}",
            f"{r['kv_bytes_per_token']:,}",
            f"{r['weight_bytes_per_token']:,}" if r["weight_bytes_per_token"] else "–",
            f"{100 * r['bw_fraction']:.1f}%" if r.get("bw_fraction") else "–",
        )
    return t
