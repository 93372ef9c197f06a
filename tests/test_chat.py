"""The Youtu chat template: plain-Python render vs transformers, llama-cpp-python's formatter and plain jinja2."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgeport import chat
from edgeport.errors import EdgeportError
from edgeport.tokenizer import load_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calc",
            "description": "Evaluate an arithmetic expression. Use <b>only</b> 'plain' math & \"no\" code\\n.",
            "parameters": {
                "type": "object",
                "properties": {"expr": {"type": "string", "description": "e.g. 2*(3+4); 温度 °C"}},
                "required": ["expr"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert",
            "parameters": {"z_last": 1, "a_first": [1.5, True, False, None], "tab\there": "line\nbreak"},
        },
    },
]


def call(name: str, arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


U1 = {"role": "user", "content": "What is 2+2?"}
SYS = {"role": "system", "content": "You are terse."}
THINKING = {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"}
CALL_1 = {"role": "assistant", "content": "", "tool_calls": [call("calc", {"expr": "2+2"})]}
CALL_2 = {
    "role": "assistant",
    "content": "<think>two calls</think>\n\nLet me check.",
    "tool_calls": [call("calc", {"expr": "3*7", "ünï": "→"}), call("convert", '{"km": 12.5}')],
}
TOOL_R = {"role": "tool", "content": "4"}

CASES = {
    "plain": ([U1], {}),
    "plain_gen": ([U1], {"add_generation_prompt": True}),
    "system": ([SYS, U1, THINKING], {}),
    "two_systems": ([SYS, {"role": "system", "content": "Second."}, U1], {"add_generation_prompt": True}),
    "tools_no_system": ([U1], {"tools": TOOLS, "add_generation_prompt": True}),
    "tools_with_system": ([SYS, U1], {"tools": TOOLS}),
    "tools_empty_list": ([U1], {"tools": []}),
    "one_tool_call": ([U1, CALL_1, TOOL_R], {"tools": TOOLS, "add_generation_prompt": True}),
    "two_tool_calls_two_results": (
        [SYS, U1, CALL_2, TOOL_R, {"role": "tool", "content": '{"miles": 7.767}'}],
        {"tools": TOOLS, "add_generation_prompt": True, "enable_thinking": False},
    ),
    "tool_then_answer": (
        [U1, CALL_1, TOOL_R, {"role": "assistant", "content": "It is 4."}],
        {"tools": TOOLS},
    ),
    "think_stripped_in_history": (
        [
            U1,
            THINKING,
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "<think>x</think>6"},
        ],
        {},
    ),
    "think_kept_before_tools": ([U1, THINKING, U1, CALL_2, TOOL_R, U1], {"add_generation_prompt": True}),
    "gen_thinking_true": ([U1], {"add_generation_prompt": True, "enable_thinking": True}),
    "gen_thinking_false": ([U1], {"add_generation_prompt": True, "enable_thinking": False}),
    "gen_forced_thinking": ([U1], {"add_generation_prompt": True, "forced_thinking": True}),
    "gen_after_assistant": ([U1, THINKING], {"add_generation_prompt": True}),
    "unicode_and_markup": (
        [{"role": "user", "content": "东京 🙂 <b>&amp;</b> {{ not jinja }} {% raw %}"}],
        {"add_generation_prompt": True},
    ),
}


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.mark.parametrize("name", list(CASES))
def test_transformers_apply_chat_template_matches_render(
    name: str, hf_tokenizer, tokenizer_dir: Path
) -> None:
    messages, kw = CASES[name]
    expected = chat.render(messages, **kw)
    assert hf_tokenizer.apply_chat_template(messages, tokenize=False, **kw) == expected
    ids = hf_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"]
    assert ids == load_tokenizer(tokenizer_dir).apply_chat(messages, **kw)
    assert ids.count(hf_tokenizer.bos_token_id) == 1 and ids[0] == hf_tokenizer.bos_token_id


def test_llama_cpp_formatter_matches_render() -> None:
    """llama-cpp-python renders the GGUF's template with its own Jinja2ChatFormatter (and its own tojson)."""
    fmt = pytest.importorskip("llama_cpp.llama_chat_format")
    for name, (messages, kw) in CASES.items():
        kw = dict(kw)
        formatter = fmt.Jinja2ChatFormatter(
            chat.CHAT_TEMPLATE, eos_token=chat.EOS, bos_token=chat.BOS,
            add_generation_prompt=kw.pop("add_generation_prompt", False),
        )  # fmt: skip
        assert formatter(messages=messages, **kw).prompt == chat.render(messages, **CASES[name][1]), name


@pytest.mark.parametrize("trim", [True, False])
def test_plain_jinja2_matches_render(trim: bool) -> None:
    """Stock jinja2 has an HTML-escaping, key-sorting tojson; the template must not depend on it."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=trim, lstrip_blocks=trim, extensions=[jinja2.ext.loopcontrols]
    )
    assert env.from_string('{{ {"b": 1}|tojson }}').render() == '{"b": 1}'  # stock filter in use
    template = env.from_string(chat.CHAT_TEMPLATE)
    for name, (messages, kw) in CASES.items():
        assert template.render(messages=messages, bos_token=chat.BOS, **kw) == chat.render(messages, **kw), (
            name
        )


def test_tool_json_is_json_dumps() -> None:
    text = chat.render([U1, CALL_2], tools=TOOLS)
    for tool in TOOLS:
        assert "\n```json\n" + json.dumps(tool, ensure_ascii=False) + "\n```" in text
    assert '<tool_call>{"name": "calc", "arguments": {"expr": "3*7", "ünï": "→"}}</tool_call>\n' in text
    assert '<tool_call>{"name": "convert", "arguments": {"km": 12.5}}</tool_call><|end_of_text|>' in text
    assert "\n" not in chat.CHAT_TEMPLATE  # one line: immune to trim_blocks / lstrip_blocks settings


def test_render_rules() -> None:
    assert (
        chat.render([U1], add_generation_prompt=True) == "<|begin_of_text|><|User|>What is 2+2?<|Assistant|>"
    )
    assert chat.TOOL_DESC_START not in chat.render([U1])
    assert chat.render([U1], tools=[]).endswith(chat.TOOL_DESC_END + "<|User|>What is 2+2?")
    # reasoning: dropped from earlier turns, an empty think block is prepended to a final answer without one
    history = chat.render([U1, THINKING, U1, {"role": "assistant", "content": "5"}])
    assert "add them" not in history and history.endswith(
        "<|Assistant|><think>\n\n</think>\n\n5<|end_of_text|>"
    )
    assert "add them" in chat.render([U1, THINKING])
    # consecutive tool results share one user turn
    text = chat.render([U1, CALL_1, TOOL_R, TOOL_R], add_generation_prompt=True)
    assert text.endswith(
        "<|User|><tool_response>4</tool_response>\n<tool_response>4</tool_response><|Assistant|>"
    )
    assert chat.render([U1, THINKING], add_generation_prompt=True).endswith(chat.EOS)  # nothing to answer
    with pytest.raises(EdgeportError, match="role"):
        chat.render([{"role": "human", "content": "x"}])
    with pytest.raises(EdgeportError, match="tool calls"):
        chat.render([U1, {"role": "assistant", "content": "", "tool_calls": [{"name": "calc"}]}])


def test_spans_cover_exactly_the_assistant_output(tokenizer_dir: Path) -> None:
    final = {"role": "assistant", "content": "It is 4."}
    messages = [SYS, U1, THINKING, U1, CALL_2, TOOL_R, TOOL_R, final]
    text, spans = chat.render_with_spans(messages, tools=TOOLS)
    assert text == chat.render(messages, tools=TOOLS)
    calls = "\n".join(
        chat.format_tool_call(c["function"]["name"], c["function"]["arguments"]) for c in CALL_2["tool_calls"]
    )
    assert [text[a:b] for a, b in spans] == [
        "4" + chat.EOS,  # reasoning stripped from history
        CALL_2["content"] + calls + chat.EOS,  # kept: the turn right before the tool results
        "<think>\n\n</think>\n\n" + final["content"] + chat.EOS,
    ]
    assert all(text[a - len(chat.ASSISTANT) : a] == chat.ASSISTANT for a, _ in spans)
    # outside the spans: only prompt material (no assistant text, no end-of-turn tokens)
    outside = "".join(c for i, c in enumerate(text) if not any(a <= i < b for a, b in spans))
    assert (
        chat.EOS not in outside and "It is 4." not in outside and '<tool_call>{"name": "calc"' not in outside
    )
    # span edges fall on token boundaries, so a token-level loss mask is exact
    enc = load_tokenizer(tokenizer_dir).hf.encode(text, add_special_tokens=False)
    assert not [(s, e) for s, e in enc.offsets for a, b in spans if s < a < e or s < b < e]
    _, gen_spans = chat.render_with_spans([U1], add_generation_prompt=True, enable_thinking=False)
    assert gen_spans == []


def test_tool_call_format_and_parse() -> None:
    text = chat.format_tool_call("calc", {"expr": "2+2", "ü": [1, None]})
    assert text == '<tool_call>{"name": "calc", "arguments": {"expr": "2+2", "ü": [1, null]}}</tool_call>'
    generated = (
        "<think>hmm</think>\n\n"
        + text
        + "\n"
        + chat.format_tool_call("now", "{}")
        + "<tool_call>{not json}</tool_call>"
        '<tool_call>{"name": "s", "arguments": "{\\"a\\": 1}"}</tool_call><tool_call>["x"]</tool_call>'
        + chat.EOS
    )
    assert chat.parse_tool_calls(generated) == [
        {"name": "calc", "arguments": {"expr": "2+2", "ü": [1, None]}},
        {"name": "now", "arguments": {}},
        {"name": "s", "arguments": {"a": 1}},
    ]
    assert chat.parse_tool_calls("no calls <tool_call>{unterminated") == []
