"""Atomic outputs and the one `--out` rule every command follows.

Outputs are written to a temporary sibling (`.NAME.PID.XXXX.tmp`) and renamed into place, so no half-written
file is ever left under a final name. An existing output is only replaced when edgeport made it (the folder holds
the marker file of its kind, a file starts with the format's magic bytes); anything else is refused with one line,
as are `--out .`/`..`, the current folder or one of its parents, and file-vs-folder mix-ups. A replaced folder is
kept as `.NAME.old` until the new one is in place. Temporary files of killed runs (their PID no longer alive) and a
`.NAME.old` left by a kill are collected by the next run that writes NAME.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgeport.errors import EdgeportError


def check_out(path: str | Path, folder: bool, marker: str | None = None, magic: bytes | None = None) -> Path:
    """Refuse an output path that would destroy something edgeport did not make; returns it as a Path.

    folder: the output is a folder (else a file). marker: a file an existing output folder of this kind holds
    (without one, only an empty folder may be replaced). magic: the bytes an existing output file starts with.
    """
    path = Path(path)
    if path.name in ("", ".", "..") or str(path).endswith(os.sep + "."):
        raise EdgeportError("--out must name a new output, not '.' or '..'", path)
    here, resolved = Path.cwd().resolve(), path.resolve()
    if resolved == here or resolved in here.parents:
        raise EdgeportError("--out is the current folder or one of its parents; refusing to replace it", path)
    if path.is_symlink() and not path.exists():
        raise EdgeportError("--out is a dangling symbolic link", path)
    if not path.exists():
        return path
    if folder and not path.is_dir():
        raise EdgeportError("exists and is a file; --out must be a folder here", path)
    if not folder and path.is_dir():
        raise EdgeportError("exists and is a folder; --out must be a file path here", path)
    if folder:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        if entries and (marker is None or not (path / marker).is_file()):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            what = f"no {marker}" if marker else "not empty"
            raise EdgeportError(
                f"exists and is not an edgeport output of this kind ({what}; holds {shown}); refusing to "
                "replace it: choose a new folder or remove it yourself",
                path,
            )
    elif magic is not None and path.stat().st_size:
        with open(path, "rb") as f:
            if f.read(len(magic)) != magic:
                raise EdgeportError(
                    f"exists and is not a {magic.decode(errors='replace')} file; refusing to overwrite it",
                    path,
                )
    return path


def _prepare(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        files = [p for p in path.parents if p.exists() and not p.is_dir()]
        why = f"{files[0]} is a file" if files else (e.strerror or str(e))
        raise EdgeportError(f"cannot create the parent folder ({why})", path) from None
    collect_leftovers(path)


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def collect_leftovers(path: str | Path) -> list[Path]:
    """Remove `.NAME.*.tmp` siblings of `path` whose writer is no longer alive, and restore or remove a `.NAME.old`
    left by a kill between the two renames of atomic_dir. Returns what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    # exactly the names mkstemp/mkdtemp give: .NAME.PID.<8 of [a-z0-9_]>.tmp (older edgeports: without the PID)
    ours = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")
    for p in path.parent.iterdir():
        m = ours.fullmatch(p.name)
        if m is None or (m.group(1) is not None and _alive(int(m.group(1)))):
            continue  # not an edgeport temporary, or a running writer's
        _remove_any(p)
        removed.append(p)
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not old.is_symlink():
        if path.exists() or path.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        else:  # killed after moving the previous output aside: put it back
            os.replace(old, path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", magic: bytes | None = None) -> Iterator:
    """Open a temporary file next to `path`; on success fsync and rename it to `path`, else delete it.

    magic: only replace an existing file that starts with these bytes (see check_out)."""
    path = check_out(path, folder=False, magic=magic)
    _prepare(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise EdgeportError(f"cannot write ({e.strerror or e})", path) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise EdgeportError(f"cannot write ({e.strerror or e})", path) from None
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def temp_dir_for(path: str | Path) -> Iterator[Path]:
    """A scratch folder next to `path` named like atomic_dir's temporaries (so a killed run's is collected)."""
    path = Path(path)
    _prepare(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, marker: str | None = None, owned: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success replace `path` with it, else delete it.

    marker: an existing non-empty `path` is replaced only when it holds this file (an earlier output of the same
    kind); owned=True: `path` is edgeport's own (a run's checkpoint, a cache) and is replaced whatever it holds.
    The previous folder stays in place until the new one is complete."""
    path = Path(path)
    if not owned:
        check_out(path, folder=True, marker=marker)
    _prepare(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise EdgeportError(f"cannot write ({e.strerror or e})", path) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            _remove_any(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove_any(old)  # a symbolic link --out pointed at is unlinked, never followed
        else:
            os.replace(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeportError(f"cannot write ({e.strerror or e})", path) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(p: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(p)


def _remove_any(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
