"""Hugging Face checkpoint folders: config.json + safetensors (single or sharded with an index) + tokenizer.

Reading is lazy (`iter_tensors` yields one tensor at a time) so exporters run with bounded memory. Writing is
atomic: everything goes to a temporary sibling folder that is renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from edgeport.errors import EdgeportError
from edgeport.inputs import (
    FLOAT_DTYPES,
    check_config,
    check_finite,
    inside,
    read_json,
    read_safetensors_header,
)
from edgeport.io import atomic_dir
from edgeport.model import YoutuConfig, YoutuForCausalLM

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


def load_config(folder: str | Path) -> YoutuConfig:
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise EdgeportError("not a folder (expected a checkpoint folder with config.json)", folder)
    if not path.is_file():
        raise EdgeportError("missing config.json: not a Hugging Face checkpoint folder", folder)
    raw = read_json(path)
    check_config(raw, path)  # types, ranges and consistency: one line naming the key, before any work
    try:
        return YoutuConfig.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise EdgeportError(str(e), path) from None


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint, following model.safetensors.index.json when sharded."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        raw = read_json(index)
        weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(f, str) and inside(folder, f) for f in weight_map.values()
        ):
            raise EdgeportError("weight_map: must map tensor names to shard files in this folder", index)
        files = sorted({folder / f for f in weight_map.values()})
        for f in files:
            if not f.is_file():
                raise EdgeportError("shard listed in model.safetensors.index.json is missing", f)
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise EdgeportError("no *.safetensors weights found", folder)
    return files


def expected_shapes(cfg: YoutuConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name of the HF checkpoint and its shape, from the config alone."""
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        shapes.pop("lm_head.weight")
    return shapes


def check_weights(folder: str | Path, cfg: YoutuConfig) -> dict[Path, dict[str, dict]]:
    """Every weight file's checked header {file: {name: info}}, before a byte of data is read: each tensor
    config.json implies is present once, with its shape and a float dtype, and nothing unexpected is stored."""
    folder = Path(folder)
    shapes = expected_shapes(cfg)
    headers = {f: read_safetensors_header(f) for f in weight_files(folder)}
    seen: set[str] = set()
    for f, header in headers.items():
        for name, info in header.items():
            if name not in shapes:
                if (name == "lm_head.weight" and cfg.tie_word_embeddings) or name.endswith(
                    "rotary_emb.inv_freq"
                ):
                    continue
                raise EdgeportError(f"unexpected tensor {name!r} for a Youtu model with this config", f)
            if info["dtype"] not in FLOAT_DTYPES:
                raise EdgeportError(f"tensor {name!r} has dtype {info['dtype']}; weights must be floats", f)
            if tuple(info["shape"]) != shapes[name]:
                raise EdgeportError(
                    f"tensor {name!r} has shape {tuple(info['shape'])}, config.json implies {shapes[name]}", f
                )
            seen.add(name)
    missing = sorted(set(shapes) - seen)
    if missing:
        raise EdgeportError(f"missing tensor {missing[0]!r} ({len(missing)} missing in all)", folder)
    return headers


def iter_tensors(folder: str | Path, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF name, tensor) one at a time, checked against the config's expected names and shapes.

    Every file's header is checked before any tensor is read, every weight must be a float dtype, and a tensor
    holding NaN/Inf is refused unless edgeport.inputs.nonfinite_allowed() (the CLI's --allow-nonfinite)."""
    folder = Path(folder)
    cfg = load_config(folder)
    shapes = expected_shapes(cfg)
    seen: set[str] = set()
    files = list(check_weights(folder, cfg))
    for f in files:
        try:
            handle = safe_open(str(f), framework="pt")
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise EdgeportError(f"cannot read safetensors file ({e})", f) from None
        with handle:
            for name in handle.keys():
                if name not in shapes:
                    if name == "lm_head.weight" and cfg.tie_word_embeddings:
                        continue  # some writers store the tied copy too
                    if name.endswith("rotary_emb.inv_freq"):
                        continue
                    raise EdgeportError(f"unexpected tensor {name!r} for a Youtu model with this config", f)
                t = handle.get_tensor(name)
                if tuple(t.shape) != shapes[name]:
                    raise EdgeportError(
                        f"tensor {name!r} has shape {tuple(t.shape)}, config.json implies {shapes[name]}", f
                    )
                check_finite(name, t, f)
                seen.add(name)
                yield name, (t if dtype is None else t.to(dtype))
    missing = sorted(set(shapes) - seen)
    if missing:
        raise EdgeportError(f"missing tensor {missing[0]!r} ({len(missing)} missing in all)", folder)


def load_model(folder: str | Path, dtype: torch.dtype = torch.float32) -> YoutuForCausalLM:
    cfg = load_config(folder)
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    state = dict(iter_tensors(folder, dtype))
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, assign=True, strict=True)
    model.tie_weights()
    return model.eval()


def save_model(
    model: YoutuForCausalLM,
    folder: str | Path,
    dtype: str = "float32",
    tokenizer_from: str | Path | None = None,
    max_shard_bytes: int = 2 * 1024**3,
) -> Path:
    """Write an HF checkpoint folder atomically (config.json, safetensors shards + index, tokenizer files)."""
    folder = Path(folder)
    tdtype = DTYPES[dtype]
    cfg = model.config
    state = {k: v.detach().to(tdtype).contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    with atomic_dir(folder, marker="config.json") as tmp:
        config = cfg.to_dict()
        config["dtype"] = {
            "float32": "float32",
            "fp32": "float32",
            "bf16": "bfloat16",
            "fp16": "float16",
        }.get(dtype, dtype)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        meta = {"format": "pt"}
        if len(shards) == 1:
            save_file(shards[0], str(tmp / "model.safetensors"), metadata=meta)
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / name), metadata=meta)
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(v.numel() * v.element_size() for v in state.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        if tokenizer_from is not None:
            copy_tokenizer(tokenizer_from, tmp)
    return folder


def copy_tokenizer(src: str | Path, dst: str | Path) -> None:
    for name in TOKENIZER_FILES:
        p = Path(src) / name
        if p.is_file() and Path(src).resolve() != Path(dst).resolve():
            shutil.copyfile(p, Path(dst) / name)


def folder_size(folder: str | Path) -> int:
    return sum(os.path.getsize(p) for p in Path(folder).rglob("*") if p.is_file())
