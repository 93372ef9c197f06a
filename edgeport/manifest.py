"""The export folder's manifest.json: what `edgeport export all` built from what, read by validate and bench.

    {"format": "edgeport-export", "version": 1, "artifacts": [{"kind", "precision", "path", "from", ...}], ...}

`kind` is checkpoint | quantized | gguf | onnx; `path` and `from` are relative to the export folder (the first
artifact's `from` is the source checkpoint's absolute path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError
from edgeport.inputs import check_manifest
from edgeport.io import atomic_file

MANIFEST = "manifest.json"
FORMAT = "edgeport-export"
SMALL_MODEL_BYTES = 256 * 2**20


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    with atomic_file(folder / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an export folder, or a one-line EdgeportError naming what is wrong."""
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
    check_manifest(
        folder, manifest, path
    )  # schema, known kinds, paths inside the folder, sha256 (edgeport.inputs)
    return manifest


def artifact_entries(folder: str | Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Each listed artifact as {kind, precision, path (absolute), source}; a missing one is an EdgeportError.

    The keys are runtimes.registry.Artifact's fields, so a caller on the runtime side builds `Artifact(**e)`."""
    folder = Path(folder)
    out = []
    for a in manifest["artifacts"]:
        path = folder / a["path"]
        if not path.exists():
            raise EdgeportError(f"artifact listed in {MANIFEST} is missing", path)
        out.append(
            {"kind": a["kind"], "precision": a["precision"], "path": path, "source": a.get("from", "")}
        )
    return out


def reference_checkpoint(folder: str | Path, entries: list[dict[str, Any]]) -> Path:
    """The float checkpoint of the export: the reference every runtime is compared against."""
    for e in entries:
        if e["kind"] == "checkpoint":
            return e["path"]
    raise EdgeportError(
        f"{MANIFEST} lists no float checkpoint to use as the reference", Path(folder) / MANIFEST
    )


def runtime_threads(checkpoint: Path) -> int | None:
    """1 for small models, whose decode is per-op overhead that more threads only add to (on a busy 2-core
    machine a 2-layer model decoded 10-20x slower with 2 threads than with 1, in torch and llama.cpp alike);
    None (each runtime's default) otherwise."""
    from edgeport.checkpoint import folder_size

    return 1 if folder_size(checkpoint) < SMALL_MODEL_BYTES else None
