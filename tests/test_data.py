"""Tool envs, the trajectory generator, train/inference prompt consistency, loss masks, packing, text loaders."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from pathlib import Path

import pytest
import torch

from edgeport import chat
from edgeport import data as D
from edgeport.data import episodes
from edgeport.errors import EdgeportError
from edgeport.tokenizer import load_tokenizer
from edgeport.tools import SCHEMAS, ToolEnv, calculate, convert_units


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def train_eps() -> list[D.Episode]:
    return D.generate_episodes(300, seed=0, split="train")


@pytest.fixture(scope="module")
def eval_eps() -> list[D.Episode]:
    return D.generate_episodes(300, seed=0, split="eval")


# ------------------------------------------------------------------ tool envs
def test_calculator_matches_python_and_refuses_code() -> None:
    rng = random.Random(0)
    for _ in range(200):
        a, b, c = rng.randint(-50, 50), rng.randint(1, 50), rng.randint(0, 5)
        op = rng.choice("+-*/%")
        expr = f"({a} {op} {b}) * {c} - {b} ** 2"
        want = ((a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b if op == "/"
                 else a % b) * c - b**2)  # fmt: skip
        assert calculate(expr) == pytest.approx(want, abs=1e-4)
    assert calculate("sqrt(16) + abs(-2)") == 6
    env = ToolEnv()
    for bad in ["__import__('os').system('true')", "open('x')", "a + 1", "1/0", "9 ** 9 ** 9", "", "[1, 2]"]:
        out = json.loads(env.call("calculate", {"expression": bad}))
        assert set(out) == {"error"}, (bad, out)


def test_unit_conversion() -> None:
    assert convert_units(1, "mi", "km") == pytest.approx(1.6093, abs=1e-4)
    assert convert_units(100, "celsius", "F") == 212
    assert convert_units(32, "fahrenheit", "c") == 0
    assert convert_units(0, "c", "k") == 273.15
    assert convert_units(2, "kg", "grams") == 2000
    assert convert_units(1, "gal", "l") == pytest.approx(3.7854, abs=1e-4)
    rng = random.Random(1)
    for _ in range(50):  # round trips within rounding
        v = round(rng.uniform(1, 500), 1)
        a, b = rng.choice(D.UNIT_PAIRS)
        assert convert_units(convert_units(v, a, b), b, a) == pytest.approx(v, rel=2e-3, abs=2e-3)
    env = ToolEnv()
    assert "error" in json.loads(env.call("convert_units", {"value": 1, "from_unit": "kg", "to_unit": "km"}))
    assert "error" in json.loads(env.call("convert_units", {"value": "x", "from_unit": "kg", "to_unit": "g"}))
    assert "error" in json.loads(
        env.call("convert_units", {"value": 1, "from_unit": "parsec", "to_unit": "m"})
    )


def test_dates_against_datetime() -> None:
    env = ToolEnv({"today": "2024-02-27"})
    rng = random.Random(2)
    assert json.loads(env.call("today", {})) == {"result": "2024-02-27"}
    for _ in range(50):
        d = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(4000))
        n = rng.randint(-500, 500)
        got = json.loads(env.call("add_days", {"date": d.isoformat(), "days": n}))["result"]
        assert got == (d + dt.timedelta(days=n)).isoformat()
        assert json.loads(env.call("weekday", {"date": d.isoformat()}))["result"] == d.strftime("%A")
        e = d + dt.timedelta(days=n)
        got = json.loads(env.call("days_between", {"start": d.isoformat(), "end": e.isoformat()}))["result"]
        assert got == n
    assert "error" in json.loads(env.call("weekday", {"date": "2024-13-01"}))
    assert "error" in json.loads(env.call("add_days", {"date": "2024-01-01", "days": 1.5}))


def test_files_notes_and_errors_are_data() -> None:
    env = ToolEnv({"files": {"/docs/a.txt": "alpha", "/work/b.txt": "beta"}, "notes": {"k": "v"}})
    assert json.loads(env.call("ls", {"path": "/"}))["result"] == ["/docs/a.txt", "/work/b.txt"]
    assert json.loads(env.call("ls", {"path": "/docs"}))["result"] == ["/docs/a.txt"]
    assert json.loads(env.call("cat", {"path": "docs/a.txt"}))["result"] == "alpha"
    assert "error" in json.loads(env.call("cat", {"path": "/a.txt"}))
    assert "error" in json.loads(env.call("ls", {"path": "/nothing"}))
    assert "error" in json.loads(env.call("cat", {"path": "/docs/../etc/passwd"}))
    # find takes a name (a leading slash or folder is dropped) and answers every path with exactly that file name
    assert json.loads(env.call("find", {"name": "b.txt"}))["result"] == ["/work/b.txt"]
    assert json.loads(env.call("find", {"name": "/a.txt"}))["result"] == ["/docs/a.txt"]
    assert "no file named 'a'" in json.loads(env.call("find", {"name": "a"}))["error"]
    assert "error" in json.loads(env.call("find", {"name": " "}))
    env.call("write", {"path": "/new/c.txt", "text": "gamma"})
    assert json.loads(env.call("cat", {"path": "/new/c.txt"}))["result"] == "gamma"
    assert "error" in json.loads(env.call("write", {"path": "/docs", "text": "x"}))  # a folder
    assert json.loads(env.call("note_get", {"key": "k"}))["result"] == "v"
    env.call("note_save", {"key": "k2", "text": "w"})
    assert env.state()["notes"] == {"k": "v", "k2": "w"}
    for name, args in [("nope", {}), ("cat", {}), ("cat", {"path": "/docs/a.txt", "x": 1}), ("cat", "{bad"),
                       ("cat", [1]), ("note_get", {"key": "missing"})]:  # fmt: skip
        out = json.loads(env.call(name, args))
        assert set(out) == {"error"}, (name, args, out)
    for s in SCHEMAS.values():  # compact schemas: the tools block must fit a tiny context
        assert len(json.dumps(s)) < 320


# ------------------------------------------------------------------ generator
def test_generator_is_deterministic() -> None:
    a = [e.to_dict() for e in D.generate_episodes(40, seed=7)]
    b = [e.to_dict() for e in D.generate_episodes(40, seed=7)]
    c = [e.to_dict() for e in D.generate_episodes(40, seed=8)]
    assert a == b
    assert a != c
    assert json.loads(json.dumps(a)) == a  # plain JSON, round-trips


def test_episodes_are_real_executions(train_eps: list[D.Episode]) -> None:
    kinds = {e.kind for e in train_eps}
    assert kinds == set(D.KINDS)
    for ep in train_eps:
        D.verify_episode(ep)  # replays every call in a fresh env
        n_calls = sum(len(m.get("tool_calls") or []) for m in ep.messages)
        assert (n_calls == 0) == (ep.kind in D.NO_TOOL_KINDS)
        turns = [i for i, m in enumerate(ep.messages) if m["role"] == "user"] + [len(ep.messages)]
        # each user turn: solvable within the agent's max_steps=4, and answered
        for a, b in zip(turns, turns[1:], strict=False):
            assert sum(1 for m in ep.messages[a:b] if m["role"] == "assistant") <= 4
            assert ep.messages[b - 1]["role"] == "assistant" and not ep.messages[b - 1].get("tool_calls")
        assert ep.messages[0] == {"role": "user", "content": ep.task}
        assert set(ep.tool_names) >= {
            tc["function"]["name"] for m in ep.messages for tc in m.get("tool_calls") or []
        }
        if ep.kind == "chain":
            assert n_calls >= 2
        if ep.kind == "error":  # a failed call, then a recovery that succeeds or an answer that reports it
            results = [json.loads(m["content"]) for m in ep.messages if m["role"] == "tool"]
            assert "error" in results[0]
            reported = isinstance(ep.answer, str) and ep.answer.startswith(("no such file", "no file named"))
            assert "result" in results[-1] or reported  # a file in no folder: cat and find both fail
        if ep.kind == "unsupported":
            assert "can't" in ep.messages[-1]["content"] and ep.answer == "can't"
    # tampering with the env or a recorded result is caught by the re-execution
    ep = next(e for e in train_eps if e.template.startswith("cat/"))
    bad = D.Episode.from_dict(json.loads(json.dumps(ep.to_dict())))
    bad.env_state["files"] = {k: v + "!" for k, v in bad.env_state["files"].items()}
    with pytest.raises(AssertionError):
        D.verify_episode(bad)


def test_splits_are_disjoint(train_eps: list[D.Episode], eval_eps: list[D.Episode]) -> None:
    train_keys = {(e.template, e.seed) for e in train_eps}
    eval_keys = {(e.template, e.seed) for e in eval_eps}
    assert not train_keys & eval_keys
    assert not {e.seed for e in train_eps} & {e.seed for e in eval_eps}
    # whole phrasing families (templates, wrappers, follow-up turns) are held out: never in training
    big_train = D.generate_episodes(1500, seed=1)
    for ep in train_eps + big_train:
        assert not set(ep.phrasing) & D.HELDOUT, (ep.template, ep.phrasing)
        assert not ep.heldout
    sorts = {p.split("/")[0] for p in D.HELDOUT}
    assert {"wrap", "unsupported", "calc", "then+"} <= sorts  # families of every sort are held out
    # requests with no slots are whole texts: a held-out one never appears in training
    held_texts = {m["content"] for e in eval_eps if e.heldout for m in e.messages if m["role"] == "user"}
    train_texts = {m["content"] for e in big_train for m in e.messages if m["role"] == "user"}
    fixed = {q for fam in D.TEMPLATE_BY_NAME["unsupported"].paraphrases[-2:] for q in fam if "{" not in q}
    assert held_texts & fixed and not train_texts & fixed
    # eval really uses them: about half its episodes, and every held-out id shows up in a few thousand
    assert 0.3 < sum(e.heldout for e in eval_eps) / len(eval_eps) < 0.7
    many = D.generate_episodes(1400, seed=2, split="eval")
    assert {p for e in many for p in e.phrasing} >= D.HELDOUT
    assert {e.template.split("/")[0] for e in many} == {t.name for t in D.TEMPLATES if not t.train_only}


def test_training_requests_get_surface_noise_and_eval_requests_do_not(eval_eps: list[D.Episode]) -> None:
    """Fillers, openers, closers, case and punctuation vary the training requests; slots stay intact."""
    rng = random.Random(0)
    outs = {episodes._noisy("Convert {v} {fu} to {tu}.", rng) for _ in range(300)}
    assert len(outs) > 20 and all("{v} {fu} to {tu}" in o for o in outs)
    assert any(f in o.split(" ") for o in outs for f in episodes.FILLERS)
    extras = [*episodes.OPENERS, *episodes.CLOSERS]
    train = [
        m["content"] for e in D.generate_episodes(600, seed=3) for m in e.messages if m["role"] == "user"
    ]
    evals = [m["content"] for e in eval_eps for m in e.messages if m["role"] == "user"]
    assert 0.05 < sum(any(x in q for x in extras) for q in train) / len(train) < 0.5
    assert not any(x in q for q in evals for x in extras)
    with pytest.raises(EdgeportError):
        D.generate_episodes(1, split="dev")
    with pytest.raises(EdgeportError):
        D.generate_episodes(1, tools="some")


def test_kinds_and_tool_offers(train_eps: list[D.Episode], eval_eps: list[D.Episode]) -> None:
    """Tools offered: the needed ones plus distractors in random order (often all); eval: all, kinds balanced."""
    from edgeport.tools import TOOL_NAMES

    every = set(TOOL_NAMES)
    orders = set()
    for ep in eval_eps:
        assert sorted(ep.tool_names) == sorted(every)
        orders.add(tuple(ep.tool_names))
    assert len(orders) > len(eval_eps) // 2  # shuffled, not one fixed order
    counts = {k: sum(e.kind == k for e in eval_eps) for k in D.KINDS}
    assert max(counts.values()) - min(counts.values()) <= 1
    n_all = n_distract = n_withheld = 0
    for ep in train_eps:
        needed = set(D.TEMPLATE_BY_NAME[ep.template.split("/")[0]].tools)
        offered = set(ep.tool_names)
        assert len(offered) == len(ep.tool_names)  # no tool twice
        if ep.kind == "unsupported" and needed:  # a tool task whose tools were not offered: said so
            assert not needed & offered and len(ep.messages) == 2
            n_withheld += 1
            continue
        assert offered >= needed
        n_all += offered == every
        n_distract += needed < offered < every
    assert 0.25 < n_all / len(train_eps) < 0.6 and n_distract > 0.2 * len(train_eps) and n_withheld > 0
    # several calls in one turn; follow-ups that refer to what came before
    for ep in train_eps + eval_eps:
        if ep.kind == "parallel":
            assert any(len(m.get("tool_calls") or []) >= 2 for m in ep.messages)
        if ep.kind == "followup":
            assert sum(m["role"] == "user" for m in ep.messages) >= 2
        name = ep.template.split("/")[0]
        results = [json.loads(m["content"]).get("result") for m in ep.messages if m["role"] == "tool"]
        calls = [tc["function"]["arguments"] for m in ep.messages for tc in m.get("tool_calls") or []]
        if name == "calc_then":  # "Now add 5 to that." -> the first result is the left operand
            assert calls[1]["expression"].startswith(f"{results[0]} ")
        if name == "ls_then_cat":  # "What does the first one say?" -> the first listed path
            assert calls[1]["path"] == results[0][0]


def test_both_renderings(tok, train_eps: list[D.Episode]) -> None:
    """Half the episodes think (a short <think> block before every assistant turn, trained after the template's
    default prompt, which a client with no enable_thinking flag renders); the others train after the
    enable_thinking=False prompt."""
    thinking = [e for e in train_eps if e.thinking]
    assert 0.3 < len(thinking) / len(train_eps) < 0.7
    for ep in train_eps[:80]:
        for prompt, target in D.turn_examples(ep.messages, ep.tools):
            if ep.thinking:
                assert prompt.endswith(chat.ASSISTANT) and target.startswith(chat.THINK_START + "\n")
                thought = target[len(chat.THINK_START) : target.index(chat.THINK_END)]
                assert 10 < len(thought) < 100  # short
                assert prompt == chat.render(*_upto(ep, prompt), add_generation_prompt=True)
            else:
                assert prompt.endswith(chat.ASSISTANT + chat.EMPTY_THINK) and chat.THINK_START not in target
        finals = [m["content"] for m in ep.messages if m["role"] == "assistant"]
        assert all(c.startswith(chat.THINK_START) == ep.thinking for c in finals)
        assert chat.THINK_START not in chat.strip_reasoning(finals[-1])


def _upto(ep: D.Episode, prompt: str) -> tuple[list[dict], list[dict] | None]:
    """The messages whose generation prompt is `prompt`."""
    for i in range(len(ep.messages)):
        if chat.render(ep.messages[:i], ep.tools, add_generation_prompt=True) == prompt:
            return ep.messages[:i], ep.tools
    raise AssertionError("no such prefix")


# ------------------------------------------------------------------ train/inference consistency and masks
def test_training_prompts_are_generation_prompts(train_eps: list[D.Episode]) -> None:
    """Each training example's prompt is the exact generation prompt (edgeport/chat.py's rules)."""
    for ep in [e for e in train_eps if not e.thinking][:60]:
        turns = D.turn_examples(ep.messages, ep.tools)
        idx = [i for i, m in enumerate(ep.messages) if m["role"] == "assistant"]
        assert len(turns) == len(idx)
        for i, (prompt, target) in zip(idx, turns, strict=True):
            assert prompt == chat.render(
                ep.messages[:i], ep.tools, add_generation_prompt=True, enable_thinking=False
            )
            assert prompt.endswith(chat.ASSISTANT + chat.EMPTY_THINK)
            assert target.endswith(chat.EOS) and chat.THINK_END not in target
            assert chat.render(ep.messages[: i + 1], ep.tools) == prompt + target
            m = ep.messages[i]
            calls = "\n".join(chat.format_tool_call(c["function"]["name"], c["function"]["arguments"])
                              for c in m.get("tool_calls") or [])  # fmt: skip
            assert target == m["content"] + calls + chat.EOS
    # a turn that carries its own reasoning is trained after a thinking-mode prompt
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello"},
    ]
    ((prompt, target),) = D.turn_examples(msgs)
    assert prompt == chat.render(msgs[:1], add_generation_prompt=True)
    assert target.startswith("<think>") and prompt + target == chat.render(msgs)
    with pytest.raises(EdgeportError, match="must follow"):
        D.turn_examples([{"role": "assistant", "content": "x"}])


def _runs(ids: list[int], mask: list[bool]) -> list[tuple[int, int]]:
    """[start, end) of every maximal run of target tokens."""
    out, start = [], None
    for t, k in enumerate([*mask, False]):
        if k and start is None:
            start = t
        elif not k and start is not None:
            out.append((start, t))
            start = None
    return out


def test_loss_mask_covers_exactly_assistant_tokens(tok, train_eps: list[D.Episode]) -> None:
    """One render per conversation: every assistant turn is a target; a turn shown as the agent generated it is
    trained after exactly its generation prompt; a turn in history form (no think block, where the agent's
    prompt had the empty one) is trained from its second token on."""
    exact = history = 0
    for ep in train_eps[:60]:
        ids, mask = D.encode_example(tok, ep, "sft")
        assert len(ids) == len(mask)
        assert ids == tok.encode(chat.render(ep.messages, ep.tools))
        turns = D.turn_examples(ep.messages, ep.tools)
        runs = _runs(ids, mask)
        assert len(runs) == len(turns)
        for (a, b), (prompt, target) in zip(runs, turns, strict=True):
            if tok.decode(ids[a:b]) == target:  # the agent's own context
                assert tok.decode(ids[:a]) == prompt
                assert ids[:b] == tok.encode(prompt) + tok.encode(target)
                exact += 1
            else:  # history form: <|Assistant|> + the target without its first token
                assert not ep.thinking and tok.decode(ids[a - 2 : a - 1]) == chat.ASSISTANT
                assert target == tok.decode(ids[a - 1 : b])
                history += 1
        assert runs[-1][1] == len(ids) and tok.decode(ids[-1:]) == chat.EOS
    assert exact > 60 and history > 10
    ids, mask = D.encode_example(tok, "Hello world.", "text")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and mask == [False] + [True] * (len(ids) - 1)
    with pytest.raises(EdgeportError):
        D.encode_example(tok, "x", "chat")
    with pytest.raises(EdgeportError, match="must follow"):
        D.encode_example(tok, [{"role": "assistant", "content": "x"}], "sft")


def test_every_turn_is_trained_in_its_exact_context(tok, train_eps: list[D.Episode]) -> None:
    """The training examples of a conversation: its render, plus an exact (generation prompt, target) example
    for every turn the render shows only in history form, so each turn is trained at least once exactly as the
    agent prompts it (a non-thinking tool call after the empty think block included)."""
    extra = 0
    for ep in train_eps[:60]:
        exs = D.episode_examples(tok, ep)
        assert exs[0] == D.encode_example(tok, ep, "sft")
        assert D.episode_examples(tok, ep, exact_turns=False) == exs[:1]  # the shipped recipe's data
        rendered = chat.render(ep.messages, ep.tools)
        covered = [rendered.startswith(p + t) for p, t in D.turn_examples(ep.messages, ep.tools)]
        assert len(exs) == 1 + covered.count(False)
        assert not ep.thinking or len(exs) == 1
        for (ids, mask), (p, t) in zip(
            exs[1:],
            [pt for pt, c in zip(D.turn_examples(ep.messages, ep.tools), covered, strict=True) if not c],
            strict=True,
        ):
            assert ids == tok.encode(p) + tok.encode(t) and p.endswith(chat.ASSISTANT + chat.EMPTY_THINK)
            assert tok.decode([i for i, k in zip(ids, mask, strict=True) if k]) == t
            extra += 1
    assert extra > 10


def test_pack_shapes_and_content() -> None:
    rng = random.Random(3)
    exs, units = [], []
    for _ in range(40):  # examples of 1-3 (prompt, target) parts, like a multi-turn conversation
        ids: list[int] = []
        mask: list[bool] = []
        for _ in range(rng.randint(1, 3)):
            p, t = rng.choice([1, 3, 6, 25]), rng.choice([1, 2, 4])  # 25 > a row: must flow across rows
            ids += [rng.randrange(1, 100) for _ in range(p + t)]
            mask += [False] * p + [True] * t
        units.append(ids)
        exs.append((ids, mask))
    L, eos = 15, 0
    x, m = D.pack(exs, L, eos)
    assert x.dtype == torch.int64 and m.dtype == torch.bool and x.shape == m.shape and x.shape[1] == L + 1
    flat = list(zip(x.flatten().tolist(), m.flatten().tolist(), strict=True))
    real = [(t, k) for t, k in flat if t != eos]  # ids are >= 1, pad is 0
    assert sorted(real) == sorted((t, k) for ids, mk in exs for t, k in zip(ids, mk, strict=True))  # all kept
    assert all(not k for t, k in flat if t == eos)  # padding never trains
    rows = x.tolist()
    for u in units:  # an example that fits a row lies inside one row: no target loses its prompt
        if len(u) <= L + 1:
            assert any(u == r[i : i + len(u)] for r in rows for i in range(L + 2 - len(u))), u
    assert float((x == eos).float().mean()) < 0.25  # first-fit keeps padding low
    x2, m2 = D.pack(exs, L, eos)
    assert torch.equal(x, x2) and torch.equal(m, m2)
    assert D.pack([], L, eos)[0].shape == (0, L + 1)
    with pytest.raises(ValueError):
        D.pack([([1, 2], [True])], L, eos)


def test_mixture_stages(tok, train_eps: list[D.Episode]) -> None:
    texts = D.builtin_text("train")[:6]
    out = D.mixture(tok, texts, train_eps[:30], seq_len=64, seed=0)
    assert set(out) == {"pretrain", "midtrain", "sft"}
    for x, m in out.values():
        assert x.ndim == 2 and x.shape[1] == 65 and x.dtype == torch.int64 and m.shape == x.shape
        assert int(x.max()) < tok.vocab_size
    frac = {k: float(m.float().mean()) for k, (x, m) in out.items()}
    assert frac["pretrain"] > 0.9  # text: loss on (almost) every token
    assert 0 < frac["sft"] < 0.5  # trajectories: assistant tokens only
    assert frac["sft"] < frac["midtrain"] < frac["pretrain"]
    longest = max(len(tok.encode(chat.render(e.messages, e.tools))) for e in train_eps[:30])
    x, m = D.mixture(tok, texts, train_eps[:30], seq_len=longest, seed=0)["sft"]
    for r, k in zip(
        x.tolist(), m.tolist(), strict=True
    ):  # every target has its whole conversation in its row
        for t in range(1, len(r)):
            if k[t] and not k[t - 1]:
                start = t - 1 - r[:t][::-1].index(tok.bos_id)
                assert tok.decode(r[start : start + 1]) == chat.BOS
                before = tok.decode(r[start:t])
                assert before.endswith((chat.ASSISTANT + chat.EMPTY_THINK, chat.ASSISTANT)) or tok.decode(
                    r[start : t - 1]
                ).endswith(chat.ASSISTANT)  # a history-form turn trains from its second token
    again = D.mixture(tok, texts, train_eps[:30], seq_len=64, seed=0)
    assert all(torch.equal(out[k][0], again[k][0]) for k in out)


def test_mixture_sft_text_share(tok, train_eps: list[D.Episode]) -> None:
    """sft_text puts text rows (loss on every token) into the SFT stage, about that share of its tokens."""
    texts = D.builtin_text("train")[:20]
    plain = D.mixture(tok, texts, train_eps[:40], seq_len=256, seed=0)["sft"]
    x, m = D.mixture(tok, texts, train_eps[:40], seq_len=256, seed=0, sft_text=0.2)["sft"]
    share = (len(x) - len(plain[0])) / len(x)  # the added rows are text, whole rows of it
    assert 0.1 < share < 0.35, share
    dense = lambda mask: int((mask.float().mean(dim=1) > 0.95).sum())  # noqa: E731
    assert dense(m) - dense(plain[1]) >= 0.8 * (len(x) - len(plain[0]))  # loss on (almost) every token


# ------------------------------------------------------------------ text sources
def test_builtin_text_split() -> None:
    train, held = D.builtin_text("train"), D.builtin_text("heldout")
    assert train == D.builtin_text("train") and held and train
    assert not set(train) & set(held)
    share = sum(map(len, held)) / (sum(map(len, held)) + sum(map(len, train)))
    assert 0.03 < share < 0.25
    assert D.builtin_text("val") == held
    with pytest.raises(EdgeportError):
        D.builtin_text("dev")


def test_load_text_file(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("First para\nline two.\n\n\nSecond para.\n  \nThird.")
    assert D.load_text_file(p) == ["First para\nline two.", "Second para.", "Third."]
    ep = D.generate_episodes(1, seed=0)[0]
    q = tmp_path / "b.jsonl"
    q.write_text(
        json.dumps({"text": "hello"}) + "\n\n" + json.dumps({"messages": ep.messages, "tools": ep.tools})
    )
    items = D.load_text_file(q)
    assert items[0] == "hello" and items[1]["messages"] == ep.messages
    for body, msg in [
        ('{"text": "ok"}\n{"text": broken}\n', "b.jsonl:2: bad JSON"),
        ('{"text": "ok"}\n{"txt": "x"}\n', "b.jsonl:2: expected"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "b.jsonl:1: 'messages' has no assistant"),
        ('{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n',
         "b.jsonl:1: chat message 0"),
    ]:  # fmt: skip
        q.write_text(body)
        with pytest.raises(EdgeportError, match=msg) as e:
            D.load_text_file(q)
        assert "\n" not in str(e.value)
    with pytest.raises(EdgeportError, match="not found"):
        D.load_text_file(tmp_path / "missing.txt")
    (tmp_path / "c.csv").write_text("a,b")
    with pytest.raises(EdgeportError, match="unsupported"):
        D.load_text_file(tmp_path / "c.csv")


def test_episode_jsonl_roundtrip(tmp_path: Path, eval_eps: list[D.Episode]) -> None:
    D.episodes_to_jsonl(eval_eps[:5], tmp_path / "e.jsonl")
    assert [e.to_dict() for e in D.load_episodes(tmp_path / "e.jsonl")] == [e.to_dict() for e in eval_eps[:5]]


def test_prompted_turns_train_a_tool_call_after_the_empty_think_block(
    tok, train_eps: list[D.Episode]
) -> None:
    """prompted_turns: an earlier non-thinking turn carries the empty think block the agent's generation prompt
    supplies; in the render that block is context and the whole turn after it is a target, so the turn is
    trained exactly as the agent prompts it (turn_examples), at no extra tokens."""
    eps = [e for e in train_eps if not e.thinking and sum(m["role"] == "assistant" for m in e.messages) > 1]
    assert len(eps) > 10
    checked = 0
    for ep in eps[:20]:
        msgs = D.prompted_turns(ep.messages, 1.0, random.Random(0))
        assert msgs[-1] == ep.messages[-1] and ep.messages == D.prompted_turns(
            ep.messages, 0.0, random.Random(0)
        )
        ids, mask = D.encode_example(tok, {"messages": msgs, "tools": ep.tools}, "sft")
        runs = _runs(ids, mask)
        turns = D.turn_examples(ep.messages, ep.tools)
        assert tok.decode(ids[: runs[0][0]]) == turns[0][0]  # the first turn: exactly the agent's prompt
        for (a, b), (prompt, target) in zip(runs, turns, strict=True):
            assert tok.decode(ids[a:b]) == target and prompt.endswith(chat.ASSISTANT + chat.EMPTY_THINK)
            assert tok.decode(ids[:a]).endswith(chat.ASSISTANT + chat.EMPTY_THINK)
            checked += 1
    assert checked > 20
    thinking = next(e for e in train_eps if e.thinking)
    assert D.prompted_turns(thinking.messages, 1.0, random.Random(0)) == thinking.messages


def test_sessions_chain_all_tool_episodes_under_one_tool_block(tok, train_eps: list[D.Episode]) -> None:
    """sessions: episodes offering every tool are chained (same rendering only) into conversations that fit a
    row, each episode's messages whole and in order, the tool block once; the others pass through."""
    full = [e for e in train_eps if len(e.tool_names) == len(SCHEMAS)]
    row = max(len(tok.encode(D.episode_text(e))) for e in full) + 300
    out = D.sessions(tok, train_eps, row, random.Random(0))
    chained = [s for s in out if isinstance(s, dict)]
    passed = [s for s in out if isinstance(s, D.Episode)]
    assert len(passed) == len(train_eps) - len(full) and all(len(e.tool_names) < len(SCHEMAS) for e in passed)
    firsts = {id(e.messages[0]): e for e in full}
    n_chained = 0
    for s in chained:
        text = D.episode_text(s)
        assert len(tok.encode(text)) <= row and text.count(chat.TOOLS_HEADER) == 1
        starts = [firsts[id(m)] for m in s["messages"] if id(m) in firsts]
        assert len({e.thinking for e in starts}) == 1
        assert [m for e in starts for m in e.messages] == s["messages"]
        n_chained += len(starts) > 1
    assert sum(len(s["messages"]) for s in chained) == sum(len(e.messages) for e in full)
    assert n_chained > len(chained) // 2


def test_tool_offer_shares_are_training_knobs(train_eps: list[D.Episode]) -> None:
    """all_tools / withhold (TrainConfig all_tools, withhold) change which tools a training episode offers and
    nothing else: the same tasks, messages and answers, and the defaults are the generator's constants."""
    from edgeport.tools import TOOL_NAMES

    n = len(train_eps)
    assert [e.to_dict() for e in D.generate_episodes(n, split="train")] == [e.to_dict() for e in train_eps]
    every = set(TOOL_NAMES)
    all_offered = D.generate_episodes(n, split="train", all_tools=1.0, withhold=0.0)
    none_withheld = 0
    for a, b in zip(all_offered, train_eps, strict=True):
        assert set(a.tool_names) == every and a.task == b.task
        withheld = b.kind == "unsupported" and D.TEMPLATE_BY_NAME[b.template.split("/")[0]].tools
        if not withheld:
            assert a.messages == b.messages and a.answer == b.answer
        else:  # offered its tool, the task is done instead of declined
            none_withheld += 1
            assert a.kind == "single" and any(m.get("tool_calls") for m in a.messages)
    assert none_withheld > 0
    few = D.generate_episodes(n, split="train", all_tools=0.0)  # all only when the distractors drawn are all
    assert (
        sum(set(e.tool_names) == every for e in few)
        < 0.2 * n
        < sum(set(e.tool_names) == every for e in train_eps)
    )


def test_heldout_phrasings_are_not_in_training_families() -> None:
    """A held-out request, wrapper or follow-up is never also a training phrasing (case and punctuation aside)."""

    def norm(s: str) -> str:
        return " ".join("".join(c for c in s.lower() if c.isalnum() or c in " {}").split())

    train_texts, held_texts = _phrasings(train_only=True)
    train, held = {norm(q) for q in train_texts}, {norm(q) for q in held_texts}
    assert held and not held & train, sorted(held & train)


def _phrasings(train_only: bool) -> tuple[list[str], list[str]]:
    """Every request, wrapper and follow-up phrasing: (training ones, held-out ones); `train_only`: with the
    training-only templates' phrasings among the training ones."""
    train: list[str] = []
    held: list[str] = []
    for t in D.TEMPLATES:
        if t.train_only and not train_only:
            continue
        for f, fam in enumerate(t.paraphrases):
            (held if f"{t.name}/{f}" in D.HELDOUT else train).extend(fam)
    for f, fam in enumerate(episodes.WRAPPERS):
        (held if f"wrap/{f}" in D.HELDOUT else train).extend(a + " " + b for a, b in fam)
    for k, opts in episodes.FOLLOWUPS.items():
        for i, q in enumerate(opts):
            (held if f"{k}/{i}" in D.HELDOUT else train).append(q)
    return train, held


def test_composed_training_requests_join_training_phrasings_only() -> None:
    """Composed requests (two single-call phrasings, or a calculation plus a save clause) get both calls, and no
    held-out wording is drawn."""
    eps = D.generate_episodes(2500, seed=3)
    composed = [e for e in eps if e.phrasing[0].endswith("/composed")]
    assert {e.template.split("/")[0] for e in composed} == set(episodes.COMPOSE)
    held = [
        q.split("{")[0]
        for name in episodes.COMPOSE
        for t in [D.TEMPLATE_BY_NAME[episodes.COMPOSE[name][0]]]
        for fam in t.paraphrases[len(t.paraphrases) - t.heldout :]
        for q in fam
        if q.split("{")[0]
    ]
    assert held  # e.g. "I need the value of "
    for e in composed:
        assert not any(h in e.task for h in held), e.task
        calls = [c for m in e.messages for c in m.get("tool_calls") or []]
        assert len(calls) == 2 and D.answer_matches(chat.strip_reasoning(e.messages[-1]["content"]), e.answer)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", re.sub(r"\{[a-z0-9_]+\}", " ", text.lower())))


def test_training_only_templates_add_no_heldout_word_and_call_once_per_item() -> None:
    """Round 19's lists of 2-4 items and extra unsupported topics: training only, one call per item, and no word
    that only held-out families use (so they widen the training wording without teaching held-out wording)."""
    extra = [t for t in D.TEMPLATES if t.train_only]
    assert {t.name for t in extra} >= {
        "calc_list",
        "convert_list",
        "weekday_list",
        "cat_list",
        "unsupported_more",
    }
    train_texts, held_texts = _phrasings(train_only=False)  # the wording before the training-only templates
    held_only = {w for q in held_texts for w in _words(q)} - {w for q in train_texts for w in _words(q)}
    assert {"wherever", "conversions", "well"} <= held_only
    new_words = {w for t in extra for fam in t.paraphrases for q in fam for w in _words(q)}
    assert not new_words & held_only, sorted(new_words & held_only)

    eps = D.generate_episodes(3000, seed=4)
    lists = [e for e in eps if e.template.split("/")[0].endswith("_list")]
    assert {e.template.split("/")[0] for e in lists} == {
        "calc_list",
        "convert_list",
        "weekday_list",
        "cat_list",
    }
    sizes = set()
    for e in lists:
        calls = [c for m in e.messages for c in m.get("tool_calls") or []]
        assert len(calls) == len(e.answer) and len(e.messages[1]["tool_calls"]) == len(calls)  # one turn
        assert D.answer_matches(chat.strip_reasoning(e.messages[-1]["content"]), e.answer)
        sizes.add(len(calls))
    assert sizes == {2, 3, 4}
    more = [e for e in eps if e.template.startswith("unsupported_more/")]
    assert more and all(e.kind == "unsupported" and len(e.messages) == 2 for e in more)
    # the frames of those topics also carry requests that call tools, so a frame alone does not mean "no tool"
    for frame in episodes.UNSUPPORTED_FRAMES:
        head = frame.split("<")[0]
        framed = [
            e for e in eps if e.tool_names and head and e.task.startswith(head) and e.template[:5] != "unsup"
        ]
        assert not head or any(c for e in framed for m in e.messages for c in m.get("tool_calls") or []), (
            frame
        )
    assert episodes._framed("Read {path} for me.", random.Random(0)).count("for me") == 1
    assert episodes._framed("What is {expr}?", random.Random(0)) == "What is {expr}?"
    eval_names = {e.template.split("/")[0] for e in D.generate_episodes(700, seed=5, split="eval")}
    assert not eval_names & {t.name for t in extra}
