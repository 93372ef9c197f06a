"""A seeded fuzz campaign over every input kind edgeport reads (issue 13), run in-process so it stays fast.

Each case copies a small valid input (float checkpoint, quantized folder, GGUF, ONNX folder, export manifest),
applies one mutation, and hands it to the real consumer (export gguf/onnx, quantize, info, chat's model loader,
the manifest loader). Asserted for every case: a one-line EdgeportError or a correct result, never another
exception (a traceback) nor a hang (a per-case time limit), never output left behind on failure; a mutation that
makes the input wrong (NaN weights, a changed dtype, a broken template...) must be refused, never exported.
`pytest -s tests/test_fuzz.py` prints the per-kind counts and one message per failure class.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import shutil
import struct
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BLOCK_CONFIG, TEST_VOCAB

from edgeport.errors import EdgeportError
from edgeport.inputs import time_limit

SEED = 13
CASE_SECONDS = 30.0  # a hang is anything slower; the slowest legitimate case (an ONNX export) takes ~1 s
BAD = [
    "64", -1, 0, 10**12, 2**64, 1.5, None, True, [], {}, "", float("nan"), float("inf"), -(10**9), "x" * 300,
]  # fmt: skip


@dataclass
class Case:
    kind: str
    name: str  # the mutation class
    mutate: Callable[[Path], None]  # edits the copied input in place
    consume: str  # which consumer runs on it
    must_fail: bool  # the input is wrong: a result would be silent garbage


# ---- the valid inputs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> dict[str, Path]:
    from edgeport.checkpoint import save_model
    from edgeport.export.gguf import export_gguf
    from edgeport.export.onnx import export_onnx
    from edgeport.inputs import tree_sha256
    from edgeport.manifest import write_manifest
    from edgeport.model import YoutuConfig, YoutuForCausalLM
    from edgeport.quantize import quantize_checkpoint

    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    cfg = YoutuConfig(**{**BLOCK_CONFIG, "num_hidden_layers": 1, "vocab_size": TEST_VOCAB})
    cfg.bos_token_id, cfg.eos_token_id = TEST_VOCAB - 12, TEST_VOCAB - 11
    model = YoutuForCausalLM(cfg)
    float_dir = save_model(model, root / "float", tokenizer_from=tokenizer_dir)
    quant_dir = quantize_checkpoint(float_dir, root / "quant", scheme="q8_0", progress=False)
    gguf = export_gguf(float_dir, root / "model.gguf", progress=False)
    onnx_dir = export_onnx(float_dir, root / "onnx", "fp32", mobile=False, progress=False)
    exp = root / "export"
    shutil.copytree(float_dir, exp / "checkpoint")
    (exp / "gguf").mkdir()
    shutil.copyfile(gguf, exp / "gguf" / "model-f16.gguf")
    arts = [
        {"kind": "checkpoint", "precision": "fp32", "path": "checkpoint", "from": str(float_dir)},
        {"kind": "gguf", "precision": "f16", "path": "gguf/model-f16.gguf", "from": "checkpoint"},
    ]
    for a in arts:
        a.update(bytes=1, seconds=0.0, sha256=tree_sha256(exp / a["path"]))
    write_manifest(exp, {"format": "edgeport-export", "version": 1, "artifacts": arts})
    return {"float": float_dir, "quant": quant_dir, "gguf": gguf, "onnx": onnx_dir, "export": exp}


# ---- mutations -----------------------------------------------------------------------------------------------
def edit_json(file: str, fn: Callable[[object], object]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        p = d / file
        p.write_text(json.dumps(fn(json.loads(p.read_text()))))

    return mutate


def write_bytes(file: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / file).write_bytes(data)


def truncate(file: str, frac: float) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        b = (d / file).read_bytes()
        (d / file).write_bytes(b[: int(len(b) * frac)])

    return mutate


def flip(file: str, pos: float, start: int = 0) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        b = bytearray((d / file).read_bytes())
        i = start + int((len(b) - start) * pos)
        b[min(i, len(b) - 1)] ^= 0xFF
        (d / file).write_bytes(bytes(b))

    return mutate


def set_key(path: list, value: object, delete: bool = False) -> Callable[[object], object]:
    def fn(obj: object) -> object:
        obj = copy.deepcopy(obj)
        node = obj
        for k in path[:-1]:
            node = node[k]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return obj

    return fn


def st_header(file: str, fn: Callable[[dict], dict]) -> Callable[[Path], None]:
    """Rewrite a safetensors header (same data section), padded to 8 bytes like the writer does."""

    def mutate(d: Path) -> None:
        b = (d / file).read_bytes()
        (n,) = struct.unpack("<Q", b[:8])
        raw = json.dumps(fn(json.loads(b[8 : 8 + n]))).encode()
        raw += b" " * (-len(raw) % 8)
        (d / file).write_bytes(struct.pack("<Q", len(raw)) + raw + b[8 + n :])

    return mutate


def st_length(file: str, value: int) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        b = (d / file).read_bytes()
        (d / file).write_bytes(struct.pack("<Q", value % 2**64) + b[8:])

    return mutate


def st_poison(file: str, tensor: str, value: float, all_values: bool = False) -> Callable[[Path], None]:
    """Write NaN/Inf into one float tensor's data (one element, or all of them)."""

    def mutate(d: Path) -> None:
        b = bytearray((d / file).read_bytes())
        (n,) = struct.unpack("<Q", b[:8])
        info = json.loads(b[8 : 8 + n])[tensor]
        dt = {"F32": np.float32, "F16": np.float16}[info["dtype"]]
        begin, end = (8 + n + o for o in info["data_offsets"])
        a = np.frombuffer(bytes(b[begin:end]), dtype=dt).copy()
        if all_values:
            a[:] = value
        else:
            a[len(a) // 3] = value
        b[begin:end] = a.tobytes()
        (d / file).write_bytes(bytes(b))

    return mutate


def header_of(d: Path, file: str) -> dict:
    b = (d / file).read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8 : 8 + n])


BROKEN_TEMPLATES = {
    "unclosed tag": "{% for m in messages %}{{ m['content'] }}",
    "raise_exception": "{{ raise_exception('this template refuses every conversation') }}",
    "range(10**9)": "{% for i in range(10**9) %}x{% endfor %}{{ messages[0]['content'] }}",
    "nested loops (time limit)": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}{{ messages[1]['content'] }}",
    "string * 10**9": "{{ 'a' * 1000000000 }}{{ messages[1]['content'] }}",
    "sandbox escape": "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "endless macro": "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
    "ignores messages": "hello",
    "undefined call": "{{ nothing_here() }}",
    "not a string": 5,
    "empty": "",
}


def cases(base: dict[str, Path]) -> list[Case]:
    rng = random.Random(SEED)
    out: list[Case] = []
    cfg = json.loads((base["float"] / "config.json").read_text())
    dims = [
        k
        for k in cfg
        if isinstance(cfg[k], int)
        and not isinstance(cfg[k], bool)
        and k.endswith(("size", "layers", "heads", "rank", "dim"))
    ]
    typed = [
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "rope_parameters",
        "bos_token_id",
    ]

    # config.json (info, export gguf, export onnx)
    consumers = ["info", "gguf", "onnx", "quantize"]
    for i in range(110):
        c = consumers[i % 4]
        r = rng.random()
        if r < 0.55:
            key, value = rng.choice(dims), rng.choice(BAD + [3, 2**20, 10**12, 96])
            same = value == cfg[key] or (
                key == "num_key_value_heads" and value is None
            )  # None: MLA ignores it
            mutate = edit_json("config.json", set_key([key], value))
            out.append(Case("config", f"{key}={json.dumps(value)[:20]}", mutate, c, not same))
        elif r < 0.8:
            key, value = rng.choice(typed), rng.choice(BAD)
            valid = {
                "tie_word_embeddings": value is cfg["tie_word_embeddings"],
                "rope_parameters": value in (None, {}),  # the defaults give the same rope
                "bos_token_id": value is None or (type(value) is int and 0 <= value < 2**31),
            }.get(key, False)
            mutate = edit_json("config.json", set_key([key], value))
            out.append(Case("config", f"{key}={json.dumps(value)[:20]}", mutate, c, not valid))
        elif r < 0.9:
            key = rng.choice(
                ["vocab_size", "hidden_size", "num_hidden_layers", "kv_lora_rank", "num_attention_heads"]
            )
            out.append(
                Case(
                    "config",
                    f"delete {key}",
                    edit_json("config.json", set_key([key], None, delete=True)),
                    c,
                    True,
                )
            )
        else:
            data = rng.choice([b"null", b"[]", b'"x"', b"", b"\xff\xfe", b"{", b'{"hidden_size": 64'])
            out.append(Case("config", f"file {data[:8]!r}", write_bytes("config.json", data), c, True))

    # safetensors (export gguf, export onnx, quantize read the weights three different ways)
    st = "model.safetensors"
    names = sorted(header_of(base["float"], st))
    names = [n for n in names if n != "__metadata__"]
    consumers = ["gguf", "onnx", "quantize"]
    for i in range(110):
        c = consumers[i % 3]
        r = rng.random()
        t = rng.choice(names)
        size = (base["float"] / st).stat().st_size
        if r < 0.15:
            v = rng.choice([2**64 - 1, 0, 7, size, size + 1, 2**40, 2**63])
            out.append(Case("safetensors", f"header length {v}", st_length(st, v), c, True))
        elif r < 0.3:
            dt = rng.choice(["I32", "F16", "BF16", "F64", "U8", "I64", "X", None, 5])
            out.append(
                Case("safetensors", f"{t} dtype {dt}", st_header(st, set_key([t, "dtype"], dt)), c, True)
            )
        elif r < 0.42:
            shp = rng.choice([[], [-1], [10**12], ["3"], [1, 2, 3], None, [2**70]])
            out.append(
                Case("safetensors", f"{t} shape {shp}", st_header(st, set_key([t, "shape"], shp)), c, True)
            )
        elif r < 0.55:
            offs = rng.choice([[0, 10**15], [-1, 3], [3, 1], "x", [0], None, [2**64, 2**64 + 4]])
            out.append(
                Case(
                    "safetensors",
                    f"{t} offsets {offs}",
                    st_header(st, set_key([t, "data_offsets"], offs)),
                    c,
                    True,
                )
            )
        elif r < 0.62:
            out.append(Case("safetensors", "truncated", truncate(st, rng.uniform(0.0, 0.999)), c, True))
        elif r < 0.67:
            out.append(
                Case(
                    "safetensors",
                    "bytes appended",
                    lambda d: (d / st).write_bytes((d / st).read_bytes() + b"\0" * 64),
                    c,
                    True,
                )
            )
        elif r < 0.85:
            v = rng.choice([float("nan"), float("inf"), float("-inf")])
            out.append(Case("safetensors", f"{v} weight", st_poison(st, t, v), c, True))
        else:
            out.append(Case("safetensors", "data byte flip", flip(st, rng.random(), start=1024), c, False))

    # tokenizer files (export gguf embeds them, export onnx and quantize copy them)
    consumers = ["gguf", "onnx"]
    tok = json.loads((base["float"] / "tokenizer.json").read_text())
    vocab_tok = next(iter(tok["model"]["vocab"]))
    for i in range(80):
        c = consumers[i % 2]
        r = rng.random()
        if r < 0.2:
            out.append(
                Case(
                    "tokenizer",
                    "tokenizer.json truncated",
                    truncate("tokenizer.json", rng.uniform(0, 0.99)),
                    c,
                    True,
                )
            )
        elif r < 0.4:
            fn = rng.choice([
                ("model.type WordPiece", set_key(["model", "type"], "WordPiece")),
                ("vocab id -1", set_key(["model", "vocab", vocab_tok], -1)),
                ("vocab id huge", set_key(["model", "vocab", vocab_tok], 10**9)),
                ("merges null", set_key(["model", "merges"], None)),
                ("added_tokens [5]", set_key(["added_tokens"], [5])),
                ("model null", set_key(["model"], None)),
            ])  # fmt: skip
            out.append(
                Case("tokenizer", f"tokenizer.json {fn[0]}", edit_json("tokenizer.json", fn[1]), c, True)
            )
        elif r < 0.5:
            data = rng.choice([b"null", b"[]", b"5", b"{", b"\xff"])
            out.append(
                Case(
                    "tokenizer",
                    f"tokenizer_config.json {data!r}",
                    write_bytes("tokenizer_config.json", data),
                    c,
                    True,
                )
            )
        elif r < 0.85:
            name, tpl = rng.choice(list(BROKEN_TEMPLATES.items()))
            if name == "nested loops (time limit)" and rng.random() < 0.8:
                name, tpl = (
                    "raise_exception",
                    BROKEN_TEMPLATES["raise_exception"],
                )  # each one costs the 2 s limit
            out.append(
                Case(
                    "tokenizer",
                    f"chat_template {name}",
                    edit_json("tokenizer_config.json", set_key(["chat_template"], tpl)),
                    c,
                    True,
                )
            )
        elif r < 0.9:
            out.append(
                Case(
                    "tokenizer",
                    "bos_token 5",
                    edit_json("tokenizer_config.json", set_key(["bos_token"], 5)),
                    c,
                    True,
                )
            )
        else:
            out.append(
                Case(
                    "tokenizer",
                    "tokenizer.json reformatted",
                    edit_json("tokenizer.json", lambda x: x),
                    c,
                    False,
                )
            )

    # GGUF (chat's llama.cpp loader)
    gsize = base["gguf"].stat().st_size
    for _ in range(60):
        r = rng.random()
        if r < 0.15:
            out.append(
                Case(
                    "gguf",
                    "bad magic",
                    lambda d: (d / "model.gguf").write_bytes(b"GGUX" + (d / "model.gguf").read_bytes()[4:]),
                    "chat",
                    True,
                )
            )
        elif r < 0.3:
            field, fmt, at = rng.choice([("version", "<I", 4), ("n_tensors", "<Q", 8), ("n_kv", "<Q", 16)])
            v = (
                rng.choice([0, 1, 4, 2**31, 2**32 - 1])
                if fmt == "<I"
                else rng.choice([2**63, 2**40, 10**6, 0])
            )

            def mutate(d: Path, fmt: str = fmt, at: int = at, v: int = v) -> None:
                b = bytearray((d / "model.gguf").read_bytes())
                b[at : at + struct.calcsize(fmt)] = struct.pack(fmt, v)
                (d / "model.gguf").write_bytes(bytes(b))

            out.append(Case("gguf", f"{field}={v}", mutate, "chat", True))
        elif r < 0.6:
            out.append(Case("gguf", "truncated", truncate("model.gguf", rng.uniform(0, 0.99)), "chat", True))
        else:
            pos = rng.random() * min(1.0, 4096 / gsize) if rng.random() < 0.5 else rng.random()
            out.append(Case("gguf", "byte flip", flip("model.gguf", pos), "chat", False))

    # ONNX folder (chat's onnxruntime loader)
    for _ in range(60):
        r = rng.random()
        if r < 0.45:
            what, fn = rng.choice([
                ("null", lambda x: None),
                ("no model.decoder", set_key(["model", "decoder"], None, delete=True)),
                ("decoder.inputs 5", set_key(["model", "decoder", "inputs"], 5)),
                ("context_length 'x'", set_key(["model", "context_length"], "x")),
                ("context_length -1", set_key(["model", "context_length"], -1)),
                ("context_length 10**12", set_key(["model", "context_length"], 10**12)),
                ("filename ../../../etc/passwd", set_key(["model", "decoder", "filename"], "../../../etc/passwd")),
                ("model []", set_key(["model"], [])),
                ("eos_token_id 'x'", set_key(["model", "eos_token_id"], "x")),
            ])  # fmt: skip
            out.append(Case("onnx", f"genai_config {what}", edit_json("genai_config.json", fn), "chat", True))
        elif r < 0.6:
            out.append(
                Case(
                    "onnx",
                    "genai_config truncated",
                    truncate("genai_config.json", rng.uniform(0, 0.95)),
                    "chat",
                    True,
                )
            )
        elif r < 0.75:
            out.append(
                Case(
                    "onnx", "model.onnx truncated", truncate("model.onnx", rng.uniform(0, 0.9)), "chat", True
                )
            )
        elif r < 0.8:
            out.append(
                Case("onnx", "model.onnx missing", lambda d: (d / "model.onnx").unlink(), "chat", True)
            )
        elif r < 0.9:
            out.append(
                Case(
                    "onnx",
                    "tokenizer.json truncated",
                    truncate("tokenizer.json", rng.uniform(0, 0.95)),
                    "chat",
                    True,
                )
            )
        else:
            out.append(Case("onnx", "model.onnx byte flip", flip("model.onnx", rng.random()), "chat", False))

    # quantized folder (export gguf and export onnx pack its codes)
    qnames = sorted(json.loads((base["quant"] / "quant_config.json").read_text())["tensors"])
    qst = header_of(base["quant"], "model.safetensors")
    scales = sorted(k for k in qst if k.endswith(".scales"))
    for i in range(60):
        c = ["gguf", "onnx"][i % 2]
        t = rng.choice(qnames)
        r = rng.random()
        if r < 0.5:
            what, fn = rng.choice([
                ("null", lambda x: None),
                ("tensors null", set_key(["tensors"], None)),
                (f"tensors.{t} null", set_key(["tensors", t], None)),
                (f"tensors.{t}.format q9", set_key(["tensors", t, "format"], "q9")),
                (f"tensors.{t}.shape ['3']", set_key(["tensors", t, "shape"], ["3"])),
                (f"tensors.{t}.shape [1]", set_key(["tensors", t, "shape"], [1])),
                ("block_size 64", set_key(["block_size"], 64)),
                ("version 99", set_key(["version"], 99)),
                ("scheme 5", set_key(["scheme"], 5)),
                (f"delete tensors.{t}", set_key(["tensors", t], None, delete=True)),
            ])  # fmt: skip
            out.append(Case("quantized", f"quant_config {what}", edit_json("quant_config.json", fn), c, True))
        elif r < 0.75:
            s = rng.choice(scales)
            out.append(
                Case(
                    "quantized",
                    "all-NaN scales",
                    st_poison("model.safetensors", s, float("nan"), True),
                    c,
                    True,
                )
            )
        elif r < 0.9:
            s = rng.choice(scales)
            out.append(
                Case(
                    "quantized",
                    "scales dtype I16",
                    st_header("model.safetensors", set_key([s, "dtype"], "I16")),
                    c,
                    True,
                )
            )
        else:
            out.append(
                Case(
                    "quantized",
                    "safetensors truncated",
                    truncate("model.safetensors", rng.uniform(0, 0.99)),
                    c,
                    True,
                )
            )

    # export manifest (validate's and bench's loader)
    mf = "manifest.json"
    for _ in range(60):
        r = rng.random()
        i = rng.randrange(2)
        what, fn, bad = rng.choice([
            ("artifacts 5", set_key(["artifacts"], 5), True),
            ("artifacts []", set_key(["artifacts"], []), True),
            ("artifacts [5]", set_key(["artifacts"], [5]), True),
            ("unknown kind", set_key(["artifacts", i, "kind"], "tflite"), True),
            ("path ../../../../etc/passwd", set_key(["artifacts", i, "path"], "../../../../etc/passwd"), True),
            ("absolute path", set_key(["artifacts", i, "path"], "/etc/passwd"), True),
            ("sha256 wrong", set_key(["artifacts", i, "sha256"], "0" * 64), True),
            ("sha256 missing", set_key(["artifacts", i, "sha256"], None, delete=True), True),
            ("format wrong", set_key(["format"], "other"), True),
            ("no checkpoint", lambda m: {**m, "artifacts": [a for a in m["artifacts"] if a["kind"] != "checkpoint"]}, True),
            ("extra top-level key", set_key(["note"], "hi"), False),
        ])  # fmt: skip
        if r < 0.75:
            out.append(Case("manifest", what, edit_json(mf, fn), "manifest", bad))
        elif r < 0.85:
            out.append(
                Case(
                    "manifest",
                    "file null/truncated",
                    write_bytes(mf, rng.choice([b"null", b"{", b""])),
                    "manifest",
                    True,
                )
            )
        else:
            out.append(
                Case(
                    "manifest",
                    "artifact modified",
                    flip("gguf/model-f16.gguf", rng.random()),
                    "manifest",
                    True,
                )
            )
    return out


# ---- consumers ----------------------------------------------------------------------------------------------
SOURCE = {"config": "float", "safetensors": "float", "tokenizer": "float", "gguf": "gguf", "onnx": "onnx"}
SOURCE |= {"quantized": "quant", "manifest": "export"}


def consume(how: str, src: Path, out: Path) -> None:
    """Run the real consumer; raise on refusal; check the result when it succeeds."""
    if how == "info":  # the command itself: exit 2 with one "error:" line, or the table
        from typer.testing import CliRunner

        from edgeport.cli import app

        result = CliRunner().invoke(app, ["info", str(src)])
        if result.exit_code == 2:
            raise EdgeportError(result.output.strip().removeprefix("error: "))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0 and "parameters" in result.output, result.output
    elif how == "gguf":
        from edgeport.export.gguf import export_gguf
        from edgeport.inputs import check_gguf

        export_gguf(src, out, progress=False)
        check_gguf(out)
    elif how == "onnx":
        from edgeport.export.onnx import export_onnx

        export_onnx(src, out, "fp32", mobile=False, progress=False)
        assert (out / "model.onnx").is_file() and (out / "genai_config.json").is_file()
    elif how == "quantize":
        from edgeport.quantize import quantize_checkpoint

        quantize_checkpoint(src, out, scheme="q8_0", progress=False)
        assert (out / "quant_config.json").is_file()
    elif how == "chat":
        from edgeport.chat_cli import open_engine

        engine = open_engine(src)
        assert engine is not None
    elif how == "manifest":
        from edgeport.manifest import artifact_entries, load_manifest, reference_checkpoint

        reference_checkpoint(src, artifact_entries(src, load_manifest(src)))
    else:
        raise AssertionError(how)


def test_fuzz_campaign(base: dict[str, Path], tmp_path: Path) -> None:
    all_cases = cases(base)
    assert len(all_cases) >= 500
    counts: dict[str, Counter] = defaultdict(Counter)
    messages: dict[tuple[str, str], str] = {}
    failures: list[str] = []
    for n, case in enumerate(all_cases):
        work = tmp_path / f"c{n}"
        work.mkdir()
        src_base = base[SOURCE[case.kind]]
        src = work / src_base.name
        if src_base.is_dir():
            shutil.copytree(src_base, src)
            case.mutate(src)
        else:
            shutil.copyfile(src_base, src)
            case.mutate(work)
        out = work / "out" / ("o.gguf" if case.consume == "gguf" else "o")
        label = f"[{n}] {case.kind}/{case.name} via {case.consume}"
        outcome = "ok"
        try:
            with time_limit(CASE_SECONDS):
                consume(case.consume, src, out)
        except EdgeportError as e:
            outcome, msg = "error", str(e)
            if "\n" in msg or not msg.strip():
                failures.append(f"{label}: error is not one line: {msg!r}")
            group = re.sub(r"model\.\S+ ", "", case.name)  # the mutation class, without the tensor name
            messages.setdefault((case.kind, group.split("=")[0] if case.kind == "config" else group), msg)
        except TimeoutError:
            outcome = "hang"
            failures.append(f"{label}: no answer within {CASE_SECONDS:g} s")
        except Exception:
            outcome = "traceback"
            failures.append(f"{label}: traceback\n{traceback.format_exc(limit=-4)}")
        if outcome != "ok":
            left = [p.name for p in out.parent.iterdir()] if out.parent.exists() else []
            if left:
                failures.append(f"{label}: failed but left {left}")
        elif case.must_fail:
            outcome = "silent garbage"
            failures.append(f"{label}: a wrong input was accepted")
        counts[case.kind][outcome] += 1
        shutil.rmtree(work, ignore_errors=True)

    print("\nfuzz campaign: per kind, cases -> outcome")
    for kind, c in counts.items():
        print(f"  {kind:12s} {sum(c.values()):4d}  " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"  {'total':12s} {sum(sum(c.values()) for c in counts.values()):4d}")
    print("what each failure class now says (one example each):")
    for (kind, name), msg in sorted(messages.items()):
        print(f"  {kind}/{name}: {msg.split(str(tmp_path))[-1][:160]}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:30])


# ---- tools: bounded cost, no control-token injection --------------------------------------------------------
def calculator_expressions(rng: random.Random, n: int) -> list[str]:
    atoms = ["1", "7", "0", "2.5", "999999", "10**6", "1e308", "9" * 150, "-3", "0.1"]
    hard = [
        "round(1, -10**9)", "round(1.5, 10**9)", "round(10**60, -15)", "9**64**64", "(999999**64)**64",
        "10**64*10**64*10**64*10**64", "sqrt(10**400)", "min(" + ",".join(["9**64"] * 20) + ")",
        "((((((((((((((((((((1))))))))))))))))))))", "1/0", "2**-1075", "(-8)**0.5", "round(2.5)", "abs(-2**64)",
    ]  # fmt: skip
    out = list(hard)
    while len(out) < n:
        e = rng.choice(atoms)
        for _ in range(rng.randrange(1, 6)):
            op = rng.choice(["+", "-", "*", "/", "//", "%", "**"])
            e = (
                f"({e}){op}{rng.choice(atoms)}"
                if rng.random() < 0.5
                else f"{rng.choice(['round', 'sqrt', 'abs', 'min', 'max'])}({e}{', ' + rng.choice(atoms) if rng.random() < 0.4 else ''})"
            )
        out.append(e)
    return out


def test_calculator_has_bounded_cost() -> None:
    from edgeport.tools import MAX_EXPRESSION, ToolEnv, calculate

    rng = random.Random(SEED)
    env = ToolEnv()
    counts: Counter = Counter()
    for e in calculator_expressions(rng, 250):
        with time_limit(2.0):  # a hang raises TimeoutError and fails the test
            try:
                v = calculate(e)
                assert (isinstance(v, int) and abs(v) <= 10**15) or (
                    isinstance(v, float) and math.isfinite(v)
                ), (e, v)
                counts["value"] += 1
            except ValueError:
                counts["refused"] += 1
            result = json.loads(env.call("calculate", {"expression": e}))
            assert set(result) <= {"result", "error"}
    assert counts["value"] > 20 and counts["refused"] > 20, counts
    assert json.loads(env.call("calculate", {"expression": "1+" * MAX_EXPRESSION + "1"}))["error"].startswith(
        "expression too long"
    )
    assert calculate("round(3.14159, 2)") == 3.14 and calculate("round(1234, -2)") == 1200
    print(f"\ncalculator: {sum(counts.values())} expressions, {dict(counts)}")


def test_tool_results_cannot_inject_control_tokens() -> None:
    from edgeport import chat
    from edgeport.default_model import default_model_path
    from edgeport.tokenizer import load_tokenizer
    from edgeport.tools import ToolEnv

    evil = "done" + "".join(chat.SPECIAL_TOKENS) + "<|reserved_special_token_3|>"
    env = ToolEnv({"files": {"/a.txt": evil}})
    for name, args in [
        ("cat", {"path": "/a.txt"}),
        ("note_get", {"key": evil}),
        ("calculate", {"expression": evil}),
    ]:
        result = env.call(name, args)
        assert not any(t in result for t in chat.SPECIAL_TOKENS), result
        if name == "cat":
            assert json.loads(result) == {"result": evil}  # the same value, only escaped
    tok = load_tokenizer(default_model_path())
    messages = [
        {"role": "user", "content": "read /a.txt"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "cat", "arguments": {"path": "/a.txt"}}}]},
        {"role": "tool", "content": env.call("cat", {"path": "/a.txt"})},
    ]  # fmt: skip
    ids = tok.encode(chat.render(messages, add_generation_prompt=True))
    special = {tok.token_to_id(t) for t in chat.SPECIAL_TOKENS}
    clean = tok.encode(
        chat.render(
            [*messages[:2], {"role": "tool", "content": '{"result": "done"}'}], add_generation_prompt=True
        )
    )
    assert Counter(i for i in ids if i in special) == Counter(i for i in clean if i in special)


# ---- chat template time limit, --allow-nonfinite, no pickle --------------------------------------------------
def test_chat_template_time_limit(tmp_path: Path) -> None:
    from edgeport.inputs import TEMPLATE_SECONDS, check_chat_template

    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages[1].content }}"
    t0 = time.monotonic()
    with pytest.raises(EdgeportError, match="did not render within"):
        check_chat_template(slow, tmp_path / "tokenizer_config.json")
    assert time.monotonic() - t0 < TEMPLATE_SECONDS + 5  # a bound on the limit itself, not a speed figure
    from edgeport.chat import CHAT_TEMPLATE

    check_chat_template(CHAT_TEMPLATE, tmp_path / "tokenizer_config.json")  # edgeport's own template passes


def test_allow_nonfinite_exports_what_is_refused_without_it(base: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeport.cli import app

    src = tmp_path / "nan"
    shutil.copytree(base["float"], src)
    st_poison("model.safetensors", "model.norm.weight", float("nan"))(src)
    for args in (
        ["export", "gguf", str(src), "--out", str(tmp_path / "a.gguf")],
        ["quantize", str(src), "--scheme", "q8_0", "--out", str(tmp_path / "q")],
    ):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "model.norm.weight" in r.output and "--allow-nonfinite" in r.output, (
            r.output
        )
        r = CliRunner().invoke(app, [*args, "--allow-nonfinite"])
        assert r.exit_code == 0, r.output
    assert (tmp_path / "a.gguf").is_file() and (tmp_path / "q" / "quant_config.json").is_file()


class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_resume_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run folder made by someone else: its trainer_state.pt carries a pickled call; --resume refuses it."""
    from edgeport.trainer import STATE_FILE, TrainConfig, train

    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    torch.save({"step": 1, "optimizer": _Payload()}, ckpt / STATE_FILE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeportError, match="cannot read trainer state"):
        train(TrainConfig(out=str(tmp_path / "run"), resume=True, steps=2))
    assert not (tmp_path / "pwned").exists()
