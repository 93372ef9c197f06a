"""Capturing a native library's log lines instead of letting them print (llama.cpp logs to stderr by default).

Shared by the GGUF exporter (llama_model_quantize for k-quants) and the llama.cpp runtime adapter (model
loading), which sit in different layers and may not import each other.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """Collect llama.cpp's log lines (instead of printing them) while the block runs; restores its logger."""
    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def cb(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
