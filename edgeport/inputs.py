"""One validation layer for every input edgeport reads, run before any work.

Each check raises EdgeportError with one line naming the file, the key or tensor, and the problem:
config.json values (type, range, consistency), safetensors headers (before a byte of data is read), weights
(NaN/Inf refused unless `nonfinite_allowed(True)`, the CLI's --allow-nonfinite), tokenizer.json /
tokenizer_config.json and the chat template (rendered on a sample conversation in a sandboxed Jinja environment
within a time limit), GGUF headers, ONNX folders (genai_config.json), quantized-folder configs and export manifests
(schema, paths inside the folder, sha256, known kinds).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import EdgeportError

# ---- JSON files ---------------------------------------------------------------------------------------------
MAX_JSON_BYTES = 256 * 2**20


def read_json(path: str | Path, what: str = "a JSON object") -> Any:
    """A JSON file's value; one line for a missing, huge, non-UTF-8 or invalid file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise EdgeportError(f"too large for a JSON file ({path.stat().st_size} bytes)", path)
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise EdgeportError("missing file", path) from None
    except IsADirectoryError:
        raise EdgeportError(f"is a folder, expected {what}", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise EdgeportError(f"invalid JSON ({str(e).splitlines()[0][:120]})", path) from None
    except OSError as e:
        raise EdgeportError(f"cannot read ({e.strerror or e})", path) from None


def read_json_object(path: str | Path) -> dict[str, Any]:
    value = read_json(path)
    if not isinstance(value, dict):
        raise EdgeportError(f"expected a JSON object, got {type(value).__name__}", path)
    return value


# ---- config.json ----------------------------------------------------------------------------------------------
# key -> (low, high): the range a real model can have. Youtu-LLM-2B: 128256 vocab, 2048 hidden, 32 layers.
INT_RANGES: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 2**22),
    "hidden_size": (1, 65536),
    "intermediate_size": (1, 2**19),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1024),
    "kv_lora_rank": (1, 65536),
    "qk_nope_head_dim": (1, 4096),
    "qk_rope_head_dim": (2, 4096),
    "v_head_dim": (1, 4096),
    "max_position_embeddings": (1, 2**24),
}
OPTIONAL_INT_RANGES = {"q_lora_rank": (1, 65536), "num_key_value_heads": (1, 1024)}
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
BOOL_KEYS = ("tie_word_embeddings", "attention_bias", "rope_interleave")
MAX_PARAMETERS = 2 * 10**12  # a sanity bound far above any dense model a laptop or phone runs


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def check_config(raw: Any, path: str | Path) -> None:
    """config.json of a Youtu (Dense MLA) checkpoint: every value the model reads has the right type and range."""
    if not isinstance(raw, dict):
        raise EdgeportError(f"expected a JSON object, got {type(raw).__name__}", path)

    def bad(key: str, problem: str) -> EdgeportError:
        return EdgeportError(f"{key}: {problem}", path)

    for key, (lo, hi) in {**INT_RANGES, **OPTIONAL_INT_RANGES}.items():
        if key not in raw or (raw[key] is None and key in OPTIONAL_INT_RANGES):
            continue
        v = raw[key]
        if not _is_int(v):
            raise bad(key, f"must be an integer, got {json.dumps(v)[:40]}")
        if not lo <= v <= hi:
            raise bad(key, f"{v} is out of range ({lo}..{hi})")
    for key in BOOL_KEYS:
        if raw.get(key) is not None and not isinstance(raw[key], bool):
            raise bad(key, f"must be true or false, got {json.dumps(raw[key])[:40]}")
    for key in TOKEN_ID_KEYS:
        v = raw.get(key)
        ids = v if isinstance(v, list) and key == "eos_token_id" else [v]
        if v is not None and not all(_is_int(i) and 0 <= i < 2**31 for i in ids):
            raise bad(key, f"must be a non-negative integer or null, got {json.dumps(v)[:40]}")
    if "rms_norm_eps" in raw and not (_is_num(raw["rms_norm_eps"]) and 0 < raw["rms_norm_eps"] < 1):
        raise bad("rms_norm_eps", f"must be a number in (0, 1), got {json.dumps(raw['rms_norm_eps'])[:40]}")
    for key in ("rope_theta", "initializer_range"):
        v = raw.get(key)
        if v is not None and not (_is_num(v) and v > 0):
            raise bad(key, f"must be a positive number, got {json.dumps(v)[:40]}")
    for key in ("rope_parameters", "rope_scaling"):
        v = raw.get(key)
        if v is None:
            continue
        if not isinstance(v, dict):
            raise bad(key, f"must be an object or null, got {json.dumps(v)[:40]}")
        for k in ("rope_theta", "factor", "mscale_all_dim"):
            if v.get(k) is not None and not (_is_num(v[k]) and v[k] >= 0):
                raise bad(f"{key}.{k}", f"must be a non-negative number, got {json.dumps(v[k])[:40]}")
    for key in ("model_type", "hidden_act", "dtype", "torch_dtype"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise bad(key, f"must be a string, got {json.dumps(raw[key])[:40]}")
    if raw.get("architectures") is not None and not (
        isinstance(raw["architectures"], list) and all(isinstance(a, str) for a in raw["architectures"])
    ):
        raise bad("architectures", "must be a list of strings")
    if raw.get("qk_rope_head_dim", 2) % 2:
        raise bad("qk_rope_head_dim", f"must be even (rotary pairs), got {raw['qk_rope_head_dim']}")
    heads = raw.get("num_attention_heads")
    kv_heads = raw.get("num_key_value_heads")
    if _is_int(heads) and _is_int(kv_heads) and kv_heads != heads:
        raise bad("num_key_value_heads", f"{kv_heads} must equal num_attention_heads {heads} in Dense MLA")
    if all(_is_int(raw.get(k)) for k in ("vocab_size", "hidden_size", "num_hidden_layers")):
        n = _parameter_estimate(raw)
        if n > MAX_PARAMETERS:
            raise EdgeportError(f"implies about {n:.2e} parameters, beyond any model edgeport handles", path)


def _parameter_estimate(raw: dict[str, Any]) -> int:
    get = lambda k, d: raw.get(k) if _is_int(raw.get(k)) else d  # noqa: E731
    h, v, n = raw["hidden_size"], raw["vocab_size"], raw["num_hidden_layers"]
    heads, r = get("num_attention_heads", 1), get("kv_lora_rank", 1)
    dn, dr, dv = get("qk_nope_head_dim", 1), get("qk_rope_head_dim", 2), get("v_head_dim", 1)
    q = get("q_lora_rank", 0) or 0
    attn = (h * q + q * heads * (dn + dr)) if q else h * heads * (dn + dr)
    attn += h * (r + dr) + r * heads * (dn + dv) + heads * dv * h
    return 2 * v * h + n * (attn + 3 * h * get("intermediate_size", 1))


# ---- safetensors ------------------------------------------------------------------------------------------------
ST_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
    "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
MAX_HEADER = 100 * 2**20  # the safetensors library's own limit


def read_safetensors_header(path: str | Path) -> dict[str, dict[str, Any]]:
    """The checked header of a safetensors file: {name: {dtype, shape, data_offsets}} (no __metadata__).

    Checked before any tensor is read: header length within the file, UTF-8 JSON object, known dtypes, integer
    shapes, offsets inside the data section, end - begin == prod(shape) * itemsize, no overlaps or holes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise EdgeportError(
                    f"cannot read safetensors file: truncated ({size} bytes, no header)", path
                )
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > MAX_HEADER or 8 + n > size:
                raise EdgeportError(
                    f"cannot read safetensors file: header length {n} does not fit the file ({size} bytes)",
                    path,
                )
            blob = f.read(n)
    except OSError as e:
        raise EdgeportError(f"cannot read ({e.strerror or e})", path) from None
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise EdgeportError(
            f"cannot read safetensors file: header is not valid JSON ({str(e)[:80]})", path
        ) from None
    if not isinstance(header, dict):
        raise EdgeportError("cannot read safetensors file: header is not a JSON object", path)
    data = size - 8 - n
    out: dict[str, dict[str, Any]] = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise EdgeportError("safetensors __metadata__ must map strings to strings", path)
            continue
        if not isinstance(info, dict):
            raise EdgeportError(f"tensor {name!r}: header entry is not an object", path)
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in ST_ITEMSIZE:
            raise EdgeportError(f"tensor {name!r}: unknown dtype {json.dumps(dtype)[:20]}", path)
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(_is_int(d) and 0 <= d < 2**40 for d in shape)
        ):
            raise EdgeportError(
                f"tensor {name!r}: shape {json.dumps(shape)[:40]} is not a list of sizes", path
            )
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise EdgeportError(f"tensor {name!r}: data_offsets must be [begin, end]", path)
        begin, end = offsets
        if not 0 <= begin <= end <= data:
            raise EdgeportError(
                f"tensor {name!r}: data_offsets [{begin}, {end}] outside the {data}-byte data section", path
            )
        want = math.prod(shape) * ST_ITEMSIZE[dtype]
        if end - begin != want:
            raise EdgeportError(
                f"tensor {name!r}: {end - begin} bytes for {dtype}{shape} (expected {want})", path
            )
        out[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        spans.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a hole before it"
            raise EdgeportError(f"tensor {name!r}: data_offsets {what}", path)
        pos = end
    if pos != data:
        raise EdgeportError(f"data section has {data - pos} bytes no tensor uses (corrupt file)", path)
    return out


# ---- NaN / Inf weights ----------------------------------------------------------------------------------------
_allow_nonfinite = False  # a plain global, not a ContextVar: exporters read row chunks in worker threads


@contextlib.contextmanager
def nonfinite_allowed(allow: bool = True) -> Iterator[None]:
    """Within this block NaN/Inf weights are exported and quantized as they are (the CLI's --allow-nonfinite)."""
    global _allow_nonfinite
    before, _allow_nonfinite = _allow_nonfinite, allow
    try:
        yield
    finally:
        _allow_nonfinite = before


def check_finite(name: str, t: Any, path: str | Path) -> None:
    """Refuse a float tensor (torch or numpy) holding NaN or Inf, unless nonfinite_allowed()."""
    if _allow_nonfinite:
        return
    if hasattr(t, "is_floating_point"):  # torch
        if not t.is_floating_point() or bool(t.isfinite().all()):
            return
        bad = int((~t.isfinite()).sum())
    else:
        a = np.asarray(t)
        if a.dtype.kind != "f" or bool(np.isfinite(a).all()):
            return
        bad = int((~np.isfinite(a)).sum())
    raise EdgeportError(
        f"tensor {name!r} holds {bad} NaN/Inf value(s); fix the checkpoint, or pass --allow-nonfinite to "
        "export it anyway",
        path,
    )


# ---- time limit -----------------------------------------------------------------------------------------------
class _Expired(BaseException):
    """Raised by the SIGALRM handler; a BaseException so library code's `except Exception` does not eat it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError when the block runs longer than `seconds` (main thread only: SIGALRM interrupts
    Python code; elsewhere the block runs unbounded). Nests: an outer limit keeps its own deadline."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    start = time.monotonic()
    outer_delay = signal.getitimer(signal.ITIMER_REAL)[0]
    outer_handler = signal.getsignal(signal.SIGALRM)

    def expire(signum: int, frame: Any) -> None:
        raise _Expired

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_delay) if outer_delay else seconds)
    try:
        yield
    except _Expired:
        raise TimeoutError(f"took longer than {seconds:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_delay:  # the outer limit fires at its own deadline (at once if it has passed)
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - start), 1e-3))


# ---- tokenizer and chat template ------------------------------------------------------------------------------
TEMPLATE_SECONDS = 2.0
MAX_TEMPLATE_OUTPUT = 1 << 20
SAMPLE_USER = "What is 12 * 7? (edgeport template check)"
SAMPLE_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": SAMPLE_USER},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "calculate", "arguments": {"expression": "12*7"}}}
        ],
    },
    {"role": "tool", "content": '{"result": 84}'},
    {"role": "assistant", "content": "12 * 7 = 84."},
    {"role": "user", "content": "Thanks."},
]
SAMPLE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
]


def check_chat_template(template: Any, path: str | Path) -> None:
    """The template must render the sample conversation (with tools, a tool call and a tool result) in a sandboxed
    Jinja environment within TEMPLATE_SECONDS, and the output must contain the user's message."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if not isinstance(template, str) or not template.strip():
        raise EdgeportError(
            f"chat_template must be a non-empty string, got {json.dumps(template)[:40]}", path
        )

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    class Env(ImmutableSandboxedEnvironment):
        # bound `*` on strings/lists and `**` so a template cannot allocate gigabytes (range is bounded by Jinja)
        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and _is_num(right) and abs(right) > 64:
                raise TemplateError("exponent too large")
            if operator == "*" and isinstance(left, str | list | tuple) and _is_int(right) and right > 10**5:
                raise TemplateError("repetition too large")
            if operator == "*" and isinstance(right, str | list | tuple) and _is_int(left) and left > 10**5:
                raise TemplateError("repetition too large")
            return super().call_binop(context, operator, left, right)

    env = Env(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: time.strftime(str(fmt)))
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent)
    try:
        with time_limit(TEMPLATE_SECONDS):
            text = env.from_string(template).render(
                messages=SAMPLE_CONVERSATION,
                tools=SAMPLE_TOOLS,
                add_generation_prompt=True,
                bos_token="<|begin_of_text|>",
                eos_token="<|end_of_text|>",
            )
    except TimeoutError:
        raise EdgeportError(f"chat template did not render within {TEMPLATE_SECONDS:g} s", path) from None
    except RecursionError:
        raise EdgeportError("chat template recurses without end", path) from None
    except Exception as e:  # a broken template raises anything: syntax, undefined, type and sandbox errors
        raise EdgeportError(
            f"chat template cannot render a sample conversation ({type(e).__name__}: {str(e)[:100]})", path
        ) from None
    if len(text) > MAX_TEMPLATE_OUTPUT or SAMPLE_USER not in text:
        raise EdgeportError("chat template does not render the user's message of a sample conversation", path)


def check_tokenizer_folder(folder: str | Path, vocab_size: int | None = None) -> None:
    """tokenizer.json (byte-level BPE, ids inside the vocab, loadable by `tokenizers`), tokenizer_config.json
    (an object; special tokens and chat_template of the right types) and the chat template."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise EdgeportError("missing tokenizer.json", folder)
    tok = read_json_object(path)
    model = tok.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else model
        raise EdgeportError(f"model.type: {json.dumps(kind)[:30]} is not byte-level BPE", path)
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not vocab or not all(_is_int(i) and i >= 0 for i in vocab.values()):
        raise EdgeportError("model.vocab must map tokens to non-negative ids", path)
    if not isinstance(merges, list):
        raise EdgeportError("model.merges must be a list", path)
    added = tok.get("added_tokens") or []
    if not isinstance(added, list) or not all(
        isinstance(a, dict) and _is_int(a.get("id")) and a["id"] >= 0 and isinstance(a.get("content"), str)
        for a in added
    ):
        raise EdgeportError("added_tokens must be a list of {id, content}", path)
    top = max([*vocab.values(), *(a["id"] for a in added)])
    if vocab_size is not None and top >= vocab_size:
        raise EdgeportError(f"token id {top} does not fit config.json vocab_size {vocab_size}", path)
    try:
        import tokenizers

        tokenizers.Tokenizer.from_str(json.dumps(tok))
    except Exception as e:  # tokenizers raises a bare Exception for any schema error
        raise EdgeportError(f"tokenizers cannot load it ({str(e).splitlines()[0][:100]})", path) from None

    template = None
    cfg_path = folder / "tokenizer_config.json"
    if cfg_path.exists():
        tc = read_json_object(cfg_path)
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            v = tc.get(key)
            if v is not None and not isinstance(v, str) and not (isinstance(v, dict) and "content" in v):
                raise EdgeportError(f"{key}: must be a string, an AddedToken object or null", cfg_path)
        if tc.get("added_tokens_decoder") is not None and not isinstance(tc["added_tokens_decoder"], dict):
            raise EdgeportError("added_tokens_decoder: must be an object", cfg_path)
        template = tc.get("chat_template")
        if isinstance(template, list):  # transformers' named templates: [{name, template}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            if len(named) != len(template):
                raise EdgeportError("chat_template: a list must hold {name, template} objects", cfg_path)
            template = named.get("default", next(iter(named.values()), None))
        if template is not None:
            check_chat_template(template, cfg_path)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            text = jinja.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise EdgeportError("not UTF-8 text", jinja) from None
        check_chat_template(text, jinja)


# ---- GGUF -----------------------------------------------------------------------------------------------------
GGUF_MAGIC = b"GGUF"


def check_gguf(path: str | Path, arch: str = "deepseek2") -> None:
    """A GGUF file edgeport can hand to llama.cpp: magic, version, counts, every tensor inside the file, and
    the architecture and tokenizer keys present. Parsed with gguf-py's reader (no llama.cpp yet)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise EdgeportError(f"cannot read ({e.strerror or e})", path) from None
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise EdgeportError("not a GGUF file (bad magic or truncated header)", path)
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3):
        raise EdgeportError(f"unsupported GGUF version {version}", path)
    if n_tensors > 100_000 or n_kv > 100_000 or (n_tensors + n_kv) * 8 > size:
        raise EdgeportError(f"GGUF header claims {n_tensors} tensors and {n_kv} keys: corrupt", path)
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        fields = reader.fields
        got_arch = str(bytes(fields["general.architecture"].parts[-1]), "utf-8")
        for t in reader.tensors:
            end = int(t.data_offset) + int(t.n_bytes)
            if end > size or t.data.size * t.data.itemsize != int(t.n_bytes):
                raise ValueError(f"tensor {t.name} runs past the end of the file")
    except EdgeportError:
        raise
    except KeyError as e:
        raise EdgeportError(f"GGUF lacks key {e}", path) from None
    except Exception as e:  # gguf-py raises ValueError, struct/numpy errors, IndexError... for a corrupt file
        raise EdgeportError(f"corrupt GGUF ({type(e).__name__}: {str(e)[:100]})", path) from None
    if got_arch != arch:
        raise EdgeportError(f"GGUF architecture {got_arch!r}, expected {arch!r}", path)
    for key in (f"{arch}.block_count", "tokenizer.ggml.model", "tokenizer.ggml.tokens"):
        if key not in fields:
            raise EdgeportError(f"GGUF lacks key {key!r}", path)


# ---- ONNX export folder ---------------------------------------------------------------------------------------
def check_onnx_folder(folder: str | Path) -> dict[str, Any]:
    """genai_config.json's schema (model.decoder inputs/outputs, sizes), model.onnx present; returns the config."""
    folder = Path(folder)
    path = folder / "genai_config.json"
    cfg = read_json_object(path)
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise EdgeportError("model: missing or not an object", path)
    dec = model.get("decoder")
    if not isinstance(dec, dict):
        raise EdgeportError("model.decoder: missing or not an object", path)
    for key, (lo, hi) in {
        "context_length": (1, 2**24),
        "vocab_size": (1, 2**22),
        "eos_token_id": (0, 2**31),
        "bos_token_id": (0, 2**31),
    }.items():
        v = model.get(key)
        ids = v if isinstance(v, list) and key == "eos_token_id" else [v]
        if v is not None and not all(_is_int(i) and lo <= i <= hi for i in ids):
            raise EdgeportError(f"model.{key}: {json.dumps(v)[:30]} is not an integer in {lo}..{hi}", path)
    for key in ("num_hidden_layers", "num_key_value_heads", "head_size", "hidden_size"):
        v = dec.get(key)
        if v is not None and not (_is_int(v) and 0 < v <= 2**20):
            raise EdgeportError(f"model.decoder.{key}: {json.dumps(v)[:30]} is not a positive integer", path)
    for key in ("inputs", "outputs"):
        v = dec.get(key)
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise EdgeportError(f"model.decoder.{key}: must map names to strings", path)
    name = dec.get("filename", "model.onnx")
    if not isinstance(name, str) or not inside(folder, name):
        raise EdgeportError(
            f"model.decoder.filename {json.dumps(name)[:40]} must name a file in the folder", path
        )
    if not (folder / name).is_file():
        raise EdgeportError(f"missing {name}", folder)
    return cfg


# ---- quantized folder -----------------------------------------------------------------------------------------
def check_quant_config(qc: Any, path: str | Path, formats: set[str] | frozenset[str]) -> None:
    """quant_config.json's schema (docs/QUANT_FORMAT.md); `formats`: the tensor formats this edgeport reads."""
    if not isinstance(qc, dict):
        raise EdgeportError(f"expected a JSON object, got {type(qc).__name__}", path)
    for key, kind in (("format", str), ("scheme", str), ("method", str), ("tensors", dict)):
        if not isinstance(qc.get(key), kind):
            raise EdgeportError(f"{key}: missing or not a {kind.__name__}", path)
    if qc.get("block_size", 32) != 32:
        raise EdgeportError(f"block_size: {json.dumps(qc.get('block_size'))[:20]} (edgeport writes 32)", path)
    if not qc["tensors"]:
        raise EdgeportError("tensors: empty", path)
    for name, m in qc["tensors"].items():
        if not isinstance(m, dict):
            raise EdgeportError(f"tensors.{name}: expected an object, got {json.dumps(m)[:30]}", path)
        if m.get("format") not in formats:
            raise EdgeportError(
                f"tensors.{name}.format: unknown format {json.dumps(m.get('format'))[:30]}", path
            )
        shape = m.get("shape")
        if not (
            isinstance(shape, list)
            and 1 <= len(shape) <= 3
            and all(_is_int(d) and 0 < d < 2**32 for d in shape)
        ):
            raise EdgeportError(
                f"tensors.{name}.shape: {json.dumps(shape)[:40]} is not a list of sizes", path
            )
        if m.get("note") is not None and not isinstance(m["note"], str):
            raise EdgeportError(f"tensors.{name}.note: must be a string", path)


# ---- export manifest ------------------------------------------------------------------------------------------
ARTIFACT_KINDS = ("checkpoint", "quantized", "gguf", "onnx")


def inside(folder: str | Path, rel: str) -> bool:
    """`rel` is a relative path that stays inside `folder` (after resolving '..' and symbolic links)."""
    if not rel or os.path.isabs(rel) or "\0" in rel:
        return False
    base = Path(folder).resolve()
    target = (base / rel).resolve()
    return target == base or base in target.parents


def tree_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative name + NUL + bytes, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def check_manifest(folder: str | Path, manifest: Any, path: str | Path, verify_sha256: bool = True) -> None:
    """An export manifest: artifacts a non-empty list of {kind, precision, path, sha256}; kinds known; paths
    relative, inside the folder and present; sha256 matching the bytes on disk; one float checkpoint."""
    folder = Path(folder)
    if not isinstance(manifest, dict):
        raise EdgeportError(f"expected a JSON object, got {type(manifest).__name__}", path)
    arts = manifest.get("artifacts")
    if not isinstance(arts, list) or not arts:
        raise EdgeportError(f"artifacts: must be a non-empty list, got {json.dumps(arts)[:30]}", path)
    for i, a in enumerate(arts):
        where = f"artifacts[{i}]"
        if not isinstance(a, dict):
            raise EdgeportError(f"{where}: expected an object, got {json.dumps(a)[:30]}", path)
        if a.get("kind") not in ARTIFACT_KINDS:
            raise EdgeportError(
                f"{where}.kind: unknown kind {json.dumps(a.get('kind'))[:30]} (known: {', '.join(ARTIFACT_KINDS)})",
                path,
            )
        for key in ("precision", "path"):
            if not isinstance(a.get(key), str) or not a[key]:
                raise EdgeportError(f"{where}.{key}: missing or not a string", path)
        if not inside(folder, a["path"]):
            raise EdgeportError(f"{where}.path: {a['path'][:60]!r} leaves the export folder", path)
        target = folder / a["path"]
        if not target.exists():
            raise EdgeportError(f"{where}: artifact listed in the manifest is missing", target)
        digest = a.get("sha256")
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise EdgeportError(f"{where}.sha256: missing or not 64 hex digits", path)
        if verify_sha256 and tree_sha256(target) != digest:
            raise EdgeportError(
                f"{where}: sha256 does not match the bytes on disk (modified or corrupt)", target
            )
    if not any(a["kind"] == "checkpoint" for a in arts):
        raise EdgeportError("artifacts: no float checkpoint to use as the reference", path)
