"""Why onnxruntime's int4 decode trails llama.cpp's Q4_0 on x86: the bytes its MatMulNBits kernel streams.

A decoded token multiplies one activation row by every weight matrix, so on a CPU it is bound by the bytes of the
weights it reads. llama.cpp's Q4_0 reads 18 bytes per block of 32 weights (16 bytes of codes + an fp16 scale).
onnxruntime's MatMulNBits at accuracy_level 4 (int8 compute, what edgeport exports) repacks its codes at session
start into MLAS' CompInt8 layout, which keeps the codes plus an fp32 scale and an fp32 block sum per block
(onnxruntime/core/mlas/lib/sqnbitgemm_kernel_avx512.cpp, SQ4BitGemmPackQuantBDataSize): 24 bytes per 32 weights,
1.33x Q4_0. Only a larger block shrinks that overhead (block 128: 72 bytes per 128 weights = Q4_0's 18 per 32), and a
larger block is a different quantization, not Q4_0's codes.

This script times one decode step's worth of MatMulNBits GEMVs (M = 1) over the matrix shapes of Youtu-LLM-2B's
32 layers (q_a, q_b, kv_a, o, gate, up, down; random codes, nothing else in the graph) for several block sizes,
interleaved, medians, and prints each one's MLAS-packed bytes and the GB/s it streams them at. If the time per step
follows the packed bytes (equal GB/s), the layout, not the graph around it, sets ORT's decode speed.

    python benchmarks/ort_nbits_layout.py [--threads 1 2] [--blocks 32 64 128] [--layers 32] [--repeats 7]

Measured 2026-12-06 (2-core x86 AVX512-VNNI, onnxruntime 1.32.0, machine quiet, `--repeats 7 --steps 4`):

    threads  block  ms/step  packed MiB  x Q4_0 bytes  GB/s streamed
    1        32     60.6     1,167       1.33          20.2
    1        64     51.3       972       1.11          19.9
    1        128    40.4       875       1.00          22.7
    2        32     50.7     1,167       1.33          24.1
    2        64     43.7       972       1.11          23.3
    2        128    38.8       875       1.00          23.7

The GB/s stay put while the bytes change: the kernel streams the packed layout at the machine's speed, and block
32 (the only block size whose codes are Q4_0's) costs 1.33x the bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgeport.bench import mlas_packed_bytes  # noqa: E402
from quant.formats import BLOCK, Q4_0  # noqa: E402

# (K, N) of each weight matrix of one Youtu-LLM-2B decoder layer (hidden 2048, q_lora 1536, 16 heads x 192 query
# dims, kv_lora 512 + rope 64, intermediate 6144)
LAYER = [(2048, 1536), (1536, 3072), (2048, 576), (2048, 2048), (2048, 6144), (2048, 6144), (6144, 2048)]


def q4_0_bytes(K: int, N: int) -> int:
    """llama.cpp Q4_0: 18 bytes per 32 weights."""
    return N * (K // BLOCK) * Q4_0.block_bytes


def build(path: Path, block: int, layers: int, seed: int = 0) -> int:
    """A graph of `layers` x LAYER MatMulNBits nodes, each fed its own input row; returns the packed bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, inputs, outputs, packed = [], [], {}, [], 0
    for i in range(layers):
        for j, (K, N) in enumerate(LAYER):
            x = f"x{K}"
            if x not in inputs:
                inputs[x] = helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, K])
            nb = K // block
            codes = rng.integers(0, 256, size=(N, nb, block // 2), dtype=np.uint8)
            scales = np.full((N * nb,), 0.01, np.float32)
            inits += [
                numpy_helper.from_array(codes, f"w{i}_{j}"),
                numpy_helper.from_array(scales, f"s{i}_{j}"),
            ]
            out = f"y{i}_{j}"
            nodes.append(
                helper.make_node(
                    "MatMulNBits",
                    [x, f"w{i}_{j}", f"s{i}_{j}"],
                    [out],
                    domain="com.microsoft",
                    K=K,
                    N=N,
                    bits=4,
                    block_size=block,
                    accuracy_level=4,
                )
            )
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, N]))
            packed += mlas_packed_bytes(K, N, block, 4)
    graph = helper.make_graph(nodes, f"nbits_b{block}", list(inputs.values()), outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
    return packed


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=8, help="decode steps per timed repeat")
    ap.add_argument("--work", type=Path, default=None, help="keep the test models here (reused when present)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgeport-nbits-"))
    work.mkdir(parents=True, exist_ok=True)
    q4 = args.layers * sum(q4_0_bytes(K, N) for K, N in LAYER)
    packed = {}
    for b in args.blocks:
        path = work / f"L{args.layers}-b{b}.onnx"
        packed[b] = (
            build(path, b, args.layers)
            if not path.is_file()
            else sum(args.layers * mlas_packed_bytes(K, N, b, 4) for K, N in LAYER)
        )
    feeds = {f"x{K}": np.random.default_rng(1).standard_normal((1, K)).astype(np.float32) for K, _ in LAYER}
    print(f"{args.layers} layers of Youtu-LLM-2B matrices; Q4_0 would read {q4 / 2**20:.0f} MiB per step")
    for threads in args.threads:
        sessions = {}
        for b in args.blocks:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.log_severity_level = 3
            sessions[b] = ort.InferenceSession(
                str(work / f"L{args.layers}-b{b}.onnx"), so, providers=["CPUExecutionProvider"]
            )
            sessions[b].run(None, feeds)
        times: dict[int, list[float]] = {b: [] for b in args.blocks}
        for _ in range(args.repeats):  # interleaved: every block size in every repeat
            for b, s in sessions.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    s.run(None, feeds)
                times[b].append((time.perf_counter() - t) / args.steps)
        base = statistics.median(times[args.blocks[0]])
        print(
            f"\n{threads} thread(s)   ms/step   packed MiB   x Q4_0 bytes   GB/s streamed   time vs block {args.blocks[0]}"
        )
        for b in args.blocks:
            ms = statistics.median(times[b])
            print(
                f"  block {b:4d} {ms * 1e3:9.2f} {packed[b] / 2**20:12.0f} {packed[b] / q4:14.2f}"
                f" {packed[b] / ms / 1e9:15.1f} {ms / base:18.2f}"
            )
        del sessions
    if args.work is None:
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
