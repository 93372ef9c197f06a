"""The one decode path's sampler and the tool-call constraint, on a real (random) model through the torch adapter:
a random model writes garbage, so every parseable call below is the constraint's doing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport import chat
from edgeport.agent import Reply, apply_reply, prompt_ids, runtime_stream
from edgeport.constrain import ToolCallConstraint, call_schema
from edgeport.errors import EdgeportError
from edgeport.sampling import GREEDY, Sampler, make_sampler
from edgeport.tokenizer import load_tokenizer
from edgeport.tools import ToolEnv


def _tool(name: str, props: dict) -> dict:
    params = {"type": "object", "properties": props, "required": list(props)}
    return {"type": "function", "function": {"name": name, "description": name, "parameters": params}}


# bounded values (a random model would otherwise write one endless string): enums, integer ranges, booleans
TOOLS = [
    _tool("set_unit", {"unit": {"type": "string", "enum": ["km", "mi"]}, "exact": {"type": "boolean"}}),
    _tool("add_days", {"days": {"type": "integer", "minimum": -99, "maximum": 99}}),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory, tokenizer_dir: Path):
    from conftest import _hf_checkpoint

    from runtimes.torch_ref import TorchRef

    folder = _hf_checkpoint(
        tmp_path_factory.mktemp("rand"),
        tokenizer_dir,
        seed=5,
        tie_word_embeddings=False,
        max_position_embeddings=2048,
    )
    return TorchRef(folder, absorbed=True), load_tokenizer(folder)


def test_sampler_greedy_seeded_and_nucleus() -> None:
    logits = np.array([0.0, 3.0, 1.0, 2.9], np.float32)
    assert GREEDY.picker()(logits, []) == 1
    hot = Sampler(temperature=2.0, seed=3)
    draws = [hot.picker()(logits, []) for _ in range(5)]
    assert len(set(draws)) == 1  # same seed, same pick
    many = hot.picker()
    assert len({many(logits, []) for _ in range(200)}) == 4  # sampling reaches every token
    narrow = Sampler(temperature=1.0, top_p=0.5, seed=0).picker()
    assert {narrow(logits, []) for _ in range(100)} <= {1, 3}  # the nucleus holds the two likeliest
    masked = Sampler(processors=(lambda gen, x: np.where(np.arange(4) == 2, x, -np.inf),)).picker()
    assert masked(logits, []) == 2
    with pytest.raises(EdgeportError, match="top_p"):
        make_sampler(1.0, 0.0)
    with pytest.raises(EdgeportError, match="temperature"):
        make_sampler(-1.0)
    with pytest.raises(EdgeportError, match="min_new_tokens"):
        make_sampler(min_new_tokens=-1)


def test_min_new_tokens_keeps_a_reply_going(model) -> None:
    """With min_new_tokens the stop ids are ruled out until then, even where the model would end at once."""
    rt, tok = model
    ids = prompt_ids(tok, [{"role": "user", "content": "hello"}], None)
    end = np.arange(tok.vocab_size) == tok.eos_id
    eager = (lambda gen, x: np.where(end[: len(x)], 1e4, x),)  # a model that ends every reply at once
    short = Reply(runtime_stream(rt), tok, ids, 100, sampler=Sampler(processors=eager))
    short.read()
    assert short.ended and short.tokens == 1
    long = Reply(runtime_stream(rt), tok, ids, 100, sampler=Sampler(processors=eager, min_new_tokens=40))
    long.read()
    assert long.ended and long.tokens == 41  # 40 tokens, then the end token it was held back from


def test_stream_is_generate_and_stops(model) -> None:
    rt, tok = model
    ids = prompt_ids(tok, [{"role": "user", "content": "hello"}], None)
    full = rt.generate(ids, 12)
    assert list(rt.stream(ids, max_new_tokens=12)) == full and len(full) == 12
    assert rt.generate(ids, 12, stop_ids=[full[3]])[-1] == full[3]
    first = next(iter(rt.stream(ids, max_new_tokens=12)))  # dropped mid-way: the next stream starts afresh
    assert first == full[0] and rt.generate(ids, 12) == full
    with pytest.raises(EdgeportError, match="does not fit the context"):
        rt.generate([1] * (rt.context_length + 1), 2)


@pytest.mark.parametrize("seed", range(3))
def test_constrained_calls_always_parse_and_name_an_offered_tool(model, seed: int) -> None:
    rt, tok = model
    history = [{"role": "user", "content": "add five days"}]
    prompt = prompt_ids(tok, history, TOOLS)
    sampler = Sampler(temperature=1.0, seed=seed)
    reply = Reply(runtime_stream(rt), tok, prompt, 96, TOOLS, sampler, constrain=True, tool_choice="required")
    text = reply.read()
    assert text.startswith(chat.TOOL_CALL_START), text  # required: the reply opens with a call
    calls = chat.parse_tool_calls(text)
    assert calls and text.count(chat.TOOL_CALL_START) - len(calls) <= 1, text  # only a call cut by the budget
    for call in calls:
        args = call["arguments"]
        if call["name"] == "set_unit":
            assert set(args) == {"unit", "exact"} and args["unit"] in ("km", "mi")
            assert isinstance(args["exact"], bool)
        else:
            assert call["name"] == "add_days" and set(args) == {"days"}, call
            days = args["days"]
            assert isinstance(days, int) and not isinstance(days, bool) and -99 <= days <= 99
    if seed == 0:  # the same model unconstrained writes no parseable call
        raw = Reply(runtime_stream(rt), tok, prompt, 64, TOOLS, sampler, constrain=False).read()
        assert not chat.parse_tool_calls(raw)


def test_tool_choice_none_and_named(model) -> None:
    rt, tok = model
    prompt = prompt_ids(tok, [{"role": "user", "content": "hi"}], TOOLS)
    start = tok.token_to_id(chat.TOOL_CALL_START)
    favour = Sampler(processors=(lambda gen, x: np.where(np.arange(len(x)) == start, 1e4, x),))
    none = Reply(runtime_stream(rt), tok, prompt, 8, TOOLS, favour, tool_choice="none").read()
    assert chat.TOOL_CALL_START not in none  # the likeliest token is masked
    no_tools = Reply(runtime_stream(rt), tok, prompt, 8, None, favour, constrain=True).read()
    assert chat.TOOL_CALL_START not in no_tools  # nothing offered: nothing can be called
    free = Reply(runtime_stream(rt), tok, prompt, 8, None, favour, constrain=False).read()
    assert free.startswith(chat.TOOL_CALL_START)  # the raw model would have opened a call
    only = Reply(runtime_stream(rt), tok, prompt, 96, TOOLS[1:], GREEDY, True, "required").read()
    assert {c["name"] for c in chat.parse_tool_calls(only)} == {"add_days"}
    with pytest.raises(EdgeportError, match="tool-call mode"):
        ToolCallConstraint(tok, TOOLS, "sometimes")
    with pytest.raises(EdgeportError, match="a tool must look like"):
        call_schema([{"type": "function"}])


def test_apply_reply_runs_only_offered_tools() -> None:
    env = ToolEnv()
    history: list[dict] = []
    text = "ok " + chat.format_tool_call("write", {"path": "/x", "text": "hi"})
    step = apply_reply(history, text, ["calculate"], env)
    assert env.files == {} and not env.log  # not offered: never run
    assert json.loads(step.calls[0]["result"]) == {"error": "tool 'write' was not offered"}
    assert [m["role"] for m in history] == ["assistant", "tool"] and history[0]["content"] == "ok "
    step = apply_reply(history, text, ["write"], None)  # a server: the client runs it
    assert step.calls[0]["result"] is None and history[-1]["role"] == "assistant"
    bad = apply_reply(history, '<tool_call>{"name": "write", </tool_call>', ["write"], env)
    assert bad.malformed and not bad.calls and history[-1] == {"role": "assistant", "content": bad.content}
