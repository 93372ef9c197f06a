"""The embedded default model: a tiny Youtu-architecture checkpoint trained on edgeport's own tool-use data.

It ships inside the package (config.json, model.safetensors, tokenizer files in this folder), so every
command works offline on a fresh machine. Rebuild it with `python -m edgeport.default_model`.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.errors import EdgeportError

HERE = Path(__file__).resolve().parent


def default_model_path() -> Path:
    if not (HERE / "config.json").is_file() or not (HERE / "model.safetensors").is_file():
        raise EdgeportError(
            "the embedded default model is not built (run: python -m edgeport.default_model)", HERE
        )
    return HERE
