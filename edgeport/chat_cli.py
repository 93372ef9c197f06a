"""`edgeport chat`: offline chat on a laptop with a checkpoint (torch), a .gguf (llama.cpp) or an ONNX export.

The conversation is kept as a list of messages and rendered with edgeport.chat.render(add_generation_prompt=True,
enable_thinking=False) before every model call. Tokens are streamed as they are generated. When the reply holds
`<tool_call>{...}</tool_call>`, each call runs for real in an edgeport.tools.ToolEnv, its result is appended as a
tool message and the model continues (the agent loop), until it answers without a tool call.

An `Engine` is a tokenizer plus a greedy token stream `step(prompt_ids, max_new_tokens, stop_ids) -> Iterator[int]`;
`open_engine` builds one per runtime, and tests can pass their own `step` to script the model's side.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError

RUNTIMES = ("torch", "llamacpp", "onnx")
StepFn = Callable[[list[int], int, Sequence[int]], Iterator[int]]


@dataclass
class Engine:
    """A tokenizer (.encode/.decode/.eos_id) and a greedy token stream over one loaded model."""

    name: str
    tokenizer: Any
    step: StepFn
    context_length: int = 4096
    close: Callable[[], None] = field(default=lambda: None)


# ---------------------------------------------------------------- opening a model
def detect_runtime(path: Path) -> str:
    """torch for a checkpoint folder, llamacpp for a .gguf file, onnx for an export folder (genai_config.json)."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "llamacpp"
        if path.suffix.lower() in (".onnx", ".ort"):
            return "onnx"
        raise EdgeportError("not a .gguf file, a checkpoint folder or an ONNX export folder", path)
    if (path / "genai_config.json").is_file():
        return "onnx"
    if (path / "config.json").is_file():
        return "torch"
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return "llamacpp"
    raise EdgeportError(
        "no config.json, genai_config.json or .gguf here: not a model this chat can load", path
    )


def open_engine(model: str | Path | None = None, runtime: str | None = None) -> Engine:
    """Load `model` (default: the embedded model) with `runtime` (default: guessed from what the path holds)."""
    if model is None:
        from edgeport.default_model import default_model_path

        path = default_model_path()
    else:
        path = Path(model)
    if not path.exists():
        raise EdgeportError("no such file or folder", path)
    if runtime is not None and runtime not in RUNTIMES:
        raise EdgeportError(f"unknown runtime {runtime!r} (choose one of {', '.join(RUNTIMES)})")
    found = detect_runtime(path)
    runtime = runtime or found
    if runtime != found:
        raise EdgeportError(f"holds a {found} model, not one for --runtime {runtime}", path)
    return {"torch": _torch_engine, "llamacpp": _llamacpp_engine, "onnx": _onnx_engine}[runtime](path)


def _load_tokenizer(folder: Path) -> Any:
    from edgeport.tokenizer import load_tokenizer

    if not (folder / "tokenizer.json").is_file():
        raise EdgeportError("no tokenizer.json next to the model", folder)
    return load_tokenizer(folder)


def _torch_engine(folder: Path) -> Engine:
    import torch

    from runtimes.torch_ref import load_torch_model

    model = load_torch_model(folder)
    tokenizer = _load_tokenizer(folder)

    @torch.no_grad()
    def step(ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> Iterator[int]:
        cache = model.new_cache()  # absorbed attention over the latent cache, as on every other runtime
        logits = model(torch.tensor([ids]), cache=cache, absorbed=True)
        for i in range(max_new_tokens):
            nxt = int(logits[0, -1].argmax())
            yield nxt
            if nxt in stop_ids or i == max_new_tokens - 1:
                return
            logits = model(torch.tensor([[nxt]]), cache=cache, absorbed=True)

    return Engine("torch", tokenizer, step, model.config.max_position_embeddings)


def _onnx_engine(path: Path) -> Engine:
    """onnxruntime-genai over the export folder; plain onnxruntime (model.ort, else model.onnx) when genai cannot
    load it. Both run the latent cache as key/value halves, as genai_config.json describes."""
    folder = path if path.is_dir() else path.parent
    if not (folder / "genai_config.json").is_file():
        raise EdgeportError("no genai_config.json in the ONNX export folder", folder)
    try:
        cfg = json.loads((folder / "genai_config.json").read_text())
        context = int(cfg["model"].get("context_length", 4096))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise EdgeportError(f"unreadable genai_config.json ({e})", folder / "genai_config.json") from None
    tokenizer = _load_tokenizer(folder)
    try:
        import onnxruntime_genai as og

        model = og.Model(str(folder))
    except Exception:  # genai raises a bare RuntimeError for a config or graph it does not take
        return Engine("onnx (onnxruntime)", tokenizer, ort_step(folder, cfg), context)

    def step(ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> Iterator[int]:
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=min(context, len(ids) + max_new_tokens))
        gen = og.Generator(model, params)
        gen.append_tokens(ids)
        for _ in range(max_new_tokens):
            if gen.is_done():
                return
            gen.generate_next_token()
            nxt = int(gen.get_next_tokens()[0])
            yield nxt
            if nxt in stop_ids:
                return

    return Engine("onnx (onnxruntime-genai)", tokenizer, step, context)


def ort_step(folder: Path, cfg: dict) -> StepFn:
    """Greedy decoding in plain onnxruntime: prefill, then one token at a time, feeding present.N.key/value back as
    past_key_values.N.key/value. The same loop android_demo's LatentDecoder.java runs on the phone."""
    import numpy as np
    import onnxruntime as ort

    dec = cfg["model"]["decoder"]
    names, outs = dec["inputs"], dec["outputs"]
    file = folder / "model.ort" if (folder / "model.ort").is_file() else folder / dec["filename"]
    try:
        sess = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise EdgeportError(f"onnxruntime cannot load it: {str(e).splitlines()[0]}", file) from None
    graph_inputs = {i.name for i in sess.get_inputs()}
    n_layers, kv_heads, head = dec["num_hidden_layers"], dec["num_key_value_heads"], dec["head_size"]
    pk, pv = (
        names.get("past_key_names", "past_key_values.%d.key"),
        names.get("past_value_names", "past_key_values.%d.value"),
    )
    ok, ov = (
        outs.get("present_key_names", "present.%d.key"),
        outs.get("present_value_names", "present.%d.value"),
    )

    def step(ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> Iterator[int]:
        past = [np.zeros((1, kv_heads, 0, head), np.float32) for _ in range(2 * n_layers)]
        new, pos = list(ids), 0
        for _ in range(max_new_tokens):
            feeds = {names.get("input_ids", "input_ids"): np.array([new], np.int64)}
            if names.get("attention_mask", "attention_mask") in graph_inputs:
                feeds[names.get("attention_mask", "attention_mask")] = np.ones((1, pos + len(new)), np.int64)
            if names.get("position_ids", "position_ids") in graph_inputs:
                feeds[names.get("position_ids", "position_ids")] = np.arange(
                    pos, pos + len(new), dtype=np.int64
                )[None]
            for layer in range(n_layers):
                feeds[pk % layer], feeds[pv % layer] = past[2 * layer], past[2 * layer + 1]
            wanted = [outs.get("logits", "logits")] + [
                n % layer for layer in range(n_layers) for n in (ok, ov)
            ]
            res = sess.run(wanted, feeds)
            past, pos = res[1:], pos + len(new)
            nxt = int(np.argmax(res[0][0, -1]))
            yield nxt
            if nxt in stop_ids:
                return
            new = [nxt]

    return step


class _GgufTokenizer:
    """The GGUF's own tokenizer through llama.cpp (used when no tokenizer.json sits next to the .gguf)."""

    def __init__(self, rt: Any) -> None:
        self.rt, self.lc = rt, rt.lc
        self.eos_id = int(self.lc.llama_vocab_eos(rt.vocab))

    def encode(self, text: str) -> list[int]:
        return self.rt.tokenize(text)  # special tokens parsed, no BOS added

    def decode(self, ids: Sequence[int]) -> str:
        import ctypes

        out = b""
        buf = ctypes.create_string_buffer(256)
        for t in ids:
            n = self.lc.llama_token_to_piece(self.rt.vocab, int(t), buf, len(buf), 0, True)
            out += buf.raw[: max(n, 0)]
        return out.decode("utf-8", errors="replace")


def _llamacpp_engine(path: Path) -> Engine:
    """llama.cpp through runtimes.llamacpp (f32 latent cache: 576 floats/token/layer for Youtu-2B, so cheap)."""
    from runtimes.llamacpp import LlamaCpp

    if path.is_dir():
        path = sorted(path.glob("*.gguf"))[0]
    rt = LlamaCpp(path, kv_type="f32", flash_attn=False)
    tokenizer = (
        _load_tokenizer(path.parent) if (path.parent / "tokenizer.json").is_file() else _GgufTokenizer(rt)
    )

    def step(ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> Iterator[int]:
        if len(ids) + max_new_tokens > rt.n_ctx:
            max_new_tokens = rt.n_ctx - len(ids)
        rt._clear()  # the adapter's own prefill/decode steps, one token at a time so the chat can stream
        rt._decode(ids, 0, all_logits=False)
        for i in range(max_new_tokens):
            nxt = int(rt._row(-1).argmax())
            yield nxt
            if nxt in stop_ids or i == max_new_tokens - 1:
                return
            rt._decode([nxt], len(ids) + i, all_logits=False)

    return Engine("llamacpp", tokenizer, step, rt.n_ctx, rt.close)


# ---------------------------------------------------------------- the conversation
def _stream_text(tokenizer: Any, ids: list[int]) -> str:
    """Decoded text of `ids`, holding back a trailing partial UTF-8 character (shown as U+FFFD)."""
    text = tokenizer.decode(ids)
    return text[:-1] if text.endswith("\ufffd") else text


@dataclass
class ChatSession:
    """One conversation. `ask(text)` runs a user turn: generate, execute tool calls, continue, return the answer."""

    engine: Engine
    tools: Sequence[str] | None = None  # tool names offered to the model; None = no tools
    env: Any = None  # an edgeport.tools.ToolEnv; created on first use
    system: str | None = None
    max_new_tokens: int = 256
    max_tool_rounds: int = 4
    messages: list[dict] = field(default_factory=list)

    def reset(self) -> None:
        self.messages = [] if not self.system else [{"role": "system", "content": self.system}]

    def __post_init__(self) -> None:
        self.reset()

    def prompt_ids(self) -> list[int]:
        from edgeport.chat import render
        from edgeport.tools import schemas

        tools = schemas(list(self.tools)) if self.tools else None
        text = render(self.messages, tools=tools, add_generation_prompt=True, enable_thinking=False)
        ids = self.engine.tokenizer.encode(text)
        room = self.engine.context_length - len(ids)
        if room <= 0:
            raise EdgeportError(
                f"the conversation is {len(ids)} tokens, the model's context is {self.engine.context_length} "
                "(start over with /reset, or offer fewer tools)"
            )
        return ids

    def generate(self, on_text: Callable[[str], None] | None = None) -> str:
        """One model call on the current conversation; streams text through on_text, returns the full reply."""
        ids = self.prompt_ids()
        tok = self.engine.tokenizer
        budget = min(self.max_new_tokens, self.engine.context_length - len(ids))
        out: list[int] = []
        shown = ""
        for t in self.engine.step(ids, budget, (tok.eos_id,)):
            if t == tok.eos_id:
                break
            out.append(t)
            text = _stream_text(tok, out)
            if on_text is not None and len(text) > len(shown) and text.startswith(shown):
                on_text(text[len(shown) :])
                shown = text
        text = tok.decode(out)
        if on_text is not None and text != shown:
            on_text(text[len(shown) :] if text.startswith(shown) else "\n" + text)
        return text

    def ask(
        self,
        text: str,
        on_text: Callable[[str], None] | None = None,
        on_tool: Callable[[str, dict, str], None] | None = None,
    ) -> str:
        """Add a user message and run the agent loop; returns the final answer (the last reply's text)."""
        from edgeport.chat import TOOL_CALL_START, parse_tool_calls

        self.messages.append({"role": "user", "content": text})
        for _ in range(self.max_tool_rounds + 1):
            reply = self.generate(on_text)
            calls = parse_tool_calls(reply) if self.tools else []
            if not calls:
                self.messages.append({"role": "assistant", "content": reply})
                return reply
            self.messages.append(
                {
                    "role": "assistant",
                    "content": reply.split(TOOL_CALL_START, 1)[0].strip(),
                    "tool_calls": [{"type": "function", "function": c} for c in calls],
                }
            )
            for c in calls:
                result = self.tool_env().call(c["name"], c["arguments"])
                if on_tool is not None:
                    on_tool(c["name"], c["arguments"], result)
                self.messages.append({"role": "tool", "content": result})
        return reply  # still calling tools after max_tool_rounds: stop here, the calls are in the transcript

    def tool_env(self) -> Any:
        if self.env is None:
            from edgeport.tools import ToolEnv

            self.env = ToolEnv()
        return self.env


# ---------------------------------------------------------------- the terminal loop
def run_chat(
    model: str | Path | None = None,
    runtime: str | None = None,
    tools: bool = True,
    tool_names: Sequence[str] | None = None,
    prompt: str | None = None,
    max_new_tokens: int = 256,
    system: str | None = None,
    write: Callable[[str], Any] | None = None,
    read: Callable[[str], str] = input,
) -> ChatSession:
    """`prompt` given: answer it and return. Otherwise read lines until /exit or end of input (/reset starts over)."""
    from edgeport.tools import TOOL_NAMES

    write = write or _stdout
    names = list(tool_names) if tool_names else list(TOOL_NAMES)
    unknown = [n for n in names if n not in TOOL_NAMES]
    if unknown:
        raise EdgeportError(f"unknown tool {unknown[0]!r} (known: {', '.join(TOOL_NAMES)})")
    engine = open_engine(model, runtime)
    session = ChatSession(
        engine, tools=names if tools else None, system=system, max_new_tokens=max_new_tokens
    )

    def on_tool(name: str, args: dict, result: str) -> None:
        write(f"\n[tool] {name}({json.dumps(args, ensure_ascii=False)}) -> {result}\n")

    try:
        if prompt is not None:
            session.ask(prompt, write, on_tool)
            write("\n")
            return session
        write(
            f"edgeport chat ({engine.name}, {len(session.tools or [])} tools). /reset starts over, /exit quits.\n"
        )
        while True:
            try:
                line = read("you> ").strip()
            except EOFError:
                write("\n")
                break
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                session.reset()
                write("(conversation cleared)\n")
                continue
            if not line:
                continue
            write("model> ")
            session.ask(line, write, on_tool)
            write("\n")
    finally:
        engine.close()
    return session


def _stdout(s: str) -> None:
    sys.stdout.write(s)
    sys.stdout.flush()
