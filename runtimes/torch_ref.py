"""The PyTorch reference adapter: edgeport.model in fp32, expanded or absorbed attention.

`TorchRef(folder)` runs a float checkpoint; pointed at a quantized checkpoint (a folder with
quant_config.json, docs/QUANT_FORMAT.md) it runs that checkpoint's dequantized weights, so the GGUF and ONNX
artifacts built from those same codes can be compared with torch on exactly their weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from runtimes.base import Runtime


def is_quantized(folder: str | Path) -> bool:
    return (Path(folder) / "quant_config.json").is_file()


def load_torch_model(folder: str | Path) -> torch.nn.Module:
    """An fp32 YoutuForCausalLM from a float checkpoint, or from a quantized one's dequantized weights."""
    if is_quantized(folder):
        from quant.checkpoint import load_quantized_model

        return load_quantized_model(folder).float().eval()
    from edgeport.checkpoint import load_model

    return load_model(folder, torch.float32)


class TorchRef(Runtime):
    """fp32 torch. absorbed=False: the expanded path (the reference); True: the absorbed path with a latent cache."""

    name = "torch"

    def __init__(
        self,
        folder: str | Path,
        absorbed: bool = False,
        model: torch.nn.Module | None = None,
        streamed: bool = False,
        resident_bytes: int | None = None,
    ) -> None:
        """`model`: run this in-memory model instead of loading `folder`; `streamed`: the float checkpoint's decoder
        layers are read from its safetensors as the forward reaches them (edgeport.reference.StreamedModel), so a
        2B fp32 reference fits a laptop; `resident_bytes` bounds the layers it keeps."""
        super().__init__(folder)
        self.absorbed = absorbed
        self.streamed = None
        if model is None and streamed:
            from edgeport.reference import RESIDENT_BYTES, StreamedModel

            keep = RESIDENT_BYTES if resident_bytes is None else resident_bytes
            self.streamed = StreamedModel(folder, resident_bytes=keep)
            model = self.streamed.model
        self.model = model if model is not None else load_torch_model(folder)
        self.config = self.model.config
        self.context_length = self.config.max_position_embeddings
        self._tok = None
        self._cache = None

    @torch.no_grad()
    def logits(self, ids: Sequence[int]) -> np.ndarray:
        x = torch.tensor([list(ids)], dtype=torch.long)
        if self.absorbed:
            out = self.model(x, cache=self.model.new_cache(), absorbed=True)
        else:
            out = self.model(x)
        return out[0].float().numpy()

    @torch.no_grad()
    def _start(self, ids: Sequence[int], max_new_tokens: int) -> np.ndarray:
        self._cache = self.model.new_cache()
        return self._run([list(ids)])

    @torch.no_grad()
    def _next(self, token: int) -> np.ndarray:
        return self._run([[token]])

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        out = self.model(torch.tensor(ids, dtype=torch.long), cache=self._cache, absorbed=self.absorbed)
        return out[0, -1].float().numpy()

    def tokenize(self, text: str) -> list[int]:
        from tokenizers import Tokenizer

        if self._tok is None:
            path = self.artifact / "tokenizer.json"
            if not path.is_file():
                raise NotImplementedError(f"{self.artifact} has no tokenizer.json")
            self._tok = Tokenizer.from_file(str(path))
        return self._tok.encode(text, add_special_tokens=False).ids

    def kv_bytes_per_token(self) -> int:
        """fp32 cache bytes per token: the latent cache (absorbed) or per-head K and V (expanded)."""
        return self.config.kv_bytes_per_token(4)["latent" if self.absorbed else "expanded"]

    def weight_bytes_per_token(self) -> int:
        """Weight bytes read to decode one token (the embedding gather reads one row, the tied head all of it)."""
        seen: set[int] = set()
        total = 0
        for p in self.model.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel() * p.element_size()
        if not self.config.tie_word_embeddings:
            total -= self.model.model.embed_tokens.weight.numel() * 4
        return total

    def close(self) -> None:
        if self.streamed is not None:
            self.streamed.close()
