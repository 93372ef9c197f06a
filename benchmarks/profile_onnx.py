"""Where one decoded token's time goes in an ONNX export: onnxruntime's own profiler, per op type.

Runs a prefill of --prompt random tokens, then --decode single-token steps through the latent cache (present.* fed
back as past_key_values.*), with `SessionOptions.enable_profiling`. From the profiler's JSON, for the decode steps
after the first (warm-up): kernel time and node count per op type per token, the heaviest nodes by role (layer
numbers folded, so the 32 gate_proj nodes are one row), and the time per step outside the kernels (the session's
model_run span minus its kernels: thread-pool hand-offs, allocation, copies between ops). A plain timing of the
same steps without the profiler comes first, so the profiler's own overhead can be seen.

    python benchmarks/profile_onnx.py ONNX_DIR [--threads 1 2] [--prompt 128] [--decode 16] [--model model.onnx] [--prefill]

ONNX_DIR is an `edgeport export onnx` folder, e.g. the 2B int4 export that benchmarks/bench_onnx.py writes
(`--work DIR` keeps it as DIR/youtu-2b-onnx-int4).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def session(folder: Path, model: str, threads: int, profile_dir: Path | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if model.endswith(".ort"):
        so.add_session_config_entry("session.load_model_format", "ORT")
    if profile_dir is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_dir / "ort")
    return ort.InferenceSession(str(folder / model), so, providers=["CPUExecutionProvider"])


def prefill_runs(sess, prompt: list[int], n: int) -> list[float]:
    """n + 1 prefills of `prompt` on an empty cache; returns the wall seconds of all but the first."""
    return [decode_run(sess, prompt, 0, keep_prefill=True)[0] for _ in range(n + 1)][1:]


def decode_run(sess, prompt: list[int], n_decode: int, keep_prefill: bool = False) -> list[float]:
    """Prefill, then n_decode greedy steps; returns each decode step's wall seconds (keep_prefill: the
    prefill's too, first)."""
    past = {
        i.name: np.zeros((1, 1, 0, i.shape[-1]), DTYPES[i.type])
        for i in sess.get_inputs()
        if i.name.startswith("past_key_values.")
    }
    names = {i.name for i in [*sess.get_inputs(), *sess.get_overridable_initializers()]}
    outs = [o.name for o in sess.get_outputs()]
    ids, n, times = prompt, 0, []
    for _ in range(n_decode + 1):
        feed = {"input_ids": np.asarray([ids], np.int64), **past}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones((1, n + len(ids)), np.int64)
        if "position_ids" in names:
            feed["position_ids"] = np.arange(n, n + len(ids), dtype=np.int64)[None]
        if "logits_to_keep" in names:  # the next token needs the last row only (as runtimes.ort does)
            feed["logits_to_keep"] = np.asarray(1, np.int64)
        t = time.perf_counter()
        got = dict(zip(outs, sess.run(outs, feed), strict=True))
        times.append(time.perf_counter() - t)
        past = {k: got[k.replace("past_key_values.", "present.")] for k in past}
        n += len(ids)
        ids = [int(got["logits"][0, -1].argmax())]
    return times if keep_prefill else times[1:]


def role(event: dict) -> str:
    """A node name with layer and head numbers folded (model.layers.7.mlp.gate_proj -> model.layers.#.mlp.gate_proj);
    nodes that ORT named itself (inlined function bodies: MatMulNBits_123) get their output shape instead."""
    name = re.sub(r"\d+", "#", event["name"].removesuffix("_kernel_time"))
    if "." not in name:
        name += " -> " + ",".join(
            str(list(s.values())[0]) for s in event["args"].get("output_type_shape", [])
        )
    return name


def parse_profile(path: Path, skip_runs: int) -> dict:
    """Per decode run (model_run spans after the first `skip_runs`): kernel us per op type and per role, node
    counts, run wall us. Returns medians over the runs."""
    events = json.loads(path.read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[skip_runs:]
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = []
    for lo, hi in runs:
        by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        by_role: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for e in kernels:
            if lo <= e["ts"] <= hi:
                op = e["args"].get("op_name", "?")
                by_op[op][0] += e["dur"]
                by_op[op][1] += 1
                r = f"{op} {role(e)}"
                by_role[r][0] += e["dur"]
                by_role[r][1] += 1
        per_run.append((hi - lo, by_op, by_role))

    def med(get) -> float:
        return statistics.median(get(r) for r in per_run)

    ops = {op for _, by_op, _ in per_run for op in by_op}
    roles = {r for _, _, by_role in per_run for r in by_role}
    return {
        "runs": len(per_run),
        "run_us": med(lambda r: r[0]),
        "kernel_us": med(lambda r: sum(v[0] for v in r[1].values())),
        "nodes": med(lambda r: sum(v[1] for v in r[1].values())),
        "ops": {op: (med(lambda r, o=op: r[1][o][0]), med(lambda r, o=op: r[1][o][1])) for op in ops},
        "roles": {x: (med(lambda r, x=x: r[2][x][0]), med(lambda r, x=x: r[2][x][1])) for x in roles},
    }


def report(
    folder: Path, model: str, threads: int, prompt: list[int], n_decode: int, top: int, prefill: bool = False
) -> dict:
    """Decode steps (or, prefill: --decode prefills of the whole prompt) timed plainly, then profiled."""
    runs = prefill_runs if prefill else decode_run
    plain = runs(session(folder, model, threads, None), prompt, n_decode)
    with tempfile.TemporaryDirectory(prefix="edgeport-profile-") as tmp:
        sess = session(folder, model, threads, Path(tmp))
        runs(sess, prompt, n_decode)
        # skip the warm-up: the first prefill, or the prefill + first decode step
        prof = parse_profile(Path(sess.end_profiling()), skip_runs=1 if prefill else 2)
    ms = statistics.median(plain) * 1e3
    what = "prefill" if prefill else "decode step"
    print(f"\n== {folder / model}, {threads} thread(s), past {len(prompt)}..{len(prompt) + n_decode} tokens")
    if prefill:
        print(
            f"prefill of {len(prompt)} tokens without profiler: median {ms:.2f} ms ({len(prompt) * 1e3 / ms:.1f} tok/s)"
        )
    else:
        print(f"decode step without profiler: median {ms:.2f} ms ({1e3 / ms:.1f} tok/s)")
    print(
        f"with profiler: step {prof['run_us'] / 1e3:.2f} ms, kernels {prof['kernel_us'] / 1e3:.2f} ms, "
        f"outside kernels {(prof['run_us'] - prof['kernel_us']) / 1e3:.2f} ms, {prof['nodes']:.0f} nodes per {what}"
    )
    print(f"{'op type':34s} {'ms/run':>9s} {'share':>6s} {'nodes':>6s} {'us/node':>8s}")
    for op, (us, n) in sorted(prof["ops"].items(), key=lambda kv: -kv[1][0]):
        print(f"{op:34s} {us / 1e3:9.3f} {us / prof['kernel_us']:6.1%} {n:6.0f} {us / max(n, 1):8.1f}")
    print(f"top {top} node roles (layer/head numbers folded):")
    for r, (us, n) in sorted(prof["roles"].items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {r[:70]:70s} {us / 1e3:8.3f} ms {n:5.0f} nodes")
    return {"model": str(folder / model), "threads": threads, "step_ms_plain": ms, **prof}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx_dir", type=Path)
    ap.add_argument("--model", default="model.onnx", help="model.onnx or model.ort")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument(
        "--prefill",
        action="store_true",
        help="profile --decode prefills of the prompt instead of decode steps",
    )
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = ap.parse_args()
    cfg = json.loads((args.onnx_dir / "genai_config.json").read_text())["model"]
    prompt = np.random.default_rng(1).integers(10, min(cfg["vocab_size"], 400), size=args.prompt).tolist()
    rows = [
        report(args.onnx_dir, args.model, t, prompt, args.decode, args.top, args.prefill)
        for t in args.threads
    ]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
