"""`edgeport chat`: streaming, the agent loop with real tool execution, runtimes, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeport.chat import format_tool_call, render
from edgeport.chat_cli import ChatSession, Engine, open_engine, run_chat
from edgeport.cli import app
from edgeport.errors import EdgeportError
from edgeport.tokenizer import load_tokenizer


def _reference_reply(ckpt: Path, user: str, max_new: int) -> str:
    """What greedy torch decoding (the runtime adapter, no chat code involved) answers to one user message."""
    from runtimes.torch_ref import TorchRef

    tok = load_tokenizer(ckpt)
    ids = tok.encode(
        render([{"role": "user", "content": user}], add_generation_prompt=True, enable_thinking=False)
    )
    out = TorchRef(ckpt).generate(ids, max_new, (tok.eos_id,))
    return tok.decode([t for t in out if t != tok.eos_id])


@pytest.fixture
def ckpt(hf_checkpoint) -> Path:
    return hf_checkpoint(
        seed=3, tie_word_embeddings=False
    )  # untied: varied greedy text, not one token repeated


def test_scripted_model_tool_call_is_executed(tokenizer_dir: Path) -> None:
    """The model side is scripted token ids; the tokenizer, template, parser and tools are the real ones."""
    tok = load_tokenizer(tokenizer_dir)
    script = [
        "Let me compute. " + format_tool_call("calculate", {"expression": "6*7+1"}),
        "The answer is 43.",
    ]
    prompts: list[str] = []

    def step(ids: list[int], max_new: int, stop_ids: Sequence[int], sampler=None):
        prompts.append(tok.decode(ids))
        yield from tok.encode(script[len(prompts) - 1]) + [tok.eos_id]

    session = ChatSession(Engine("scripted", tok, step), tools=["calculate", "today"])
    streamed: list[str] = []
    tools_seen: list[tuple] = []
    answer = session.ask("What is 6*7+1?", streamed.append, lambda *a: tools_seen.append(a))

    assert answer == "The answer is 43."
    assert session.env.log[0][0] == "calculate" and json.loads(session.env.log[0][2]) == {"result": 43}
    assert tools_seen == [("calculate", {"expression": "6*7+1"}, '{"result": 43}')]
    # The second model call saw the tool's real result as a tool response, and offered the tool schemas.
    assert '<tool_response>{"result": 43}</tool_response><|Assistant|>' in prompts[1]
    assert '"name": "calculate"' in prompts[0] and "<|begin_of_tool_description|>" in prompts[0]
    roles = [m["role"] for m in session.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert session.messages[1]["tool_calls"][0]["function"]["name"] == "calculate"
    assert "".join(streamed).endswith("The answer is 43.")
    # With tools off, the same text is just an answer: nothing runs.
    prompts.clear()
    plain = ChatSession(Engine("scripted", tok, step), tools=None)
    assert plain.ask("hi").startswith("Let me compute.") and plain.env is None
    assert "<|begin_of_tool_description|>" not in prompts[0]


def test_tool_loop_stops_after_max_rounds(tokenizer_dir: Path) -> None:
    tok = load_tokenizer(tokenizer_dir)
    call = format_tool_call("calculate", {"expression": "1+1"})
    step_calls = []

    def step(ids, max_new, stop_ids, sampler=None):
        step_calls.append(1)
        yield from tok.encode(call) + [tok.eos_id]

    session = ChatSession(Engine("scripted", tok, step), tools=["calculate"], max_tool_rounds=2)
    session.ask("loop forever")
    assert len(step_calls) == 3 and len(session.env.log) == 3


def test_prompt_streams_the_reference_greedy_reply(ckpt: Path) -> None:
    expected = _reference_reply(ckpt, "Hello there", 16)
    pieces: list[str] = []
    session = run_chat(
        ckpt, "torch", tools=False, prompt="Hello there", max_new_tokens=16, write=pieces.append
    )
    assert session.messages[-1] == {"role": "assistant", "content": expected}
    assert "".join(pieces) == expected + "\n"
    assert len(pieces) > 2  # token by token, not one block at the end

    result = CliRunner().invoke(
        app, ["chat", str(ckpt), "--prompt", "Hello there", "--no-tools", "--max-new-tokens", "16"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == expected + "\n"


def test_interactive_reset_and_exit(ckpt: Path) -> None:
    lines = iter(["Hello there", "", "/reset", "Hello there", "/exit", "never read"])
    out: list[str] = []
    session = run_chat(ckpt, tools=False, max_new_tokens=8, write=out.append, read=lambda _: next(lines))
    assert [m["role"] for m in session.messages] == ["user", "assistant"]  # /reset dropped the first turn
    text = "".join(out)
    assert "(conversation cleared)" in text and text.count("model> ") == 2
    assert next(lines) == "never read"  # /exit stopped reading
    # End of input also ends the loop.
    session = run_chat(
        ckpt, tools=False, max_new_tokens=4, write=out.append, read=lambda _: (_ for _ in ()).throw(EOFError)
    )
    assert session.messages == []


def test_multi_turn_keeps_the_conversation(ckpt: Path) -> None:
    engine = open_engine(ckpt)
    seen: list[list[int]] = []
    inner = engine.generate

    def spy(ids, max_new, stop_ids, **kw):
        seen.append(ids)
        return inner(ids, max_new, stop_ids, **kw)

    engine.generate = spy
    session = ChatSession(engine, max_new_tokens=6)
    first = session.ask("one")
    session.ask("two")
    tok = engine.tokenizer
    want = render(
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "two"},
        ],
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert tok.decode(seen[1]) == want


@pytest.mark.parametrize(
    "args, message",
    [
        (["chat", "/no/such/model", "--prompt", "x"], "/no/such/model: no such file or folder"),
        (["chat", "{empty}", "--prompt", "x"], "not a model this chat can load"),
        (
            ["chat", "{ckpt}", "--runtime", "onnx", "--prompt", "x"],
            "holds a torch model, not one for --runtime onnx",
        ),
        (["chat", "{ckpt}", "--runtime", "tflite", "--prompt", "x"], "unknown runtime 'tflite'"),
        (["chat", "{ckpt}", "--tool-names", "rm_rf", "--prompt", "x"], "unknown tool 'rm_rf'"),
        (["chat", "{notes}", "--prompt", "x"], "not a .gguf file"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    subst = {"{empty}": str(tmp_path / "empty"), "{ckpt}": str(ckpt), "{notes}": str(tmp_path / "notes.txt")}
    result = CliRunner().invoke(app, [subst.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output


def test_checkpoint_without_tokenizer_is_a_clear_error(hf_checkpoint, tmp_path: Path) -> None:
    folder = hf_checkpoint(seed=4)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(EdgeportError, match="tokenizer.json"):
        open_engine(folder)


def test_onnx_export_chat_matches_torch(ckpt: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("edgeport.export.onnx") is None:
        pytest.skip("edgeport.export.onnx is not in this tree yet")
    from edgeport.export.onnx import export_onnx

    out = export_onnx(
        ckpt, tmp_path / "onnx", mobile=True, progress=False
    )  # model.onnx for genai, model.ort too
    expected = _reference_reply(ckpt, "Hello there", 12)
    session = run_chat(out, None, tools=False, prompt="Hello there", max_new_tokens=12, write=lambda s: None)
    assert session.engine.name.startswith("onnx")
    assert session.messages[-1]["content"] == expected
    # Plain onnxruntime (used when genai cannot load a folder) on the ORT-format model answers the same.
    from edgeport.agent import runtime_stream
    from runtimes.ort import OrtMobile

    engine = Engine("onnx (onnxruntime)", load_tokenizer(out), runtime_stream(OrtMobile(out)))
    assert ChatSession(engine, max_new_tokens=12).ask("Hello there") == expected


def test_gguf_chat_matches_torch(ckpt: Path, tmp_path: Path) -> None:
    for mod in ("llama_cpp", "runtimes.llamacpp", "edgeport.export.gguf"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed / not in this tree yet")
    from edgeport.export.gguf import export_gguf

    gguf = tmp_path / "model.gguf"
    export_gguf(ckpt, gguf, type="f32", progress=False)
    expected = _reference_reply(ckpt, "Hello there", 12)
    session = run_chat(gguf, None, tools=False, prompt="Hello there", max_new_tokens=12, write=lambda s: None)
    assert session.engine.name == "llamacpp"
    assert session.messages[-1]["content"] == expected


def test_gguf_own_tokenizer_is_used_without_tokenizer_json(ckpt: Path, tmp_path: Path) -> None:
    """A lone .gguf: the chat tokenizes and detokenizes with llama.cpp's copy of the tokenizer."""
    for mod in ("llama_cpp", "runtimes.llamacpp", "edgeport.export.gguf"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed / not in this tree yet")
    from edgeport.export.gguf import export_gguf

    gguf = export_gguf(ckpt, tmp_path / "alone" / "model.gguf", type="f32", progress=False)
    engine = open_engine(gguf)
    tok = load_tokenizer(ckpt)
    text = render(
        [{"role": "user", "content": "Hello 东京 🙂"}], add_generation_prompt=True, enable_thinking=False
    )
    assert engine.tokenizer.encode(text) == tok.encode(text)
    assert engine.tokenizer.decode(tok.encode(text)) == text and engine.tokenizer.eos_id == tok.eos_id
    engine.close()


def _scripted(tok, replies: list[str], prompts: list[str] | None = None):
    queue = list(replies)

    def step(ids, max_new, stop_ids, sampler=None):
        if prompts is not None:
            prompts.append(tok.decode(ids))
        yield from tok.encode(queue.pop(0) if queue else "ok") + [tok.eos_id]

    return step


def test_chat_runs_only_offered_tools_and_notes_malformed_calls(tokenizer_dir: Path) -> None:
    tok = load_tokenizer(tokenizer_dir)
    write_call = format_tool_call("write", {"path": "/x", "text": "hi"})
    session = ChatSession(Engine("scripted", tok, _scripted(tok, [write_call, "done"])), tools=["calculate"])
    assert session.ask("write a file") == "done"
    assert session.env.files == {} and not session.env.log  # offered: calculate only; write never ran
    assert "was not offered" in session.messages[2]["content"]
    notes: list[str] = []
    bad = ChatSession(
        Engine("scripted", tok, _scripted(tok, ['<tool_call>{"name": </tool_call>'])), tools=["calculate"]
    )
    bad.ask("x", on_note=notes.append)
    assert any("not valid JSON" in n for n in notes) and bad.env.log == []
    assert [m["role"] for m in bad.messages] == ["user", "assistant"]


def test_oldest_turns_are_dropped_when_the_context_is_full(tokenizer_dir: Path) -> None:
    tok = load_tokenizer(tokenizer_dir)
    prompts: list[str] = []
    engine = Engine("scripted", tok, _scripted(tok, ["a" * 40] * 10, prompts), context_length=160)
    session = ChatSession(engine, max_new_tokens=16, system="be brief")
    notes: list[str] = []
    for i in range(6):
        session.ask(f"turn {i} " + "x" * 30, on_note=notes.append)
    assert any("dropped the" in n for n in notes)
    assert "turn 0" not in prompts[-1] and "turn 5" in prompts[-1] and "be brief" in prompts[-1]
    assert session.messages[0] == {"role": "system", "content": "be brief"}
    with pytest.raises(EdgeportError, match="send a shorter message"):
        session.ask("y" * 2000)
    assert session.messages[-1]["role"] == "assistant"  # the refused message left no trace


def test_repl_commands_save_load_and_ctrl_c(ckpt: Path, tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    lines = iter(["/help", "Hello there", f"/save {path}", "/reset", f"/load {path}", "/system be kind",
                  "/tools calculate,today", "/tools rm_rf", f"/load {tmp_path / 'missing.json'}", "/frobnicate",
                  "/exit"])  # fmt: skip
    out: list[str] = []
    session = run_chat(ckpt, tools=False, max_new_tokens=6, write=out.append, read=lambda _: next(lines))
    text = "".join(out)
    assert "/save FILE" in text and "(saved 2 messages" in text and "(loaded 2 messages" in text
    assert "unknown tool 'rm_rf'" in text and "missing.json" in text and "unknown command /frobnicate" in text
    assert session.tools == ["calculate", "today"] and session.messages[0] == {
        "role": "system",
        "content": "be kind",
    }
    assert [m["role"] for m in json.loads(path.read_text())["messages"]] == ["user", "assistant"]

    def interrupted(_: str) -> str:
        raise KeyboardInterrupt

    out.clear()
    run_chat(
        ckpt, tools=False, write=out.append, read=interrupted
    )  # Ctrl-C twice at the prompt: the chat ends
    assert "".join(out).count("Ctrl-C again") == 1


def test_tool_rounds_that_fill_the_context_end_the_turn_with_a_note(tokenizer_dir: Path) -> None:
    tok = load_tokenizer(tokenizer_dir)
    call = "z" * 60 + format_tool_call("calculate", {"expression": "1+1"})
    engine = Engine("scripted", tok, _scripted(tok, [call] * 10), context_length=400)
    session = ChatSession(engine, tools=["calculate"], max_new_tokens=16)
    notes: list[str] = []
    session.ask("go", on_note=notes.append)
    assert any("filled the model's context" in n for n in notes)
    assert 1 <= len(session.env.log) < 4 and session.messages[-1]["role"] == "tool"
