"""Agentic trajectories from executable tool environments, and the answer checks the agent eval shares.

`generate_episodes(n, seed, split)` -> list[Episode]. Each episode is built by really running the tools of
`edgeport.tools.ToolEnv` and is re-executed from `env_state` when generated (the expected answer, computed
independently in Python, must equal what the tools returned). The eval split uses other seeds and, half of the
time, paraphrases that never appear in train. Episodes round-trip through JSON lines (`episodes_to_jsonl`,
`load_episodes`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError
from edgeport.tools import ToolEnv, calculate, convert_units, schemas

Split = str  # "train" | "eval"


@dataclass
class Episode:
    """One agentic conversation. `messages` follow the HF/OpenAI shape; `tools` are the schemas offered."""

    messages: list[dict]
    tools: list[dict] | None
    answer: Any  # expected final answer: str | int | float | list[str] (all must appear) | None (chit-chat)
    task: str  # the user request
    env_state: dict  # rebuild the env with ToolEnv(env_state)
    template: str  # "<template name>/<paraphrase index>"
    seed: int
    kind: str  # "single" | "chain" | "error" | "chat"
    expect_state: dict = field(
        default_factory=dict
    )  # e.g. {"notes": {k: v}} that must hold after the episode

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Episode:
        return cls(**d)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools or []]


# ================================================================= slot samplers
FILE_TEXTS = [
    "meeting moved to friday", "call the dentist at 3pm", "buy milk, eggs and bread", "the wifi password is sunflower42",
    "project deadline is june 12", "water the plants on monday", "flight leaves at 7:45", "pay the rent by the 5th",
    "lunch with sam at noon", "backup the laptop tonight", "the gate code is 4321", "return the library books",
    "dinner reservation for four", "renew the passport in may", "gym at 6 every tuesday", "send the report to alex",
]  # fmt: skip
FILE_NAMES = ["todo", "notes", "plan", "ideas", "reminder", "draft", "list", "memo", "agenda", "log"]
FOLDERS = ["docs", "work", "home", "notes", "tmp"]
NOTE_KEYS = [
    "locker code",
    "wifi password",
    "favorite color",
    "parking spot",
    "bike lock",
    "doctor",
    "gym day",
]
NOTE_VALUES = ["blue", "green", "7731", "B12", "tuesday", "level 3", "dr smith", "0420", "orchid", "friday"]
UNIT_WORDS = {  # unit -> words a user writes (each is accepted by convert_units)
    "km": ["km", "kilometers"], "m": ["m", "meters"], "cm": ["cm", "centimeters"], "mi": ["miles"], "ft": ["feet"],
    "in": ["inches"], "kg": ["kg", "kilograms"], "g": ["grams"], "lb": ["pounds", "lb"], "oz": ["ounces"],
    "l": ["liters"], "ml": ["ml"], "gal": ["gallons"], "cup": ["cups"], "c": ["celsius"], "f": ["fahrenheit"],
}  # fmt: skip
UNIT_PAIRS = [("km", "mi"), ("mi", "km"), ("m", "ft"), ("ft", "m"), ("in", "cm"), ("cm", "in"), ("kg", "lb"),
              ("lb", "kg"), ("oz", "g"), ("g", "oz"), ("l", "gal"), ("gal", "l"), ("cup", "ml"), ("ml", "cup"),
              ("c", "f"), ("f", "c"), ("km", "m"), ("kg", "g")]  # fmt: skip


def _date(rng: random.Random) -> str:
    import datetime as dt

    return (dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(0, 3650))).isoformat()


def _state(rng: random.Random, n_files: int | None = None) -> dict:
    """A seeded initial env: today's date, 2-4 files in random folders, 0-2 notes."""
    files: dict[str, str] = {}
    for name in rng.sample(FILE_NAMES, rng.randint(2, 4) if n_files is None else n_files):  # names are unique
        files[f"/{rng.choice(FOLDERS)}/{name}.txt"] = rng.choice(FILE_TEXTS)
    notes = {k: rng.choice(NOTE_VALUES) for k in rng.sample(NOTE_KEYS, rng.randint(0, 2))}
    return {"today": _date(rng), "files": files, "notes": notes}


def _num(rng: random.Random, lo: int = 2, hi: int = 99) -> int | float:
    x = round(rng.uniform(lo, hi), 1)
    return rng.randint(lo, hi) if rng.random() < 0.8 or x.is_integer() else x


# ================================================================= templates
# A template: the tools it offers, user paraphrases (the last `heldout` ones are eval-only), a sampler for slots
# and initial state, and a solver that issues calls through `call(name, args)` (really executed) and returns the
# final answer text and the expected answer. Each solver also checks its result against an independent Python
# computation where one exists.


@dataclass
class Template:
    name: str
    kind: str
    tools: tuple[str, ...]
    paraphrases: list[str]
    sample: Callable[[random.Random], dict]
    solve: Callable[[dict, Callable[[str, dict], Any], random.Random], tuple[str, Any]]
    heldout: int = 1
    weight: float = 1.0


def _pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


def _s_calc(rng: random.Random) -> dict:
    a, b, c = _num(rng), _num(rng), rng.randint(2, 20)
    op1, op2 = rng.choice("+-*/"), rng.choice("+-*")
    expr = f"{a} {op1} {b}" if rng.random() < 0.6 else f"({a} {op1} {b}) {op2} {c}"
    return {"expr": expr, "expect": calculate(expr), "state": _state(rng)}


def _v_calc(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    return _pick(rng, f"{slots['expr']} = {r}.", f"The result is {r}.", f"It comes to {r}."), r


def _s_mul(rng: random.Random) -> dict:
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    return {"a": a, "b": b, "expr": f"{a} * {b}", "expect": a * b, "state": _state(rng)}


def _s_share(rng: random.Random) -> dict:
    b = rng.randint(2, 12)
    a = b * rng.randint(2, 40)
    return {"a": a, "b": b, "expr": f"{a} / {b}", "expect": a // b, "state": _state(rng)}


def _v_calc_word(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    return _pick(rng, f"That makes {r}.", f"The answer is {r}.", f"{slots['expr']} = {r}, so {r}."), r


def _s_convert(rng: random.Random) -> dict:
    a, b = rng.choice(UNIT_PAIRS)
    v = _num(rng, 1, 500)
    return {"v": v, "fu": rng.choice(UNIT_WORDS[a]), "tu": rng.choice(UNIT_WORDS[b]),
            "expect": convert_units(v, a, b), "state": _state(rng)}  # fmt: skip


def _v_convert(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("convert_units", {"value": slots["v"], "from_unit": slots["fu"], "to_unit": slots["tu"]})
    return _pick(rng, f"{slots['v']} {slots['fu']} is {r} {slots['tu']}.", f"That is {r} {slots['tu']}."), r


def _s_run(rng: random.Random) -> dict:
    a, b = rng.randint(1, 30), rng.randint(1, 20)
    return {
        "a": a,
        "b": b,
        "expect": calculate(f"{a} + {convert_units(b, 'mi', 'km')}"),
        "state": _state(rng),
    }


def _v_run(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    km = call("convert_units", {"value": slots["b"], "from_unit": "miles", "to_unit": "km"})
    total = call("calculate", {"expression": f"{slots['a']} + {km}"})
    return _pick(
        rng, f"{slots['b']} miles is {km} km, so the total is {total} km.", f"In total {total} km."
    ), total


def _s_weigh(rng: random.Random) -> dict:
    a, n = rng.randint(1, 20), rng.randint(2, 9)
    return {
        "a": a,
        "n": n,
        "expect": calculate(f"{convert_units(a, 'lb', 'kg')} * {n}"),
        "state": _state(rng),
    }


def _v_weigh(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    kg = call("convert_units", {"value": slots["a"], "from_unit": "pounds", "to_unit": "kg"})
    total = call("calculate", {"expression": f"{kg} * {slots['n']}"})
    return _pick(
        rng, f"Each is {kg} kg, so {slots['n']} weigh {total} kg.", f"Together they weigh {total} kg."
    ), total


def _s_date(rng: random.Random) -> dict:
    import datetime as dt

    d, n = _date(rng), rng.randint(1, 400)
    d2 = (dt.date.fromisoformat(d) + dt.timedelta(days=rng.randint(1, 500))).isoformat()
    wd = dt.date.fromisoformat(d).strftime("%A")
    new = (dt.date.fromisoformat(d) + dt.timedelta(days=n)).isoformat()
    span = (dt.date.fromisoformat(d2) - dt.date.fromisoformat(d)).days
    return {"d": d, "d2": d2, "n": n, "wd": wd, "new": new, "span": span, "state": _state(rng)}


def _v_weekday(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("weekday", {"date": slots["d"]})
    assert r == slots["wd"], (r, slots)
    return _pick(rng, f"{slots['d']} is a {r}.", f"It is a {r}."), r


def _v_add_days(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("add_days", {"date": slots["d"], "days": slots["n"]})
    assert r == slots["new"], (r, slots)
    return _pick(rng, f"{slots['n']} days after {slots['d']} is {r}.", f"That is {r}."), r


def _v_between(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("days_between", {"start": slots["d"], "end": slots["d2"]})
    assert r == slots["span"], (r, slots)
    return _pick(rng, f"There are {r} days between them.", f"{r} days."), r


def _v_from_today(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    today = call("today", {})
    assert today == slots["state"]["today"]
    r = call("add_days", {"date": today, "days": slots["n"]})
    return _pick(rng, f"Today is {today}, so in {slots['n']} days it will be {r}.", f"It will be {r}."), r


def _v_weekday_in(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    today = call("today", {})
    d = call("add_days", {"date": today, "days": slots["n"]})
    r = call("weekday", {"date": d})
    return _pick(rng, f"In {slots['n']} days it will be {d}, a {r}.", f"It will be a {r} ({d})."), r


def _s_file(rng: random.Random) -> dict:
    state = _state(rng)
    path = rng.choice(sorted(state["files"]))
    folder = "/" + path.split("/")[1]
    listing = sorted(p for p in state["files"] if p.startswith(folder + "/"))
    return {"path": path, "name": path.rsplit("/", 1)[1], "folder": folder, "listing": listing,
            "content": state["files"][path], "state": state}  # fmt: skip


def _v_cat(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("cat", {"path": slots["path"]})
    assert r == slots["content"]
    return _pick(rng, f"{slots['path']} says: {r}", f"It says: {r}"), r


def _v_ls(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("ls", {"path": slots["folder"]})
    assert r == slots["listing"]
    names = ", ".join(p.rsplit("/", 1)[1] for p in r)
    return _pick(rng, f"{slots['folder']} has: {names}.", f"Files: {names}."), [
        p.rsplit("/", 1)[1] for p in r
    ]


def _v_cat_lost(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    """The user names a file without its folder: cat fails, ls finds it, cat again (error then recovery)."""
    err = call("cat", {"path": "/" + slots["name"]})
    assert isinstance(err, dict) and "error" in err
    found = [p for p in call("ls", {"path": "/"}) if p.endswith("/" + slots["name"])]
    r = call("cat", {"path": found[0]})
    assert r == slots["state"]["files"][found[0]]
    return _pick(rng, f"It is at {found[0]} and says: {r}", f"Found {found[0]}: {r}"), r


def _s_write(rng: random.Random) -> dict:
    state = _state(rng)
    path = f"/{rng.choice(FOLDERS)}/{rng.choice(FILE_NAMES)}.txt"
    text = rng.choice(FILE_TEXTS)
    return {
        "path": path,
        "text": text,
        "expect": text,
        "state": state,
        "expect_state": {"files": {path: text}},
    }


def _v_write_cat(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    call("write", {"path": slots["path"], "text": slots["text"]})
    r = call("cat", {"path": slots["path"]})
    assert r == slots["text"]
    return _pick(rng, f"Done. {slots['path']} now says: {r}", f"Saved. It reads: {r}"), r


def _s_note(rng: random.Random) -> dict:
    state = _state(rng)
    key = rng.choice(sorted(state["notes"]) or NOTE_KEYS)
    state["notes"].setdefault(key, rng.choice(NOTE_VALUES))
    return {"key": key, "expect": state["notes"][key], "state": state}


def _v_note_get(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("note_get", {"key": slots["key"]})
    return _pick(rng, f"Your {slots['key']} is {r}.", f"It is {r}."), r


def _s_note_save(rng: random.Random) -> dict:
    state, key, value = _state(rng), rng.choice(NOTE_KEYS), rng.choice(NOTE_VALUES)
    return {"key": key, "value": value, "expect": value, "state": state,
            "expect_state": {"notes": {key: value}}}  # fmt: skip


def _v_note_save(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    call("note_save", {"key": slots["key"], "text": slots["value"]})
    return _pick(rng, f"Saved: your {slots['key']} is {slots['value']}.", f"Noted, {slots['value']}."), slots[
        "value"
    ]


def _s_calc_note(rng: random.Random) -> dict:
    s = _s_calc(rng)
    s["key"] = rng.choice(["total", "result", "budget", "score", "sum"])
    s["expect_state"] = {"notes": {s["key"]: str(s["expect"])}}
    return s


def _v_calc_note(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    call("note_save", {"key": slots["key"], "text": str(r)})
    return _pick(rng, f"{slots['expr']} = {r}, saved as {slots['key']}.", f"Saved {slots['key']} = {r}."), r


CHAT = [
    ("Hi!", "Hello! How can I help you today?"),
    ("Hello there", "Hi! What can I do for you?"),
    ("Thanks a lot!", "You're welcome!"),
    ("Who are you?", "I am a small assistant that can use tools to help you."),
    ("What can you do?", "I can calculate, convert units, work with dates, notes and files."),
    ("Good morning", "Good morning! How can I help?"),
    ("Tell me a joke", "Why did the function return early? It had no arguments left."),
    ("Bye", "Goodbye! Have a nice day."),
    ("How are you?", "I'm doing well, thanks for asking. How can I help?"),
]


def _s_chat(rng: random.Random) -> dict:
    q, a = rng.choice(CHAT)
    return {"q": q, "a": a, "expect": None, "state": _state(rng)}


def _v_chat(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    return slots["a"], None


# fmt: off
TEMPLATES: list[Template] = [
    Template("calc", "single", ("calculate",), [
        "What is {expr}?", "Calculate {expr}.", "Compute {expr} for me.", "How much is {expr}?",
        "Can you work out {expr}?", "Please evaluate {expr}.", "I need the value of {expr}."], _s_calc, _v_calc,
        heldout=2, weight=2.0),
    Template("calc_mul", "single", ("calculate",), [
        "I have {a} boxes with {b} items each. How many items in total?",
        "There are {a} rows of {b} chairs. How many chairs?", "{a} packs of {b} pens: how many pens?",
        "A shelf holds {b} books and there are {a} shelves. How many books?"], _s_mul, _v_calc_word),
    Template("calc_share", "single", ("calculate",), [
        "Share {a} cookies among {b} kids. How many does each get?",
        "{a} dollars split between {b} people is how much each?",
        "If {b} friends split a bill of {a}, what does each pay?"], _s_share, _v_calc_word),
    Template("convert", "single", ("convert_units",), [
        "Convert {v} {fu} to {tu}.", "How many {tu} is {v} {fu}?", "What is {v} {fu} in {tu}?",
        "{v} {fu} in {tu}, please.", "I have {v} {fu}. How much is that in {tu}?"], _s_convert, _v_convert,
        weight=2.0),
    Template("run_total", "chain", ("convert_units", "calculate"), [
        "I ran {a} km and then {b} miles. How many km in total?",
        "Add {a} km and {b} miles; give the total in km.",
        "My trip was {a} km plus {b} miles. What is that in km?"], _s_run, _v_run),
    Template("weigh_total", "chain", ("convert_units", "calculate"), [
        "One box weighs {a} pounds. How many kg do {n} boxes weigh?",
        "What do {n} bags of {a} pounds each weigh in kg?",
        "Total kg for {n} items at {a} pounds each?"], _s_weigh, _v_weigh),
    Template("weekday", "single", ("weekday",), [
        "What day of the week is {d}?", "Which weekday was {d}?", "{d} falls on which day?",
        "Tell me the weekday of {d}."], _s_date, _v_weekday),
    Template("add_days", "single", ("add_days",), [
        "What date is {n} days after {d}?", "Add {n} days to {d}.", "Which date comes {n} days after {d}?",
        "If I start on {d}, what is the date {n} days later?"], _s_date, _v_add_days),
    Template("days_between", "single", ("days_between",), [
        "How many days from {d} to {d2}?", "Count the days between {d} and {d2}.",
        "How long is it from {d} until {d2} in days?", "Days between {d} and {d2}?"], _s_date, _v_between),
    Template("from_today", "chain", ("today", "add_days"), [
        "What is the date {n} days from today?", "What date will it be in {n} days?",
        "Give me the date {n} days from now.", "{n} days from today is which date?"], _s_date, _v_from_today),
    Template("weekday_in", "chain", ("today", "add_days", "weekday"), [
        "What day of the week will it be in {n} days?", "In {n} days, which weekday is it?",
        "Which day of the week is {n} days from today?"], _s_date, _v_weekday_in, weight=0.7),
    Template("cat", "single", ("cat",), [
        "What's in {path}?", "Show me {path}.", "Read {path} for me.", "Open {path}.",
        "What does {path} say?"], _s_file, _v_cat),
    Template("ls", "single", ("ls",), [
        "Which files are in {folder}?", "List the files in {folder}.", "What is inside {folder}?",
        "Show the contents of the folder {folder}."], _s_file, _v_ls, weight=0.7),
    Template("cat_lost", "error", ("cat", "ls"), [
        "Open my file {name}.", "What does {name} say?", "Read {name} for me.", "Show me {name}, wherever it is."],
        _s_file, _v_cat_lost, weight=1.2),
    Template("write_cat", "chain", ("write", "cat"), [
        "Write '{text}' to {path}, then read it back.", "Save '{text}' in {path} and show me the file.",
        "Put '{text}' into {path} and check it."], _s_write, _v_write_cat),
    Template("note_get", "single", ("note_get",), [
        "What is my {key}?", "Remind me of my {key}.", "Look up my {key}.", "Do you know my {key}?"],
        _s_note, _v_note_get),
    Template("note_save", "single", ("note_save",), [
        "Remember that my {key} is {value}.", "Save a note: {key} is {value}.", "Note down my {key}: {value}.",
        "Please store {value} as my {key}."], _s_note_save, _v_note_save),
    Template("calc_note", "chain", ("calculate", "note_save"), [
        "Compute {expr} and save it as {key}.", "Work out {expr}, then store the result under {key}.",
        "Save the value of {expr} as my {key}."], _s_calc_note, _v_calc_note),
    Template("chat", "chat", (), ["{q}"], _s_chat, _v_chat, heldout=0, weight=1.2),
]
# fmt: on
TEMPLATE_BY_NAME = {t.name: t for t in TEMPLATES}


def _user_text(template: Template, para: int, slots: dict) -> str:
    return template.paraphrases[para].format(**slots)


def episode_seed(seed: int, split: Split, i: int) -> int:
    """A per-episode seed; the train and eval streams are disjoint (a 64-bit hash of split, seed, index)."""
    return int.from_bytes(hashlib.sha256(f"edgeport:{split}:{seed}:{i}".encode()).digest()[:8], "little")


def build_episode(template: Template, para: int, ep_seed: int) -> Episode:
    """Sample slots, run the solver against a real ToolEnv, and record the messages it produced."""
    rng = random.Random(ep_seed)
    slots = template.sample(rng)
    env = ToolEnv(slots["state"])
    task = _user_text(template, para, slots)
    messages: list[dict] = [{"role": "user", "content": task}]

    def call(name: str, args: dict) -> Any:
        assert name in template.tools, (template.name, name)
        out = env.call(name, args)
        fn = {"name": name, "arguments": args}
        messages.append(
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": fn}]}
        )
        messages.append({"role": "tool", "content": out})
        parsed = json.loads(out)
        return parsed.get("result", parsed)

    final, answer = template.solve(slots, call, rng)
    messages.append({"role": "assistant", "content": final})
    if slots.get("expect") is not None:
        assert answer == slots["expect"], (template.name, answer, slots["expect"])
    ep = Episode(messages, schemas(template.tools) if template.tools else None, answer, task, slots["state"],
                 f"{template.name}/{para}", ep_seed, template.kind, slots.get("expect_state", {}))  # fmt: skip
    verify_episode(ep)
    return ep


def verify_episode(ep: Episode) -> None:
    """Re-execute every tool call in a fresh env built from `env_state`; results and final state must match."""
    env = ToolEnv(ep.env_state)
    msgs = ep.messages
    for i, m in enumerate(msgs):
        for tc in m.get("tool_calls") or []:
            fn = tc["function"]
            out = env.call(fn["name"], fn["arguments"])
            if msgs[i + 1] != {"role": "tool", "content": out}:
                raise AssertionError(
                    f"{ep.template}: replay of {fn['name']} gave {out}, transcript {msgs[i + 1]}"
                )
    if not state_matches(env, ep.expect_state):
        raise AssertionError(f"{ep.template}: final state does not hold {ep.expect_state}")
    if ep.answer is not None and not answer_matches(msgs[-1]["content"], ep.answer):
        raise AssertionError(f"{ep.template}: final text {msgs[-1]['content']!r} lacks answer {ep.answer!r}")


def generate_episodes(n: int, seed: int = 0, split: Split = "train") -> list[Episode]:
    """`n` deterministic episodes. Train uses only non-held-out paraphrases; eval uses its own seed stream and
    picks a held-out paraphrase half of the time (every template with held-out paraphrases)."""
    split = {"val": "eval", "heldout": "eval", "test": "eval"}.get(split, split)
    if split not in ("train", "eval"):
        raise EdgeportError(f"split must be 'train' or 'eval', got {split!r}")
    weights = [t.weight for t in TEMPLATES]
    out = []
    for i in range(n):
        s = episode_seed(seed, split, i)
        rng = random.Random(s ^ 0x5EED)
        t = rng.choices(TEMPLATES, weights)[0]
        k = len(t.paraphrases) - t.heldout
        if split == "eval" and t.heldout and rng.random() < 0.5:
            para = rng.randrange(k, len(t.paraphrases))
        else:
            para = rng.randrange(k)
        out.append(build_episode(t, para, s))
    return out


# ================================================================= answer checks (shared with the agent)
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _norm(s: str) -> str:
    return " ".join(str(s).lower().replace("’", "'").split())


def answer_matches(text: str, answer: Any) -> bool:
    """Numbers: some number in `text` equals `answer` (rel. tol. 1e-3); strings: normalized substring;
    lists: every item matches."""
    if answer is None:
        return bool(text.strip())
    if isinstance(answer, list):
        return all(answer_matches(text, a) for a in answer)
    if isinstance(answer, bool) or not isinstance(answer, int | float):
        return _norm(answer) in _norm(text)
    for tok in _NUM.findall(text.replace(",", "")):
        v = float(tok)
        if abs(v - answer) <= 1e-3 * max(1.0, abs(answer)):
            return True
    return False


def state_matches(env: ToolEnv, expect: dict) -> bool:
    st = env.state()
    return all(st.get(kind, {}).get(k) == v for kind, kv in expect.items() for k, v in kv.items())


def episodes_to_jsonl(episodes: Sequence[Episode], path: str | Path) -> None:
    """Write episodes as JSON lines (atomically); `load_episodes` reads them back."""
    from edgeport.io import atomic_file

    with atomic_file(path, "w") as f:
        for ep in episodes:
            f.write(json.dumps(ep.to_dict(), ensure_ascii=False) + "\n")


def load_episodes(path: str | Path) -> list[Episode]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(Episode.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise EdgeportError(f"not an episode ({e})", f"{path}:{n}") from None
    return out
