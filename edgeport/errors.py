"""User-facing errors: one clear line naming the file and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path


class EdgeportError(Exception):
    """A user mistake or bad input. The CLI prints `error: <message>` and exits 2."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
