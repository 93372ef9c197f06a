"""onnxruntime adapters for an `edgeport export onnx` folder (edgeport/export/onnx.py).

- `OrtCpu(folder)`: onnxruntime CPU EP on model.onnx.
- `OrtMobile(folder)`: the ORT Mobile form, model.ort loaded from bytes with `session.load_model_format=ORT`
  and `session.use_ort_model_bytes_directly=1` (what the onnxruntime-android/objc packages run), CPU EP.
- `OrtGenai(folder)`: onnxruntime-genai (`og.Model` on genai_config.json) keeping the cache; tokens are picked
  by runtimes.base.Runtime.stream like everywhere else.

The graph's KV cache is the MLA latent only, as two halves `past_key_values.N.key/.value` [B, 1, T, L/2].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime


def _tokenize(folder: Path, text: str) -> list[int]:
    from edgeport.tokenizer import load_tokenizer

    return list(load_tokenizer(folder).encode(text))


def _context_length(folder: Path) -> int | None:
    """genai_config.json's context_length (the export's max_position_embeddings), if the folder has one."""
    import json

    try:
        return int(json.loads((folder / "genai_config.json").read_text())["model"]["context_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class OrtCpu(Runtime):
    """onnxruntime on model.onnx: one prefill call for teacher-forced logits, a latent-cache loop for decode."""

    name = "onnxruntime"
    model_file = "model.onnx"

    requires = "onnxruntime"

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        super().__init__(folder)
        import onnxruntime as ort

        from edgeport.errors import EdgeportError

        path = self.artifact / self.model_file
        if not path.is_file():
            raise EdgeportError(
                f"missing {self.model_file} (not an edgeport ONNX export folder)", self.artifact
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self.session = self._session(ort, so, path)
        self.past = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.half = int(self.past[0].shape[-1])
        self.cache_dtype = np.float16 if self.past[0].type == "tensor(float16)" else np.float32
        # graphs with a logits_to_keep input (an overridable initializer, default 0: all rows) compute only the
        # rows asked for
        self.can_keep = any(i.name == "logits_to_keep" for i in self.session.get_overridable_initializers())
        self.context_length = _context_length(self.artifact)

    def _session(self, ort: Any, so: Any, path: Path) -> Any:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def empty_cache(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((batch, 1, 0, self.half), self.cache_dtype) for i in self.past}

    def step(
        self, ids: np.ndarray, cache: dict[str, np.ndarray], last_only: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run ids [B, S] after the cache; return logits [B, S, V] (or [B, 1, V] for the last position only,
        when `last_only` and the graph can) and the grown cache."""
        past = next(iter(cache.values())).shape[2]
        B, S = ids.shape
        feed = {
            "input_ids": ids.astype(np.int64),
            "attention_mask": np.ones((B, past + S), np.int64),
            "position_ids": np.broadcast_to(np.arange(past, past + S, dtype=np.int64), (B, S)).copy(),
            **cache,
        }
        if last_only and self.can_keep:
            feed["logits_to_keep"] = np.array(1, np.int64)
        outs = dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))
        new = {k: outs[k.replace("past_key_values.", "present.")] for k in cache}
        return outs["logits"], new

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        out, _ = self.step(np.asarray([list(ids)], np.int64), self.empty_cache())
        return out[0].astype(np.float32)

    def _start(self, ids: Sequence[int], max_new_tokens: int) -> np.ndarray:
        logits, self._cache = self.step(np.asarray([list(ids)], np.int64), self.empty_cache(), last_only=True)
        return logits[0, -1]

    def _next(self, token: int) -> np.ndarray:
        logits, self._cache = self.step(np.asarray([[token]], np.int64), self._cache)
        return logits[0, -1]

    def tokenize(self, text: str) -> list[int]:
        return _tokenize(self.artifact, text)


class OrtMobile(OrtCpu):
    """model.ort as ORT Mobile loads it: ORT format from bytes, used in place, CPU EP."""

    name = "ort-mobile"
    model_file = "model.ort"

    def _session(self, ort: Any, so: Any, path: Path) -> Any:
        so.add_session_config_entry("session.load_model_format", "ORT")
        so.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._bytes = path.read_bytes()  # must outlive the session: ORT reads the weights from this buffer
        return ort.InferenceSession(self._bytes, so, providers=["CPUExecutionProvider"])


class OrtGenai(Runtime):
    """onnxruntime-genai greedy search on the folder's genai_config.json (model.onnx, or model.ort)."""

    name = "onnxruntime-genai"

    requires = "onnxruntime_genai"

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        super().__init__(folder)
        import json

        import onnxruntime_genai as og

        from edgeport.errors import EdgeportError

        cfg_path = self.artifact / "genai_config.json"
        if not cfg_path.is_file():
            raise EdgeportError(
                "missing genai_config.json (not an edgeport ONNX export folder)", self.artifact
            )
        self.og = og
        config = og.Config(str(self.artifact))
        if threads:  # genai_config.json's session_options, overridden for this session only
            options = {"intra_op_num_threads": threads}
            config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(config)
        self.context = self.context_length = int(json.loads(cfg_path.read_text())["model"]["context_length"])

    def _generator(self, max_length: int):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, do_sample=False, batch_size=1)
        return self.og.Generator(self.model, params)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Teacher-forced logits from one prefill: genai's `logits` output of the append_tokens call."""
        gen = self._generator(min(self.context, len(ids) + 1))
        gen.append_tokens(np.asarray([list(ids)], np.int32))
        return np.asarray(gen.get_output("logits"), np.float32)[0]

    def _start(self, ids: Sequence[int], max_new_tokens: int) -> np.ndarray:
        """genai keeps the cache; we pick each token (so sampling and constraints are the same as elsewhere)
        and hand it back with append_tokens."""
        self._gen = self._generator(min(self.context, len(ids) + max_new_tokens))
        self._gen.append_tokens(np.asarray([list(ids)], np.int32))
        return self._last_logits()

    def _next(self, token: int) -> np.ndarray:
        self._gen.append_tokens(np.asarray([[token]], np.int32))
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        logits = np.asarray(self._gen.get_logits(), np.float32)
        return logits.reshape(-1, logits.shape[-1])[-1]

    def tokenize(self, text: str) -> list[int]:
        return _tokenize(self.artifact, text)

    def tokenize_genai(self, text: str) -> list[int]:
        """Token ids from onnxruntime-genai's own tokenizer (og.Tokenizer on tokenizer.json)."""
        return [int(t) for t in self.og.Tokenizer(self.model).encode(text)]
