"""llama.cpp through llama-cpp-python's C API (the low-level bindings, so weight repacking can be switched).

`LlamaCpp(path)` runs a GGUF on the CPU (n_gpu_layers > 0 offloads; the Metal adapter is runtimes.apple).
Logits are teacher-forced in one batch with an output row per token; decoding (runtimes.base.Runtime.stream)
runs one token per llama_decode against llama.cpp's own KV cache and picks tokens from the logits row.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.logs import captured_log
from runtimes.base import Runtime

_BACKEND_READY = False
CELL_META_BYTES = (
    12  # per cached token in a sequence state: pos (int32), n_seq_id (uint32), one seq_id (int32)
)


def has_amx(lc: object) -> bool:
    """Whether llama.cpp's CPU backend reports AMX (its system info line says `AMX_INT8 = 1`)."""
    info = lc.llama_print_system_info()  # type: ignore[attr-defined]
    return b"AMX_INT8 = 1" in (info if isinstance(info, bytes) else str(info).encode())


class LlamaCpp(Runtime):
    name = "llama.cpp-cpu"

    requires = "llama_cpp"

    def __init__(
        self,
        artifact: str | Path,
        n_threads: int | None = None,
        repack: bool = True,
        n_gpu_layers: int = 0,
        n_ctx: int = 2048,
        kv_type: str = "f16",
        flash_attn: bool | None = None,
    ) -> None:
        """`kv_type` f16 (llama.cpp's default) | f32 | q8_0; `flash_attn` None = llama.cpp's auto. For exact
        parity with fp32 torch use kv_type="f32", flash_attn=False (the CPU flash-attention path rounds Q to f16)."""
        super().__init__(artifact)
        import llama_cpp as lc

        global _BACKEND_READY
        if not _BACKEND_READY:
            lc.llama_backend_init()
            _BACKEND_READY = True
        self.lc = lc
        if not self.artifact.is_file():
            raise EdgeportError("no such GGUF file", self.artifact)
        threads = n_threads or os.cpu_count() or 1
        mp = lc.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        # CPU weight repacking (e.g. Q4_0 -> interleaved kernels). Not on a CPU with AMX: there llama.cpp (0.3.36's)
        # puts the weights in its AMX buffer, and an MLA graph then has an op no backend takes from that buffer
        # (GGML_ASSERT(*cur_backend_id != -1) in ggml-backend.cpp aborts the process, seen on a Xeon with AMX_INT8).
        mp.use_extra_bufts = repack and not has_amx(lc)
        with captured_log() as log:
            self.model = lc.llama_model_load_from_file(str(self.artifact).encode(), mp)
            if not self.model:
                errors = [ln.strip() for ln in log if "error" in ln.lower() or "failed" in ln.lower()]
                raise EdgeportError(
                    f"llama.cpp cannot load it ({errors[0] if errors else 'see its log'})", self.artifact
                )
            cp = lc.llama_context_default_params()
            cp.n_ctx = cp.n_batch = n_ctx
            cp.n_ubatch = min(512, n_ctx)
            cp.n_threads = cp.n_threads_batch = threads
            if flash_attn is not None:
                fa = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
                cp.flash_attn_type = fa
            cp.type_k = cp.type_v = {
                "f16": lc.GGML_TYPE_F16,
                "f32": lc.GGML_TYPE_F32,
                "q8_0": lc.GGML_TYPE_Q8_0,
            }[kv_type]
            self.ctx = lc.llama_init_from_model(self.model, cp)
        self.log = "".join(log)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise EdgeportError("llama.cpp cannot create a context for it", self.artifact)
        self.n_ctx = self.context_length = n_ctx
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.batch = lc.llama_batch_init(n_ctx, 0, 1)

    # ---- decoding ------------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)

    def _decode(self, ids: Sequence[int], start: int, all_logits: bool) -> None:
        if start + len(ids) > self.n_ctx:
            raise EdgeportError(
                f"sequence of {start + len(ids)} tokens exceeds n_ctx {self.n_ctx}", self.artifact
            )
        b = self.batch
        b.n_tokens = len(ids)
        for i, t in enumerate(ids):
            b.token[i] = int(t)
            b.pos[i] = start + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = int(all_logits or i == len(ids) - 1)
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise EdgeportError(f"llama_decode failed with code {rc}", self.artifact)

    def _row(self, i: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        self._clear()
        self._decode(ids, 0, all_logits=True)
        return np.stack([self._row(i) for i in range(len(ids))]).astype(np.float32)

    def _start(self, ids: Sequence[int], max_new_tokens: int) -> np.ndarray:
        self._clear()
        self._decode(ids, 0, all_logits=False)
        self._pos = len(ids)
        return self._row(-1)

    def _next(self, token: int) -> np.ndarray:
        self._decode([token], self._pos, all_logits=False)
        self._pos += 1
        return self._row(-1)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        n = len(data) + 8
        buf = (self.lc.llama_token * n)()
        got = self.lc.llama_tokenize(self.vocab, data, len(data), buf, n, False, True)
        if got < 0:  # buffer too small: -got is the size needed
            n = -got
            buf = (self.lc.llama_token * n)()
            got = self.lc.llama_tokenize(self.vocab, data, len(data), buf, n, False, True)
        return list(buf[:got])

    # ---- what llama.cpp reports about itself -----------------------------------------------------------
    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return None if n < 0 else buf.value.decode("utf-8", "replace")

    def kv_bytes_per_token(self, probe: int = 8) -> int:
        """Bytes llama.cpp stores per cached token over all layers (K rows + V rows, if it keeps any).

        Measured from llama.cpp itself: the size of the sequence state after `probe` and after 2*`probe`
        tokens; the difference per token, minus the per-cell bookkeeping, is the cache rows one token takes.
        """
        sizes = []
        for n in (probe, 2 * probe):
            self._clear()
            self._decode([0] * n, 0, all_logits=False)
            sizes.append(self.lc.llama_state_seq_get_size(self.ctx, 0))
        self._clear()
        return (sizes[1] - sizes[0]) // probe - CELL_META_BYTES

    def kv_cache_log(self) -> dict[str, float]:
        """llama.cpp's own KV-cache line at load: cells, layers, K MiB, V MiB."""
        m = re.search(
            r"size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers.*K \((\w+)\):\s*([\d.]+) MiB, V \((\w+)\):\s*([\d.]+) MiB",
            self.log,
        )
        if m is None:
            return {}
        return {
            "total_mib": float(m[1]),
            "cells": int(m[2]),
            "layers": int(m[3]),
            "k_mib": float(m[5]),
            "v_mib": float(m[7]),
        }

    def close(self) -> None:
        lc = self.lc
        if getattr(self, "batch", None) is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            lc.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lc.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
