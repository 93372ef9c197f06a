"""The fp32 torch reference without the whole fp32 model in memory: decoder layers streamed from the safetensors.

`StreamedModel(folder).model` is an `edgeport.model.YoutuForCausalLM` (same forward, so the same arithmetic) whose decoder layers are read from the checkpoint's safetensors, converted to fp32 and run one at a
time. Only the embedding (the tied head), the final norm and the layers that fit `resident_bytes` stay in
memory; every other layer is read again on each forward, into the one slot they share. Youtu-LLM-2B with the
default 512 MiB: about 2 GiB instead of 7.3 GiB for the whole fp32 model. A small model is kept whole after its
first forward, so it pays nothing for this.

Each shard is opened (mmap) only while its tensors are copied out, so the pages of a 4 GB checkpoint do not pile
up in the process's resident set either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from edgeport.checkpoint import expected_shapes, load_config, weight_files
from edgeport.errors import EdgeportError
from edgeport.model import DecoderLayer, YoutuForCausalLM

RESIDENT_BYTES = 512 * 2**20  # fp32 layers up to this size stay in memory after their first load


def tensor_files(folder: Path) -> dict[str, Path]:
    """HF tensor name -> the safetensors file holding it."""
    files = weight_files(folder)  # checks the index and that every shard exists
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {k: folder / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    out: dict[str, Path] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as h:
                out.update(dict.fromkeys(h.keys(), f))
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise EdgeportError(f"cannot read safetensors file ({e})", f) from None
    return out


class _Layers(nn.Module):
    """Stands in for the model's ModuleList: iterating it loads each decoder layer when the forward reaches it."""

    def __init__(self, owner: StreamedModel) -> None:
        super().__init__()
        self._owner = [owner]  # a list, so nn.Module does not register the owner as a child

    def __len__(self) -> int:
        return self._owner[0].config.num_hidden_layers

    def __iter__(self) -> Iterator[DecoderLayer]:
        return (self._owner[0].layer(i) for i in range(len(self)))


class StreamedModel:
    """A float checkpoint as an fp32 model (`.model`) with one decoder layer in memory at a time. It only holds
    weights: runtimes.torch_ref.TorchRef(folder, streamed=True) runs it (logits, the token stream, the tokenizer)."""

    def __init__(self, folder: str | Path, resident_bytes: int = RESIDENT_BYTES) -> None:
        self.folder = Path(folder)
        self.config = cfg = load_config(self.folder)
        self.shapes = expected_shapes(cfg)
        self.files = tensor_files(self.folder)
        missing = sorted(set(self.shapes) - set(self.files))
        if missing:
            raise EdgeportError(f"missing tensor {missing[0]!r} ({len(missing)} missing in all)", self.folder)
        with torch.device("meta"):
            self.model = YoutuForCausalLM(cfg)
        top = [k for k in self.shapes if not k.startswith("model.layers.")]
        state = self._read(top)
        if cfg.tie_word_embeddings:
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        self.model.model.layers = _Layers(self)
        self.model.load_state_dict(state, assign=True, strict=True)
        self.model.tie_weights()
        self.model.eval()
        per_layer = sum(np.prod(s) for k, s in self.shapes.items() if k.startswith("model.layers.0.")) * 4
        self.keep = min(cfg.num_hidden_layers, int(resident_bytes // per_layer))  # layers kept after loading
        self.resident = self.keep == cfg.num_hidden_layers
        self._kept: dict[int, DecoderLayer] = {}
        self._slot: DecoderLayer | None = None  # the streamed layers' one place in memory

    def _read(self, names: list[str]) -> dict[str, torch.Tensor]:
        """fp32 copies of `names`, opening each shard only for as long as its tensors are copied out."""
        by_file: dict[Path, list[str]] = {}
        for n in names:
            by_file.setdefault(self.files[n], []).append(n)
        out = {}
        for f, group in by_file.items():
            try:
                with safe_open(str(f), framework="pt") as h:
                    for n in group:
                        t = h.get_tensor(n)
                        if tuple(t.shape) != self.shapes[n]:
                            raise EdgeportError(
                                f"tensor {n!r} has shape {tuple(t.shape)}, config.json implies {self.shapes[n]}",
                                f,
                            )
                        out[n] = t.to(torch.float32)
            except EdgeportError:
                raise
            except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
                raise EdgeportError(f"cannot read safetensors file ({e})", f) from None
        return out

    def layer(self, i: int) -> DecoderLayer:
        if i in self._kept:
            return self._kept[i]
        keep = len(self._kept) < self.keep
        slot = None if keep else self._slot
        if slot is not None:
            slot.to("meta")  # free the previous layer's weights (the forward still holds the module) first
        prefix = f"model.layers.{i}."
        state = self._read([k for k in self.shapes if k.startswith(prefix)])
        if slot is None:
            with torch.device("meta"):
                slot = DecoderLayer(self.config).eval()
        slot.load_state_dict({k[len(prefix) :]: v for k, v in state.items()}, assign=True, strict=True)
        if keep:
            self._kept[i] = slot
        else:
            self._slot = slot
        return slot

    def close(self) -> None:
        self._kept.clear()
        self._slot = None
