"""Constrained tool calls: inside `<tool_call>...</tool_call>` the model can only write a call to an offered tool.

`ToolCallConstraint` is a logits processor (runtimes.base.LogitsProcessor) for one model reply. Outside a call
the text is free. Once the model emits the `<tool_call>` token, every next token is masked by a JSON grammar
built from the offered tools' schemas: `{"name": <one offered name>, "arguments": {<its parameters, required
keys, JSON types>}}`, written with the separators the chat template uses (", " and ": "), and when the object is
complete only `</tool_call>` may follow. So a constrained call always parses and names an offered tool.
`mode` follows OpenAI's tool_choice: "auto" (free text or calls), "required" (the reply starts with a call),
"none" (no call can start; also what a reply with no tools offered gets).

The grammar engine is llguidance (the Rust library behind llama.cpp's and vLLM's structured output): it turns a
JSON schema into a token mask for any tokenizer (the tokenizer.json of a checkpoint or ONNX folder, or a GGUF's
own vocabulary through llama.cpp), which a hand-written matcher would have to redo for byte-level BPE pieces.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeport import chat
from edgeport.errors import EdgeportError

MODES = ("auto", "required", "none")
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_LLTOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def call_schema(tools: Sequence[dict]) -> dict:
    """The JSON schema of one call to any of `tools` (OpenAI function format). Parameters without an
    `additionalProperties` get false: a call may only use the keys its tool declares."""
    alts = []
    for t in tools:
        fn = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise EdgeportError(
                f"a tool must look like {{'type': 'function', 'function': {{'name': ...}}}}, got {t!r:.80}"
            )
        params = copy.deepcopy(fn.get("parameters") or {"type": "object", "properties": {}})
        if isinstance(params, dict) and params.get("type") == "object":
            params.setdefault("additionalProperties", False)
        alts.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": alts}


def _lltokenizer(tok: Any) -> Any:
    """llguidance's view of `tok`: from tokenizer.json (edgeport.tokenizer.Tokenizer) or from a GGUF's vocabulary
    (an object with `llguidance_tokenizer()`, see edgeport.chat_cli). Built once per tokenizer object."""
    try:
        return _LLTOKENIZERS[tok]
    except (KeyError, TypeError):
        pass
    import llguidance

    if hasattr(tok, "llguidance_tokenizer"):
        lt = tok.llguidance_tokenizer()
    else:
        lt = llguidance.LLTokenizer(tok.hf.to_str(), eos_token=tok.eos_id)
    try:
        _LLTOKENIZERS[tok] = lt
    except TypeError:
        pass
    return lt


class ToolCallConstraint:
    """A logits processor for one reply (it keeps the state of the call being written; make one per reply)."""

    def __init__(self, tok: Any, tools: Sequence[dict], mode: str = "auto") -> None:
        import llguidance

        if mode not in MODES:
            raise EdgeportError(f"unknown tool-call mode {mode!r} (choose one of {', '.join(MODES)})")
        self.start = tok.token_to_id(chat.TOOL_CALL_START)
        self.end = tok.token_to_id(chat.TOOL_CALL_END)
        if self.start is None or self.end is None:
            raise EdgeportError("the tokenizer has no <tool_call> / </tool_call> tokens to constrain")
        self.eos = tok.eos_id
        self.mode = mode
        self._tok, self.tools = tok, list(tools)
        self.tokenizer: Any = None  # llguidance's tokenizer and the call grammar, built when a call starts
        self.grammar = ""
        self._llg = llguidance
        self.matcher: Any = None  # set while a call is being written
        self.calls = 0  # calls completed in this reply
        self._seen = 0

    def _advance(self, token: int) -> None:
        if self.matcher is None:
            if token == self.start:
                if not self.grammar:
                    self.tokenizer = _lltokenizer(self._tok)
                    self.grammar = self._llg.LLMatcher.grammar_from_json_schema(
                        call_schema(self.tools), defaults=_JSON_STYLE
                    )
                self.matcher = self._llg.LLMatcher(self.tokenizer, self.grammar, log_level=0)
                if self.matcher.is_error():
                    raise EdgeportError(f"invalid tool schema: {self.matcher.get_error()}")
        elif token == self.end:
            self.matcher, self.calls = None, self.calls + 1
        else:
            self.matcher.consume_token(int(token))

    def __call__(self, generated: Sequence[int], logits: np.ndarray) -> np.ndarray:
        for t in generated[self._seen :]:
            self._advance(int(t))
        self._seen = len(generated)
        if self.matcher is None:
            if self.mode == "none":
                out = np.array(logits, np.float32, copy=True)
                out[self.start] = -np.inf
                return out
            if self.mode == "required" and self.calls == 0:
                return self._only([self.start], logits)
            return logits
        allowed = self._allowed()
        if self.matcher.is_accepting():
            allowed[self.end] = True
        allowed[self.eos] = self.eos == self.end  # llguidance marks "done" with EOS; here the call must close
        if not allowed.any():  # the matcher failed (it should not): let the reply end rather than loop
            allowed[self.end] = True
        out = np.full(len(logits), -np.inf, np.float32)
        n = min(len(allowed), len(logits))
        out[:n] = np.where(allowed[:n], logits[:n], -np.inf)
        return out

    def _allowed(self) -> np.ndarray:
        n = self.tokenizer.vocab_size
        mask = np.full((n + 31) // 32, -1, np.int32)
        self.matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[:n].astype(bool)
        return np.concatenate([bits, np.zeros(max(0, max(self.end, self.eos) + 1 - n), bool)])

    def _only(self, ids: list[int], logits: np.ndarray) -> np.ndarray:
        out = np.full(len(logits), -np.inf, np.float32)
        out[ids] = np.asarray(logits, np.float32)[ids]
        return out
