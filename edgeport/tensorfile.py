"""safetensors files read and written in bounded memory, tensor by tensor (or row chunk by row chunk).

The `safetensors` package maps the whole file (mmap): every page it touches stays in the process's resident set
until the file is closed, so reading a 2 GiB shard through it costs 2 GiB of RSS. These read row ranges with
plain reads and write tensors as they come, so a process holds one chunk. The format is small and documented
(https://github.com/huggingface/safetensors#format): 8-byte little-endian header length, JSON header
{name: {dtype, shape, data_offsets}}, then the data.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from edgeport.errors import EdgeportError
from edgeport.inputs import check_finite, read_safetensors_header

DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "I32": torch.int32,
    "I64": torch.int64,
}
NUMPY_NAMES = {
    "float32": "F32",
    "float16": "F16",
    "int8": "I8",
    "uint8": "U8",
    "int32": "I32",
    "int64": "I64",
}


class SafetensorsReader:
    """Header-only index of safetensors files; `read` returns a row range with plain reads (RSS: one chunk)."""

    def __init__(self, files: list[Path]) -> None:
        self.index: dict[str, tuple[Path, torch.dtype, tuple[int, ...], int]] = {}
        for f in files:
            header = read_safetensors_header(f)  # checked: dtypes, shapes, offsets inside the file
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
            for name, info in header.items():
                if info["dtype"] not in DTYPES:
                    raise EdgeportError(f"tensor {name!r} has unsupported dtype {info['dtype']}", f)
                offset = 8 + n + info["data_offsets"][0]
                self.index[name] = (Path(f), DTYPES[info["dtype"]], tuple(info["shape"]), offset)

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def shape(self, name: str) -> tuple[int, ...]:
        return self.index[name][2]

    def dtype(self, name: str) -> torch.dtype:
        return self.index[name][1]

    def read(self, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows start:stop (first axis) of a tensor, as stored."""
        path, dtype, shape, offset = self.index[name]
        stop = shape[0] if stop is None else stop
        row = int(np.prod(shape[1:])) * dtype.itemsize
        buf = bytearray((stop - start) * row)
        with open(path, "rb") as fh:
            fh.seek(offset + start * row)
            if fh.readinto(buf) != len(buf):
                raise EdgeportError(f"tensor {name!r} is truncated", path)
        t = torch.frombuffer(buf, dtype=dtype).reshape(stop - start, *shape[1:])
        check_finite(name, t, path)  # NaN/Inf refused unless --allow-nonfinite (edgeport.inputs)
        return t


class SafetensorsWriter:
    """Writes a safetensors file tensor by tensor. The header (which holds every offset) comes first in the
    file, so the data goes to a side file as each tensor arrives and `close` joins header and data."""

    def __init__(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
        self.data = tempfile.TemporaryFile(dir=self.path.parent)
        self.offset = 0

    def add(
        self, name: str, parts: np.ndarray | Iterable[np.ndarray], shape: tuple[int, ...] | None = None
    ) -> None:
        """One tensor, whole or as row chunks in order (then give its full `shape`)."""
        if isinstance(parts, np.ndarray):
            parts, shape = [parts], parts.shape
        begin, dtype = self.offset, None
        for p in parts:
            p = np.ascontiguousarray(p)
            dtype = dtype or NUMPY_NAMES[p.dtype.name]
            self.data.write(memoryview(p.reshape(-1).view(np.uint8)))
            self.offset += p.nbytes
        assert shape is not None and dtype is not None, name
        assert self.offset - begin == int(np.prod(shape)) * DTYPES[dtype].itemsize, (name, shape)
        self.header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, self.offset]}

    def close(self) -> None:
        raw = json.dumps(self.header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-aligned, as the safetensors writer does
        with open(self.path, "wb") as out:
            out.write(struct.pack("<Q", len(raw)) + raw)
            self.data.seek(0)
            shutil.copyfileobj(self.data, out, 16 * 2**20)
        self.data.close()


def checkpoint_reader(folder: str | Path) -> SafetensorsReader:
    """A reader over a float HF checkpoint's safetensors, checked by `edgeport.checkpoint.check_weights` (every
    tensor the config implies, with its shape and a float dtype, and nothing unexpected) before any data is read."""
    from edgeport.checkpoint import check_weights, load_config

    return SafetensorsReader(list(check_weights(folder, load_config(folder))))
