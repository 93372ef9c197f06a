"""`edgeport export all`: one checkpoint -> every artifact edgeport ships, plus a manifest and a validation report.

Quantize once, emit many: each scheme is quantized ONCE into DIR/quantized/<scheme>, and both the GGUF and the
ONNX artifact of that precision are packed from those same integer codes.

    DIR/checkpoint/                 the float checkpoint (the reference)
    DIR/quantized/{q8_0,q4_0}/      edgeport quantized checkpoints (docs/QUANT_FORMAT.md)
    DIR/gguf/model-{f16,q8_0,q4_0}.gguf
    DIR/onnx/{fp32,int8,int4}/      model.onnx, model.ort, genai_config.json, tokenizer files
    DIR/manifest.json               what was built from what
    DIR/report.{json,md,png}        `edgeport validate DIR` (the `edgeport export all` command runs it)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from edgeport.checkpoint import TOKENIZER_FILES, load_config, weight_files
from edgeport.errors import EdgeportError
from edgeport.inputs import check_tokenizer_folder, tree_sha256
from edgeport.io import atomic_dir, check_out
from edgeport.manifest import FORMAT, MANIFEST, write_manifest
from quant.policy import onnx_precision

# the quantized schemes `export all` builds (their ONNX precision: quant.policy.onnx_precision)
SCHEMES = ("q8_0", "q4_0")
FORMATS = ("gguf", "onnx")


@dataclass
class Step:
    label: str
    kind: str
    precision: str
    path: str  # relative to the export folder
    source: str  # relative path it is built from
    run: Callable[[Path, Path], Any]  # (source abs path, output abs path)


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Only the checkpoint's own files: config, weights (+ index) and tokenizer files."""
    dst.mkdir(parents=True, exist_ok=True)
    files = [src / "config.json", *weight_files(src), src / "model.safetensors.index.json"]
    files += [src / n for n in TOKENIZER_FILES]
    for f in files:
        if f.is_file():
            shutil.copyfile(f, dst / f.name)


def plan(schemes: list[str], formats: list[str], method: str, progress: bool = True) -> list[Step]:
    """The build steps, in order; each artifact's source is built before it."""

    def quantize(scheme: str) -> Callable[[Path, Path], Any]:
        def run(src: Path, out: Path) -> Any:
            from edgeport.quantize import quantize_checkpoint

            return quantize_checkpoint(src, out, scheme=scheme, method=method, progress=progress)

        return run

    def gguf(kind: str) -> Callable[[Path, Path], Any]:
        def run(src: Path, out: Path) -> Any:
            from edgeport.export.gguf import export_gguf

            return export_gguf(src, out, type=kind, progress=progress)

        return run

    def onnx(precision: str) -> Callable[[Path, Path], Any]:
        def run(src: Path, out: Path) -> Any:
            from edgeport.export.onnx import export_onnx

            return export_onnx(src, out, precision=precision, progress=progress)

        return run

    steps = [Step("checkpoint (float reference)", "checkpoint", "fp32", "checkpoint", "", copy_checkpoint)]
    for s in schemes:
        steps.append(
            Step(f"quantize {s} ({method})", "quantized", s, f"quantized/{s}", "checkpoint", quantize(s))
        )
    if "gguf" in formats:
        steps.append(Step("GGUF f16", "gguf", "f16", "gguf/model-f16.gguf", "checkpoint", gguf("f16")))
        for s in schemes:
            steps.append(Step(f"GGUF {s}", "gguf", s, f"gguf/model-{s}.gguf", f"quantized/{s}", gguf(s)))
    if "onnx" in formats:
        steps.append(Step("ONNX fp32 + .ort", "onnx", "fp32", "onnx/fp32", "checkpoint", onnx("fp32")))
        for s in schemes:
            p = onnx_precision(s)
            steps.append(Step(f"ONNX {p} + .ort", "onnx", p, f"onnx/{p}", f"quantized/{s}", onnx(p)))
    return steps


sha256 = tree_sha256  # the digest edgeport.manifest checks when the export is read


def size(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def clock(seconds: float) -> str:
    """Elapsed time as m:ss (h:mm:ss past an hour), for progress lines."""
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("edgeport", "torch", "onnxruntime", "onnxruntime-genai", "llama-cpp-python", "gguf", "onnx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def export_all(
    model_dir: str | Path,
    out_dir: str | Path,
    schemes: list[str] | None = None,
    formats: list[str] | None = None,
    method: str = "rtn",
    progress: bool = True,
    finish: Callable[[Path], Any] | None = None,
) -> dict[str, Any]:
    """Build every artifact of `model_dir` into `out_dir` (atomically); returns the manifest.

    `finish(folder)` runs on the complete new export before it replaces `out_dir` (the `export all` command
    writes the validation report there), so a kill at any moment leaves the previous export whole. The report
    (`edgeport.validate`, a layer above the exporters) comes from the caller through `finish`."""
    from rich.console import Console

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    schemes = list(SCHEMES) if schemes is None else schemes
    formats = list(FORMATS) if formats is None else formats
    for s in schemes:
        if s not in SCHEMES:
            raise EdgeportError(f"unknown quantization scheme {s!r} (choose from {', '.join(SCHEMES)})")
    for f in formats:
        if f not in FORMATS:
            raise EdgeportError(f"unknown format {f!r} (choose from {', '.join(FORMATS)})")
    load_config(model_dir)  # a clear one-line error before any work
    if not (model_dir / "tokenizer.json").is_file():
        raise EdgeportError(
            "checkpoint has no tokenizer.json (GGUF and ONNX exports need the tokenizer)", model_dir
        )
    check_tokenizer_folder(model_dir, load_config(model_dir).vocab_size)
    check_out(out_dir, folder=True, marker=MANIFEST)  # only an earlier export is ever replaced

    steps = plan(schemes, formats, method, progress)
    entries = []
    started = time.time()
    console = Console(stderr=True, quiet=not progress)
    with atomic_dir(out_dir, marker=MANIFEST) as tmp:
        for i, step in enumerate(steps, 1):
            console.print(
                f"[bold][{i}/{len(steps)}][/] {step.label} [dim](at {clock(time.time() - started)})[/]",
                highlight=False,
            )
            src = tmp / step.source if step.source else model_dir
            out = tmp / step.path
            out.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            step.run(src, out)
            if not out.exists():
                raise EdgeportError(f"{step.label} produced nothing", out)
            entries.append(
                {
                    "kind": step.kind,
                    "precision": step.precision,
                    "path": step.path,
                    "from": step.source or str(model_dir.resolve()),
                    "bytes": size(out),
                    "sha256": sha256(out),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            console.print(
                f"      done in {entries[-1]['seconds']:.1f} s, {entries[-1]['bytes'] / 2**20:,.1f} MiB "
                f"[dim](at {clock(time.time() - started)})[/]",
                highlight=False,
            )
        manifest = {
            "format": FORMAT,
            "version": 1,
            "source": str(model_dir.resolve()),
            "method": method,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": versions(),
            "artifacts": entries,
            "build_seconds": round(time.time() - started, 1),
        }
        write_manifest(tmp, manifest)
        if finish is not None:
            finish(tmp)
    return manifest
