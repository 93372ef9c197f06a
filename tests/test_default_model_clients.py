"""Issue 10's client checks on the shipped default model: clients that render the chat template with its defaults
(no enable_thinking flag) get a tool call they can see and parse, for "What is 17 times 23?" with every tool
offered: transformers' text-generation pipeline, and llama-cpp-python's create_chat_completion(tools=...) on the
model's GGUF.

They run once the shipped model has been trained for this (its metrics.json then holds `edgeport eval`'s figures
by rendering, which only the issue-10 recipe writes); until then they are skipped, saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeport import chat
from edgeport.default_model import HERE
from edgeport.tools import TOOL_NAMES, calculate, schemas

QUESTION = [{"role": "user", "content": "What is 17 times 23?"}]
TRAINED = "by_rendering" in json.loads((HERE / "metrics.json").read_text()).get("agent", {})
trained = pytest.mark.skipif(
    not TRAINED,
    reason="the shipped default model predates issue 10's retraining (python -m edgeport.default_model)",
)


def _is_the_call(text: str) -> None:
    assert chat.TOOL_CALL_START in text and chat.TOOL_CALL_END in text, text
    calls = chat.parse_tool_calls(text)
    assert calls and calls[0]["name"] == "calculate", text
    assert calculate(calls[0]["arguments"]["expression"]) == 391, text


@trained
def test_transformers_pipeline_with_template_defaults() -> None:
    from transformers import pipeline

    pipe = pipeline("text-generation", model=str(HERE), device="cpu")
    out = pipe(QUESTION, tools=schemas(TOOL_NAMES), max_new_tokens=160, do_sample=False)
    _is_the_call(out[0]["generated_text"][-1]["content"])


@trained
def test_llama_cpp_chat_completion_with_template_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as lc

    from edgeport.export.gguf import export_gguf
    from runtimes.llamacpp import has_amx

    # llama.cpp 0.3.36 aborts an MLA graph on its AMX weight buffers (see runtimes.llamacpp); a user on such a CPU
    # must turn llama.cpp's extra buffer types off, and Llama() has no argument for it
    if has_amx(lc):
        default = lc.llama_model_default_params

        def params():  # noqa: ANN202
            p = default()
            p.use_extra_bufts = False
            return p

        monkeypatch.setattr(lc, "llama_model_default_params", params)
    gguf = export_gguf(HERE, tmp_path / "m.gguf", "f16", progress=False)
    llm = llama_cpp.Llama(str(gguf), n_ctx=2048, verbose=False)
    r = llm.create_chat_completion(
        messages=QUESTION, tools=schemas(TOOL_NAMES), max_tokens=160, temperature=0
    )
    _is_the_call(r["choices"][0]["message"]["content"])


def test_shipped_tokenizer_markers_are_text_tokens() -> None:
    """The shipped tokenizer: the text markers (<think>, <tool_call>, <tool_response> and closing forms) are added
    but not special, so decoders keep them and the GGUF marks them USER_DEFINED; the control tokens stay special;
    every id is where the weights expect it (the last 12 ids, in chat.SPECIAL_TOKENS' order)."""
    from edgeport.tokenizer import load_tokenizer

    added = json.loads((HERE / "tokenizer.json").read_text())["added_tokens"]
    decoder = json.loads((HERE / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    tok = load_tokenizer(HERE)
    n = tok.vocab_size
    assert [tok.special_ids[s] for s in chat.SPECIAL_TOKENS] == list(range(n - len(chat.SPECIAL_TOKENS), n))
    for t in added:
        assert t["special"] == (t["content"] not in chat.TEXT_MARKERS) == decoder[str(t["id"])]["special"]
    call = chat.format_tool_call("calculate", {"expression": "17 * 23"})
    assert tok.decode(tok.encode(call + chat.EOS), skip_special=True) == call


def test_eval_runs_the_shipped_model_exported(tmp_path: Path) -> None:
    """`edgeport eval` on a .gguf and on an ONNX folder of the shipped model: eval's episodes and scoring, decoded
    by llama.cpp and onnxruntime. The fp32 ONNX decodes torch's greedy tokens, so each kind ends the same way."""
    from typer.testing import CliRunner

    from edgeport.cli import app
    from edgeport.export.gguf import export_gguf
    from edgeport.export.onnx import export_onnx
    from edgeport.trainer import evaluate_artifact, evaluate_model

    ref = evaluate_model(HERE, n_tasks=7)["agent"]  # one episode of each kind
    onnx = evaluate_artifact(
        export_onnx(HERE, tmp_path / "onnx", "fp32", mobile=False, progress=False), n_tasks=7
    )
    assert onnx["runtime"].startswith("onnx") and onnx["agent"]["n"] == 7
    assert onnx["agent"]["by_kind"] == ref["by_kind"] and onnx["agent"]["reasons"] == ref["reasons"]
    gguf = export_gguf(HERE, tmp_path / "m.gguf", "q4_0", progress=False)
    r = CliRunner().invoke(app, ["eval", str(gguf), "--tasks", "7"])
    assert r.exit_code == 0, r.output
    assert (
        "llamacpp" in r.output
        and "tool-use success (7 tasks)" in r.output
        and "held-out text" not in r.output
    )
