"""The `edgeport` command: a thin typer layer over the library. Each command imports its module lazily.

User mistakes raise `EdgeportError` and are printed as one line (`error: <file>: <problem>`), exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgeport.errors import EdgeportError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, quantize, export and validate Dense-MLA models.")
export_app = typer.Typer(no_args_is_help=True, help="Export a checkpoint to GGUF, ONNX, or every format at once.")
app.add_typer(export_app, name="export")
console = Console()


def user_errors(fn):
    """Turn EdgeportError (and a missing file) into one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeportError as e:
            Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def default_model_dir() -> Path:
    from edgeport.default_model import default_model_path

    return default_model_path()


@app.command()
@user_errors
def info(model: Optional[Path] = typer.Argument(None, help="Checkpoint folder (default: the embedded model).")) -> None:
    """Config, parameter count and KV-cache bytes per token (latent vs expanded) of a checkpoint."""
    from edgeport.checkpoint import expected_shapes, folder_size, load_config

    folder = model or default_model_dir()
    cfg = load_config(folder)
    n_params = sum(_prod(s) for s in expected_shapes(cfg).values())
    kv = cfg.kv_bytes_per_token(2)
    t = Table(title=f"edgeport info {folder}", show_header=False)
    t.add_row("architecture", f"Youtu (Dense MLA, SwiGLU) model_type=youtu, {cfg.num_hidden_layers} layers")
    t.add_row("hidden / intermediate", f"{cfg.hidden_size} / {cfg.intermediate_size}")
    t.add_row("heads", f"{cfg.num_attention_heads} (q_lora_rank {cfg.q_lora_rank}, kv_lora_rank {cfg.kv_lora_rank})")
    t.add_row("head dims", f"nope {cfg.qk_nope_head_dim} + rope {cfg.qk_rope_head_dim}, v {cfg.v_head_dim}")
    t.add_row("vocab", str(cfg.vocab_size))
    t.add_row("tied embeddings", str(cfg.tie_word_embeddings))
    t.add_row("parameters", f"{n_params:,}")
    t.add_row("weights on disk", f"{folder_size(folder) / 2**20:.1f} MiB")
    t.add_row("KV cache / token (fp16)", f"latent {kv['latent']:,} B vs expanded {kv['expanded']:,} B "
              f"({kv['expanded'] / kv['latent']:.1f}x smaller)")
    t.add_row("latent values / token / layer", f"{cfg.latent_dim} (kv_lora_rank + qk_rope_head_dim)")
    console.print(t)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="edgeport")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
