"""`edgeport chat`: offline chat on a laptop with a checkpoint (torch), a .gguf (llama.cpp) or an ONNX export.

`open_engine` loads the model with its runtime adapter (runtimes/: torch, llama.cpp, onnxruntime-genai or plain
onnxruntime) and the tokenizer; the chat never decodes tokens itself, it reads the adapter's token stream. A
`ChatSession` keeps the messages and runs the agent turn of edgeport.agent (decode a reply, parse tool calls,
run the offered ones in an edgeport.tools.ToolEnv, append the results, continue) until the model answers.
`run_chat` is the terminal: one `--prompt` for scripts, or a REPL with commands (/help), line editing and
history (readline), Ctrl-C to stop an answer, and the oldest turns dropped when the context is full.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError
from edgeport.inputs import check_gguf, check_onnx_folder, check_tokenizer_folder
from edgeport.sampling import GREEDY, Sampler

RUNTIMES = ("torch", "llamacpp", "onnx")
Write = Callable[[str], Any]


@dataclass
class Engine:
    """A tokenizer (.encode/.decode/.eos_id/.token_to_id) and a token stream over one loaded model
    (an edgeport.agent.GenerateFn, normally a runtime adapter's `stream`)."""

    name: str
    tokenizer: Any
    generate: Callable[..., Any]
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


def model_path(model: str | Path | None) -> Path:
    """`model`, or the embedded default model; a missing path is an EdgeportError."""
    if model is None:
        from edgeport.default_model import default_model_path

        return default_model_path()
    path = Path(model)
    if not path.exists():
        raise EdgeportError("no such file or folder", path)
    return path


def open_engine(model: str | Path | None = None, runtime: str | None = None) -> Engine:
    """Load `model` (default: the embedded model) with `runtime` (default: guessed from what the path holds)."""
    path = model_path(model)
    if runtime is not None and runtime not in RUNTIMES:
        raise EdgeportError(f"unknown runtime {runtime!r} (choose one of {', '.join(RUNTIMES)})")
    found = detect_runtime(path)
    runtime = runtime or found
    if runtime != found:
        raise EdgeportError(f"holds a {found} model, not one for --runtime {runtime}", path)
    return {"torch": _torch_engine, "llamacpp": _llamacpp_engine, "onnx": _onnx_engine}[runtime](path)


def _engine(name: str, tokenizer: Any, rt: Any) -> Engine:
    from edgeport.agent import runtime_stream

    return Engine(name, tokenizer, runtime_stream(rt), rt.context_length or 4096, rt.close)


def _load_tokenizer(folder: Path) -> Any:
    from edgeport.tokenizer import load_tokenizer

    if not (folder / "tokenizer.json").is_file():
        raise EdgeportError("no tokenizer.json next to the model", folder)
    check_tokenizer_folder(folder)  # tokenizer.json, tokenizer_config.json and the chat template
    return load_tokenizer(folder)


def _torch_engine(folder: Path) -> Engine:
    from runtimes.torch_ref import TorchRef

    tokenizer = _load_tokenizer(folder)
    # absorbed attention over the latent cache, as on every other runtime
    return _engine("torch", tokenizer, TorchRef(folder, absorbed=True))


def _onnx_engine(path: Path) -> Engine:
    """onnxruntime-genai over the export folder; plain onnxruntime (model.ort, else model.onnx) when genai cannot
    load it. Both run the latent cache as key/value halves, as genai_config.json describes."""
    from runtimes.ort import OrtCpu, OrtGenai, OrtMobile

    folder = path if path.is_dir() else path.parent
    if not (folder / "genai_config.json").is_file():
        raise EdgeportError("no genai_config.json in the ONNX export folder", folder)
    check_onnx_folder(folder)  # genai_config.json's schema and model file, before onnxruntime sees them
    tokenizer = _load_tokenizer(folder)
    try:
        return _engine("onnx (onnxruntime-genai)", tokenizer, OrtGenai(folder))
    except Exception:  # genai raises a bare RuntimeError for a config or graph it does not take
        pass
    cls = OrtMobile if (folder / "model.ort").is_file() else OrtCpu
    try:
        rt = cls(folder)
    except EdgeportError:
        raise
    except Exception as e:
        raise EdgeportError(f"onnxruntime cannot load it: {str(e).splitlines()[0]}", folder) from None
    return _engine("onnx (onnxruntime)", tokenizer, rt)


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

    def token_to_id(self, token: str) -> int | None:
        ids = self.encode(token)
        return ids[0] if len(ids) == 1 else None

    def llguidance_tokenizer(self) -> Any:
        """The constraint's view of this vocabulary (edgeport.constrain), read from llama.cpp."""
        from llguidance.llamacpp import lltokenizer_from_vocab

        return lltokenizer_from_vocab(self.rt.vocab, eos_token=self.eos_id)


def _llamacpp_engine(path: Path) -> Engine:
    """llama.cpp through runtimes.llamacpp (f32 latent cache: 576 floats/token/layer for Youtu-2B, so cheap)."""
    from runtimes.llamacpp import LlamaCpp

    if path.is_dir():
        path = sorted(path.glob("*.gguf"))[0]
    check_gguf(path)  # header, counts, offsets, arch: one line before llama.cpp sees the file
    rt = LlamaCpp(path, kv_type="f32", flash_attn=False)
    tokenizer = (
        _load_tokenizer(path.parent) if (path.parent / "tokenizer.json").is_file() else _GgufTokenizer(rt)
    )
    return _engine("llamacpp", tokenizer, rt)


# ---------------------------------------------------------------- the conversation
@dataclass
class ChatSession:
    """One conversation. `ask(text)` runs a user turn: generate, execute tool calls, continue, return the answer."""

    engine: Engine
    tools: Sequence[str] | None = None  # tool names offered to the model; None = no tools
    env: Any = None  # an edgeport.tools.ToolEnv; created on first use
    system: str | None = None
    max_new_tokens: int = 256
    max_tool_rounds: int = 4
    sampler: Sampler = GREEDY
    constrain: bool = True  # tool calls decoded under edgeport.constrain
    thinking: bool = False  # let the model think (else the prompt holds an empty think block)
    messages: list[dict] = field(default_factory=list)

    def reset(self) -> None:
        self.messages = [] if not self.system else [{"role": "system", "content": self.system}]

    def __post_init__(self) -> None:
        self.reset()

    def set_system(self, text: str | None) -> None:
        """Replace the system prompt (the conversation so far stays)."""
        self.system = text or None
        self.messages = [m for m in self.messages if m["role"] != "system"]
        if self.system:
            self.messages.insert(0, {"role": "system", "content": self.system})

    def tool_schemas(self) -> list[dict] | None:
        from edgeport.tools import schemas

        return schemas(list(self.tools)) if self.tools else None

    def prompt_ids(self, on_note: Write | None = None) -> list[int]:
        """The prompt for the next reply. While it leaves less than a reply's room in the context, the oldest turn
        (a user message and everything after it up to the next one) is dropped and `on_note` is told; when the
        latest message alone does not fit, an EdgeportError says so."""
        from edgeport.agent import prompt_ids

        ctx = self.engine.context_length
        want = min(self.max_new_tokens, max(16, ctx // 8))  # the room a reply keeps at least
        messages, dropped = list(self.messages), 0
        while True:
            ids = prompt_ids(self.engine.tokenizer, messages, self.tool_schemas(), self.thinking)
            if ctx - len(ids) >= want:
                break
            users = [i for i, m in enumerate(messages) if m["role"] == "user"]
            if len(users) < 2:
                raise EdgeportError(
                    f"the message is {len(ids)} tokens with the tools and system prompt; the model's context "
                    f"is {ctx} and a reply needs {want} (send a shorter message, or offer fewer tools)"
                )
            del messages[users[0] : users[1]]
            dropped += 1
        self.messages[:] = messages
        if dropped and on_note is not None:
            on_note(
                f"(dropped the {dropped} oldest turn{'s' * (dropped > 1)} to fit the {ctx}-token context)\n"
            )
        return ids

    def ask(
        self,
        text: str,
        on_text: Write | None = None,
        on_tool: Callable[[str, dict, str], None] | None = None,
        on_note: Write | None = None,
    ) -> str:
        """Add a user message and run the agent loop; returns the final answer (the last reply's text). On an
        error or Ctrl-C the conversation is left as it was before the message."""
        from edgeport.agent import Reply, apply_reply

        user = {"role": "user", "content": text}
        self.messages.append(user)
        answer = ""
        try:
            for round in range(self.max_tool_rounds + 1):
                try:
                    ids = self.prompt_ids(on_note)
                except EdgeportError:
                    if round == 0:
                        raise
                    if on_note is not None:  # tool results filled the context: the turn ends here
                        on_note("\n(the tool results filled the model's context; /reset starts over)\n")
                    return answer
                budget = min(self.max_new_tokens, self.engine.context_length - len(ids))
                tools = self.tool_schemas()
                reply = Reply(self.engine.generate, self.engine.tokenizer, ids, budget, tools, self.sampler,
                              self.constrain)  # fmt: skip
                for piece in reply:
                    if on_text is not None:
                        on_text(piece)
                answer = reply.text
                if not tools:
                    self.messages.append({"role": "assistant", "content": answer})
                    return answer
                step = apply_reply(self.messages, answer, self.tools or (), self.tool_env())
                if step.malformed and on_note is not None:
                    on_note(
                        "\n(the model's tool call is not valid JSON for an offered tool; nothing was run)\n"
                    )
                for c in step.calls:
                    if on_tool is not None:
                        on_tool(c["name"], c["arguments"], c["result"])
                if not step.calls:
                    return answer
            return answer  # still calling tools after max_tool_rounds: the calls are in the transcript
        except BaseException:
            self.messages[:] = self.messages[: next(i for i, m in enumerate(self.messages) if m is user)]
            raise

    def tool_env(self) -> Any:
        if self.env is None:
            from edgeport.tools import ToolEnv

            self.env = ToolEnv()
        return self.env

    def save(self, path: Path) -> None:
        from edgeport.io import atomic_file

        state = {"system": self.system, "tools": list(self.tools or []), "messages": self.messages}
        with atomic_file(path, "w") as f:
            f.write(json.dumps(state, ensure_ascii=False, indent=1) + "\n")

    def load(self, path: Path) -> None:
        from edgeport.tools import TOOL_NAMES

        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            messages = state["messages"]
            tools = state.get("tools") or []
            ok = isinstance(messages, list) and all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant", "tool")
                for m in messages
            )
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise EdgeportError(f"cannot load a chat from it ({type(e).__name__}: {e})", path) from None
        if not ok or not all(t in TOOL_NAMES for t in tools):
            raise EdgeportError("not a chat saved by /save (bad messages or tools)", path)
        self.system, self.tools, self.messages = state.get("system"), tools or None, messages


# ---------------------------------------------------------------- the terminal
HELP = """commands:
  /help            this list
  /reset           start over (the system prompt stays)
  /system [TEXT]   show or set the system prompt
  /tools [A,B|all|none]  show or set the tools offered to the model
  /save FILE       save the conversation as JSON
  /load FILE       load a conversation saved with /save
  /exit            quit (also Ctrl-D, or Ctrl-C twice)
Ctrl-C during an answer stops it.
"""


def run_chat(
    model: str | Path | None = None,
    runtime: str | None = None,
    tools: bool = True,
    tool_names: Sequence[str] | None = None,
    prompt: str | None = None,
    max_new_tokens: int = 256,
    system: str | None = None,
    write: Write | None = None,
    read: Callable[[str], str] = input,
    sampler: Sampler = GREEDY,
    constrain: bool = True,
    thinking: bool = False,
) -> ChatSession:
    """`prompt` given: answer it and return. Otherwise a REPL until /exit, end of input or Ctrl-C twice."""
    from edgeport.tools import TOOL_NAMES

    write = write or _stdout
    names = _tool_names(tool_names) if tool_names else list(TOOL_NAMES)
    engine = open_engine(model, runtime)
    session = ChatSession(
        engine,
        tools=names if tools else None,
        system=system,
        max_new_tokens=max_new_tokens,
        sampler=sampler,
        constrain=constrain,
        thinking=thinking,
    )
    shown = _Shown(write, dim=thinking and read is input and sys.stdout.isatty())

    def on_tool(name: str, args: dict, result: str) -> None:
        write(f"\n[tool] {name}({json.dumps(args, ensure_ascii=False)}) -> {result}\n")

    save_history = None
    try:
        if prompt is not None:
            session.ask(prompt, shown, on_tool, write)
            write("\n")
            return session
        save_history = _readline_history() if read is input and sys.stdin.isatty() else None
        write(f"edgeport chat ({engine.name}, {len(session.tools or [])} tools). /help lists the commands.\n")
        interrupted = False
        while True:
            try:
                line = read("you> ").strip()
            except EOFError:
                write("\n")
                break
            except KeyboardInterrupt:
                if interrupted:
                    write("\n")
                    break
                interrupted = True
                write("\n(Ctrl-C again or /exit to quit)\n")
                continue
            interrupted = False
            if not line:
                continue
            if line.startswith("/"):
                if _command(session, line, write):
                    break
                continue
            write("model> ")
            try:
                session.ask(line, shown, on_tool, write)
            except KeyboardInterrupt:
                write("\n(stopped; that exchange was dropped)\n")
                continue
            except EdgeportError as e:
                write(f"\n(note: {e})\n")
                continue
            finally:
                shown.end()
            write("\n")
    finally:
        if save_history is not None:
            save_history()
        engine.close()
    return session


def _tool_names(names: Sequence[str]) -> list[str]:
    from edgeport.tools import TOOL_NAMES

    unknown = [n for n in names if n not in TOOL_NAMES]
    if unknown:
        raise EdgeportError(f"unknown tool {unknown[0]!r} (known: {', '.join(TOOL_NAMES)})")
    return list(names)


def _command(session: ChatSession, line: str, write: Write) -> bool:
    """Run one /command; True when the chat should end."""
    from edgeport.tools import TOOL_NAMES

    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    try:
        if cmd in ("/exit", "/quit"):
            return True
        if cmd == "/help":
            write(HELP)
        elif cmd == "/reset":
            session.reset()
            write("(conversation cleared)\n")
        elif cmd == "/system":
            if arg:
                session.set_system(arg)
            write(f"(system prompt: {session.system!r})\n")
        elif cmd == "/tools":
            if arg == "none":
                session.tools = None
            elif arg == "all":
                session.tools = list(TOOL_NAMES)
            elif arg:
                session.tools = _tool_names([n.strip() for n in arg.split(",") if n.strip()])
            write(f"(tools offered: {', '.join(session.tools or []) or 'none'})\n")
        elif cmd in ("/save", "/load"):
            if not arg:
                raise EdgeportError(f"{cmd} needs a file name")
            path = Path(arg).expanduser()
            if cmd == "/save":
                session.save(path)
                write(f"(saved {len(session.messages)} messages to {path})\n")
            else:
                session.load(path)
                write(f"(loaded {len(session.messages)} messages from {path})\n")
        else:
            write(f"(unknown command {cmd}; /help lists them)\n")
    except EdgeportError as e:
        write(f"(note: {e})\n")
    return False


class _Shown:
    """The answer as it streams; with `dim`, the model's reasoning (<think>...</think>) is shown dimmed."""

    def __init__(self, write: Write, dim: bool) -> None:
        self.write, self.dim, self.inside = write, dim, False

    def __call__(self, piece: str) -> None:
        from edgeport.chat import THINK_END, THINK_START

        if self.dim:
            if THINK_START in piece:
                self.inside = True
            piece = piece.replace(THINK_START, "\x1b[2m" + THINK_START).replace(
                THINK_END, THINK_END + "\x1b[0m"
            )
            self.inside = self.inside and THINK_END not in piece
        self.write(piece)

    def end(self) -> None:
        if self.inside:
            self.write("\x1b[0m")
            self.inside = False


def _readline_history() -> Callable[[], None] | None:
    """Line editing and history for input() (GNU readline; the history is kept in ~/.edgeport_history).
    Returns the function that saves the history, or None where readline is missing (e.g. Windows)."""
    try:
        import readline
    except ImportError:
        return None
    path = os.path.expanduser("~/.edgeport_history")
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save() -> None:
        try:
            readline.write_history_file(path)
        except OSError:
            pass

    return save


def _stdout(s: str) -> None:
    sys.stdout.write(s)
    sys.stdout.flush()
