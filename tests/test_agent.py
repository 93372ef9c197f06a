"""The agent loop: an oracle that replays the reference turns succeeds only if tools are really executed;
garbage fails; malformed output never raises; the real model's generate plugs in."""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edgeport import agent as A
from edgeport import chat
from edgeport import data as D
from edgeport.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def eps() -> list[D.Episode]:
    return D.generate_episodes(80, seed=5, split="eval")


def test_oracle_succeeds_and_sees_training_prompts(tok, eps: list[D.Episode]) -> None:
    oracle = A.reference_generate(tok, eps)
    seen: list[list[int]] = []

    def recording(ids: list[int], n: int, stop: Sequence[int]) -> list[int]:
        seen.append(list(ids))
        return oracle(ids, n, stop)

    r = A.evaluate(
        recording, tok, eps, max_new_tokens=256
    )  # the 512-id test tokenizer needs ~180 for 2 calls
    assert r["n"] == len(eps) and r["success_rate"] == 1.0
    assert r["tool_call_rate"] == 1.0 and r["valid_json_rate"] == 1.0 and r["first_tool_match"] == 1.0
    assert set(r["by_kind"]) == set(D.KINDS) and set(r["by_rendering"]) == {"thinking", "no thinking"}
    # the agent fed exactly the training prompts, in order (train/inference consistency, token for token)
    want = [tok.encode(p) for ep in eps for p, _ in D.turn_examples(ep.messages, ep.tools)]
    assert seen == want
    assert 0 <= r["baseline_echo"] < 0.2 and "chance" in r


def test_tools_are_executed_for_real(tok, eps: list[D.Episode]) -> None:
    """Same oracle, but the envs start from a different state: the tool results the agent really gets differ
    from the transcripts, so the replay goes off the rails exactly where a tool reads state."""
    oracle = A.reference_generate(tok, eps)
    changed = []
    for ep in eps:
        ep2 = D.Episode.from_dict(json.loads(json.dumps(ep.to_dict())))
        ep2.env_state["files"] = {k: v.upper() for k, v in ep2.env_state["files"].items()}
        ep2.env_state["notes"] = {k: v + "9" for k, v in ep2.env_state["notes"].items()}
        ep2.env_state["today"] = "1999-12-31"
        changed.append(ep2)
    results = [A.run_episode(oracle, tok, ep, max_new_tokens=256) for ep in changed]
    reads_state = {
        "cat",
        "cat_lost",
        "note_get",
        "from_today",
        "weekday_in",
        "note_fuzzy",
        "cat_pair",
        "ls_then_cat",
    }
    for ep, res in zip(changed, results, strict=True):
        name = ep.template.split("/")[0]
        assert res.success == (name not in reads_state), (ep.template, res.reason)
        if name in {"cat", "cat_lost"}:  # the result came from the env, upper-cased
            assert res.calls[-1]["result"] == json.dumps({"result": ep.answer.upper()})


def _garbage(tok, seed: int) -> Callable[[list[int], int, Sequence[int]], list[int]]:
    rng = random.Random(seed)

    def generate(ids: list[int], n: int, stop: Sequence[int] = ()) -> list[int]:
        out: list[int] = []
        for _ in range(n):
            out.append(rng.randrange(tok.vocab_size))
            if out[-1] in stop:
                break
        return out

    return generate


def test_garbage_scores_near_zero(tok, eps: list[D.Episode]) -> None:
    r = A.evaluate(_garbage(tok, 0), tok, eps)
    assert r["success_rate"] <= 0.05 and r["tool_call_rate"] <= 0.05


def test_malformed_output_is_handled(tok, eps: list[D.Episode]) -> None:
    ep = next(e for e in eps if e.template.startswith("calc/"))

    def scripted(*texts: str):
        queue = list(texts)

        def generate(ids: list[int], n: int, stop: Sequence[int] = ()) -> list[int]:
            out = tok.encode(queue.pop(0)) if queue else []
            return out[:n]

        return generate

    cases = {
        '<tool_call>{"name": "calculate", "arguments": {oops</tool_call>': "invalid tool call",
        "no end of text here": "no final answer",
        "": "no final answer",
        "The answer is 0." + chat.EOS: "wrong answer",
    }
    for text, reason in cases.items():
        assert A.run_episode(scripted(text), tok, ep).reason == reason
    # an unknown tool and a bad argument are errors fed back to the model, then it answers
    call_x = chat.format_tool_call("rm_rf", {"path": "/"})
    call_bad = chat.format_tool_call("calculate", {"expression": "import os"})
    res = A.run_episode(scripted(call_x, call_bad, f"{ep.answer}{chat.EOS}"), tok, ep)
    assert [set(json.loads(c["result"])) for c in res.calls] == [{"error"}, {"error"}]
    assert res.success  # the expected number is in the final answer
    ids_out = A.run_episode(lambda ids, n, stop: [-1, 10**9, 3], tok, ep)  # impossible ids are garbage too
    assert ids_out.reason == "no final answer" and not ids_out.success
    # steps run out
    res = A.run_episode(scripted(*[call_bad] * 10), tok, ep, max_steps=3)
    assert res.reason == "max steps" and res.steps == 3 and len(res.calls) == 3
    # a prompt that does not fit the context is refused, not truncated
    assert A.run_episode(scripted("x"), tok, ep, max_context=10).reason == "context"


def test_no_tool_kinds_follow_ups_and_reasoning(tok, eps: list[D.Episode]) -> None:
    """A call in a no-tool episode fails it even with the right words; a follow-up turn is played after the model's
    answer to the first; the scored answer is the text after the model's </think>."""

    def scripted(*texts: str):
        queue = list(texts)
        return lambda ids, n, stop=(): tok.encode(queue.pop(0))[:n] if queue else []

    ep = next(e for e in eps if e.kind == "unsupported")
    call = chat.format_tool_call("calculate", {"expression": "1 + 1"})
    assert A.run_episode(scripted("I can't." + chat.EOS), tok, ep).success
    assert not A.run_episode(scripted(call, "I can't." + chat.EOS), tok, ep).success
    ep = next((e for e in eps if e.template.startswith("chat/")), None) or next(
        e for e in D.generate_episodes(60, seed=1, split="eval") if e.template.startswith("chat/")
    )
    assert A.run_episode(scripted("Hi! What can I do for you?" + chat.EOS), tok, ep).success
    assert not A.run_episode(scripted("I can't do that with the tools I have." + chat.EOS), tok, ep).success
    think = f"{chat.THINK_START}\nthe answer is {ep.answer}\n{chat.THINK_END}\n\n"
    ep = next(e for e in eps if e.kind == "single" and isinstance(e.answer, int | float))
    assert not A.run_episode(
        scripted(think + "No idea." + chat.EOS), tok, ep
    ).success  # reasoning is not scored
    ep = next(e for e in eps if e.template.startswith("calc_then/"))
    users = [m["content"] for m in ep.messages if m["role"] == "user"]
    res = A.run_episode(scripted("It is 1." + chat.EOS, f"{ep.answer}{chat.EOS}"), tok, ep)
    assert [m["content"] for m in res.messages if m["role"] == "user"] == users  # both turns played
    assert res.success and res.steps == 2  # no tool needed to be right here: only the last answer is scored


def test_real_model_generate_plugs_in(tok, eps: list[D.Episode]) -> None:
    """A runtime's token stream is a GenerateFn: a random tiny in-memory model runs through the loop without errors."""
    import torch
    from conftest import ODD_CONFIG

    from edgeport.model import YoutuConfig, YoutuForCausalLM
    from runtimes.torch_ref import TorchRef

    torch.manual_seed(0)
    cfg = YoutuConfig(**{**ODD_CONFIG, "vocab_size": tok.vocab_size, "bos_token_id": tok.bos_id,
                         "eos_token_id": tok.eos_id, "max_position_embeddings": 4096, "dtype": "float32"})  # fmt: skip
    model = YoutuForCausalLM(cfg).eval()
    small = [e for e in eps if e.kind != "chain"][:2]
    with torch.no_grad():
        rt = TorchRef("in-memory", absorbed=True, model=model)
        r = A.evaluate(A.runtime_stream(rt), tok, small, max_steps=2, max_new_tokens=8)
    assert r["n"] == 2 and r["success_rate"] == r["reasons"].get("ok", 0) / 2
    assert sum(r["reasons"].values()) == 2


def test_failure_mode_says_where_an_episode_left_the_reference(tok, eps: list[D.Episode]) -> None:
    ep = next(e for e in eps if e.template.startswith("calc/"))
    ref = next(tc["function"] for m in ep.messages for tc in m.get("tool_calls") or [])

    def scripted(*texts: str):
        queue = list(texts)
        return lambda ids, n, stop=(): (tok.encode(queue.pop(0)) if queue else [])[:n]

    def mode(*texts: str) -> str | None:
        return A.failure_mode(ep, A.run_episode(scripted(*texts), tok, ep))

    right = chat.format_tool_call(ref["name"], ref["arguments"])
    assert mode(right, f"{ep.answer}{chat.EOS}") is None  # solved
    assert mode("It is 0." + chat.EOS) == "no tool call"
    assert mode(chat.format_tool_call("weekday", {"date": "2020-01-01"}), "0" + chat.EOS) == "wrong tool"
    assert (
        mode(chat.format_tool_call(ref["name"], {"expression": "1 + 1"}), "2" + chat.EOS) == "wrong arguments"
    )
    assert mode(right, "I do not know." + chat.EOS) == "answer"
    assert mode("no end of text here") == "no final answer"
    direct = next(e for e in eps if e.kind in D.NO_TOOL_KINDS)
    r = A.run_episode(scripted(right, "Hi." + chat.EOS), tok, direct)
    assert A.failure_mode(direct, r) == "called a tool"
    records: list[dict] = []
    r = A.evaluate(_garbage(tok, 0), tok, eps[:14], records=records)  # every failed episode is counted once
    assert sum(r["failure_modes"].values()) == r["n"] - r["reasons"].get("ok", 0) > 0
    # the per-episode records say the same, episode by episode, as plain JSON
    assert [x["template"] for x in records] == [e.template for e in eps[:14]]
    assert collections.Counter(x["failure_mode"] for x in records if not x["success"]) == r["failure_modes"]
    assert all(x["reference"] == A.reference_calls(e) for x, e in zip(records, eps, strict=False))
    json.dumps(records)
