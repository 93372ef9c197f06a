"""Agentic trajectories from executable tool environments, and the answer checks the agent eval shares.

`generate_episodes(n, seed, split)` -> list[Episode]. Each episode is built by really running the tools of
`edgeport.tools.ToolEnv` and is re-executed from `env_state` when generated (the expected answer, computed
independently in Python, must equal what the tools returned). Episodes round-trip through JSON lines
(`episodes_to_jsonl`, `load_episodes`).

What an episode looks like, so that training data resembles use:
- kinds (KINDS): one call ("single"), dependent calls ("chain"), several calls in one turn ("parallel"), a failed
  call and its recovery or report ("error"), a conversation whose later user turns refer to earlier results
  ("followup"), a request answered without tools ("direct") and one no offered tool can serve ("unsupported");
- tools: a random set that holds the needed ones plus distractors, in random order, often all of them (the eval
  split always offers all of them); in training, sometimes a task whose tool is not offered ("unsupported");
- phrasings: each template's user requests come in paraphrase families, and so do the wrappers around them
  ("Quick question: ...") and the follow-up turns; whole families are held out (HELDOUT ids, eval only);
  training alone also has lists of 2-4 items, more topics no tool can serve, and polite frames around requests
  (`Template.train_only`, `_framed`), worded without any word that only held-out families use;
- both renderings of the chat template: half the episodes carry a short `<think>` block before every assistant
  turn (what a client that passes no `enable_thinking` flag gets), the others none (`enable_thinking=False`).
The eval split uses its own seed stream, cycles through the kinds (equal counts), and uses held-out phrasings in
about half of its episodes.
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

from edgeport.chat import THINK_END, THINK_START, strip_reasoning
from edgeport.errors import EdgeportError
from edgeport.tools import TOOL_NAMES, UNITS, ToolEnv, calculate, convert_units, schemas, unit_name

Split = str  # "train" | "eval"
KINDS = ("single", "chain", "parallel", "error", "followup", "direct", "unsupported")
NO_TOOL_KINDS = ("direct", "unsupported")  # solved only without any tool call


@dataclass
class Episode:
    """One agentic conversation. `messages` follow the HF/OpenAI shape; `tools` are the schemas offered."""

    messages: list[dict]
    tools: list[dict] | None
    answer: Any  # expected final answer: str | int | float | list[str] (all must appear) | None (chit-chat)
    task: str  # the (first) user request
    env_state: dict  # rebuild the env with ToolEnv(env_state)
    template: str  # "<template name>/<paraphrase family>.<index>"
    seed: int
    kind: str  # one of KINDS
    expect_state: dict = field(
        default_factory=dict
    )  # e.g. {"notes": {k: v}} that must hold after the episode
    thinking: bool = False  # assistant turns carry a <think> block (the template's default rendering)
    phrasing: list[str] = field(default_factory=list)  # ids of the phrasing families used (see HELDOUT)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Episode:
        return cls(**d)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools or []]

    @property
    def heldout(self) -> bool:
        """Uses at least one phrasing family never seen in training."""
        return bool(set(self.phrasing) & HELDOUT)


# ================================================================= slot samplers
FILE_TEXTS = [
    "meeting moved to friday", "call the dentist at 3pm", "buy milk, eggs and bread", "the wifi password is sunflower42",
    "project deadline is june 12", "water the plants on monday", "flight leaves at 7:45", "pay the rent by the 5th",
    "lunch with sam at noon", "backup the laptop tonight", "the gate code is 4321", "return the library books",
    "dinner reservation for four", "renew the passport in may", "gym at 6 every tuesday", "send the report to alex",
    "pick up the kids at 4", "car service on thursday", "mom's birthday is april 2", "buy a gift for lea",
    "the door code is 7788", "check the oven timer", "bring the blue folder", "meet tom at the station",
]  # fmt: skip
# Many names, so that a path, key or value in a request is copied into the call, not recalled from a short list:
# with 40 names the round-9 model wrote a frequent name ("agenda.txt") for a requested path in 13 of its 29
# wrong-argument failures. 100 words plus 500 compounds ("trip_photos", "budget2027"), fixed by a seeded draw: with
# 150 the round-10 model half-copied a compound it had seen often (receipts_passwords -> receipts_bills).
FILE_WORDS = [
    "todo", "notes", "plan", "ideas", "reminder", "draft", "list", "memo", "agenda", "log", "budget",
    "recipes", "shopping", "contacts", "journal", "goals", "travel", "tasks", "books", "report", "letter",
    "invoice", "minutes", "checklist", "diary", "packing", "meals", "music", "garden", "movies", "bills",
    "chores", "schedule", "birthdays", "passwords", "quotes", "workout", "errands", "gifts", "lessons",
    "photos", "trip", "party", "wedding", "taxes", "receipts", "poems", "songs", "games", "homework",
    "essay", "thesis", "resume", "cover", "summary", "outline", "feedback", "survey", "results", "scores",
    "inventory", "orders", "clients", "vendors", "payroll", "expenses", "savings", "loans", "rent", "insurance",
    "car", "bike", "boat", "house", "kitchen", "pets", "dog", "cat", "plants", "seeds", "weather", "hikes",
    "runs", "swim", "yoga", "diet", "sleep", "dreams", "friends", "family", "kids", "school", "class",
    "exam", "lab", "project", "team", "meeting", "calls", "visits",
]  # fmt: skip
_names = random.Random(1234)
FILE_NAMES = FILE_WORDS + sorted(
    {
        f"{a}_{b}" if _names.random() < 0.6 else f"{a}{_names.randint(2020, 2030)}"
        for a, b in (_names.sample(FILE_WORDS, 2) for _ in range(500))
    }
)
FOLDERS = ["docs", "work", "home", "notes", "tmp", "projects", "school", "data", "shared", "archive"]
NOTE_KEYS = [
    "locker code",
    "wifi password",
    "favorite color",
    "parking spot",
    "bike lock",
    "doctor",
    "gym day",
    "door code",
    "library card",
    "dentist",
    "car plate",
    "anniversary",
    "passport number",
    "hotel room",
    "flight number",
    "bus stop",
    "train seat",
    "pin",
    "shoe size",
    "vet",
    "plumber",
    "mailbox key",
    "alarm code",
    "lucky number",
]
NOTE_VALUES = [
    "blue", "green", "7731", "B12", "tuesday", "level 3", "dr smith", "0420", "orchid", "friday", "red",
    "9182", "C7", "saturday", "room 12", "dr lee", "5566", "maple", "march 3", "purple", "yellow", "orange",
    "3390", "A4", "D19", "monday", "wednesday", "thursday", "sunday", "level 7", "room 204", "dr patel",
    "dr garcia", "dr kim", "1207", "8844", "6015", "cedar", "willow", "lotus", "june 9", "october 21",
    "KX 442", "bay 5", "spot 18", "row f", "gate 3", "sunflower", "tiger", "4471",
]  # fmt: skip
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


# Request families shared by a template and its "file is nowhere" twin, so the wording cannot tell them apart
# (only the tool result does).
FIND_FAMILIES = [
    ["Where is {name}?", "Which folder is {name} in?", "Where did I put {name}?"],
    ["In which folder is {name}?", "What folder holds {name}?"], ["Where can I find {name}?", "Where's my {name}?"],
    ["Locate {name}.", "Look for {name} and tell me where it is."], ["Which folder has my {name}?"],
    ["Tell me where {name} is saved.", "Where is my file {name} stored?"]]  # fmt: skip
LOST_FAMILIES = [
    ["Can you open {name}?", "What is in {name}?", "Read my {name}, please."],
    ["I saved a file called {name}. What does it say?", "Look up {name} and tell me what it says."],
    ["Open my file {name}.", "What does {name} say?"], ["Read {name} for me."],
    ["Show me {name}, wherever it is.", "Find {name} and read it."]]  # fmt: skip


# ================================================================= templates
# A template: the tools its solver may call, user paraphrases in families (the last `heldout` families are
# eval-only), a sampler for slots and initial state, and a solver that writes the conversation through a
# `Transcript` (`call(name, args)` really executes one call; `call.many(...)` several in one turn;
# `call.answer(text)` / `call.user(text)` write an intermediate answer and a follow-up request) and returns the
# final answer text and the expected answer. Each solver also checks its result against an independent Python
# computation where one exists.


@dataclass
class Template:
    name: str
    kind: str
    tools: tuple[str, ...]
    paraphrases: list[list[str]]  # families of user phrasings
    sample: Callable[[random.Random], dict]
    solve: Callable[[dict, Any, random.Random], tuple[str, Any]]
    heldout: int = 1  # how many families (the last ones) are held out for evaluation
    weight: float = 1.0
    wrap: bool = True  # the request may be wrapped ("Quick question: ...")
    boost: float = 1.0  # training only: extra sampling weight for a slowly learned skill (eval: `weight`)
    train_only: bool = False  # never sampled by eval (round 19's lists and extra unsupported topics)


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
    """The user names a file without its folder: cat fails, find locates it, cat again (error then recovery)."""
    err = call("cat", {"path": "/" + slots["name"]})
    assert isinstance(err, dict) and "error" in err
    found = call("find", {"name": slots["name"]})
    assert found == [slots["path"]]
    r = call("cat", {"path": found[0]})
    assert r == slots["state"]["files"][found[0]]
    return _pick(rng, f"It is at {found[0]} and says: {r}", f"Found {found[0]}: {r}"), r


def _v_find(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    """Where a file is: find it by name (the call cat_lost recovers with)."""
    found = call("find", {"name": slots["name"]})
    assert found == [slots["path"]]
    where = found[0]
    return _pick(rng, f"{slots['name']} is at {where}.", f"It is in {slots['folder']}: {where}."), where


def _absent_names(state: dict) -> list[str]:
    """File names (without .txt) that no folder of `state` holds."""
    return [n for n in FILE_NAMES if not any(p.endswith(f"/{n}.txt") for p in state["files"])]


def _s_nowhere(rng: random.Random) -> dict:
    state = _state(rng)
    return {"name": f"{rng.choice(_absent_names(state))}.txt", "state": state}


def _v_nowhere(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    """A file that is in no folder: `find` fails too, and that is the answer (round 18's build, never shown a
    failed `find`, called it again until the step limit)."""
    name = slots["name"]
    if "cat" in call.allowed:  # cat_lost's request: the read fails first
        err = call("cat", {"path": "/" + name})
        assert isinstance(err, dict) and "error" in err
    err = call("find", {"name": name})
    assert isinstance(err, dict) and "error" in err
    return _pick(rng, f"There is no file named {name}.", f"I found no file named {name} anywhere."), (
        f"no file named {name}"
    )


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


# Keys a computed result is saved under. 36, not 9: with 9 the round-10 model wrote a frequent key ("score") for
# the requested one ("sum") in 3 of its failures - a key in the request must be copied, not recalled.
RESULT_KEYS = ["total", "result", "budget", "score", "sum", "answer", "balance", "cost", "savings", "tip", "fuel",
               "groceries", "bonus", "distance", "weight", "price", "fee", "tax", "profit", "deposit", "change",
               "limit", "target", "estimate", "average", "share", "rent", "salary", "points", "margin", "height",
               "area", "speed", "debt", "refund", "count"]  # fmt: skip


def _s_calc_note(rng: random.Random) -> dict:
    s = _s_calc(rng)
    s["key"] = rng.choice(RESULT_KEYS)
    s["expect_state"] = {"notes": {s["key"]: str(s["expect"])}}
    return s


def _v_calc_note(slots: dict, call: Callable, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    call("note_save", {"key": slots["key"], "text": str(r)})
    return _pick(rng, f"{slots['expr']} = {r}, saved as {slots['key']}.", f"Saved {slots['key']} = {r}."), r


# ---------------------------------------------------------------- more single, error and parallel tasks
OPS = [("plus", "+"), ("minus", "-"), ("times", "*"), ("multiplied by", "*"), ("divided by", "/")]


def _s_words(rng: random.Random) -> dict:
    word, sym = rng.choice(OPS)
    b = rng.randint(2, 40)
    a = b * rng.randint(2, 30) if sym == "/" else rng.randint(2, 99)
    expr = f"{a} {sym} {b}"
    return {"a": a, "b": b, "op": word, "expr": expr, "expect": calculate(expr), "state": _state(rng)}


NOTE_SHORT = {"locker code": "locker", "wifi password": "wifi", "parking spot": "parking", "bike lock": "bike",
              "gym day": "gym"}  # fmt: skip


def _s_note_fuzzy(rng: random.Random) -> dict:
    state = _state(rng)
    full = rng.choice(sorted(NOTE_SHORT))
    state["notes"][full] = rng.choice(NOTE_VALUES)
    return {"key": NOTE_SHORT[full], "full": full, "expect": state["notes"][full], "state": state}


def _v_note_fuzzy(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    """The user names a note loosely: note_get fails and lists the keys, then the right key (error, recovery)."""
    err = call("note_get", {"key": slots["key"]})
    assert isinstance(err, dict) and "error" in err
    r = call("note_get", {"key": slots["full"]})
    return _pick(rng, f"Your {slots['full']} is {r}.", f"It is saved as {slots['full']}: {r}."), r


def _s_missing(rng: random.Random) -> dict:
    state = _state(rng)
    path = f"/{rng.choice(FOLDERS)}/{rng.choice(_absent_names(state))}.txt"
    return {"path": path, "expect": "no such file", "state": state}


def _v_missing(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    """The file does not exist anywhere: the error is reported, not papered over."""
    err = call("cat", {"path": slots["path"]})
    assert isinstance(err, dict) and "error" in err
    p = slots["path"]
    return _pick(rng, f"There is no such file: {p}.", f"I could not read {p}: no such file."), "no such file"


def _s_pair_calc(rng: random.Random) -> dict:
    a, b = _s_calc(rng), _s_calc(rng)
    return {"e1": a["expr"], "e2": b["expr"], "expect": [a["expect"], b["expect"]], "state": a["state"]}


def _v_pair_calc(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r1, r2 = call.many(("calculate", {"expression": slots["e1"]}), ("calculate", {"expression": slots["e2"]}))
    return _pick(rng, f"{slots['e1']} = {r1} and {slots['e2']} = {r2}.", f"They are {r1} and {r2}."), [r1, r2]


def _s_pair_convert(rng: random.Random) -> dict:
    a, b = _s_convert(rng), _s_convert(rng)
    return {"v1": a["v"], "fu1": a["fu"], "tu1": a["tu"], "v2": b["v"], "fu2": b["fu"], "tu2": b["tu"],
            "expect": [a["expect"], b["expect"]], "state": a["state"]}  # fmt: skip


def _v_pair_convert(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r1, r2 = call.many(*[("convert_units", {"value": slots[f"v{i}"], "from_unit": slots[f"fu{i}"],
                                            "to_unit": slots[f"tu{i}"]}) for i in (1, 2)])  # fmt: skip
    s = slots
    return _pick(rng, f"{s['v1']} {s['fu1']} is {r1} {s['tu1']}, and {s['v2']} {s['fu2']} is {r2} {s['tu2']}.",
                 f"{r1} {s['tu1']} and {r2} {s['tu2']}."), [r1, r2]  # fmt: skip


def _s_pair_date(rng: random.Random) -> dict:
    import datetime as dt

    s = _s_date(rng)
    s["wd2"] = dt.date.fromisoformat(s["d2"]).strftime("%A")
    s["expect"] = [s["wd"], s["wd2"]]
    return s


def _v_pair_weekday(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r1, r2 = call.many(("weekday", {"date": slots["d"]}), ("weekday", {"date": slots["d2"]}))
    return _pick(rng, f"{slots['d']} is a {r1} and {slots['d2']} is a {r2}.", f"A {r1} and a {r2}."), [r1, r2]


def _s_pair_file(rng: random.Random) -> dict:
    state = _state(rng, n_files=rng.randint(2, 4))
    p1, p2 = rng.sample(sorted(state["files"]), 2)
    return {"p1": p1, "p2": p2, "expect": [state["files"][p1], state["files"][p2]], "state": state}


def _v_pair_cat(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r1, r2 = call.many(("cat", {"path": slots["p1"]}), ("cat", {"path": slots["p2"]}))
    return _pick(
        rng, f"{slots['p1']} says: {r1}. {slots['p2']} says: {r2}.", f"First: {r1}. Second: {r2}."
    ), [
        r1,
        r2,
    ]


# ---------------------------------------------------------------- follow-ups: later turns refer to earlier results
# Each list: phrasings of one follow-up request; the last one is held out (used only by held-out eval episodes).
FOLLOWUPS: dict[str, list[str]] = {
    "then+": ["Increase that by {k}.", "Then add {k} to the result.", "Plus {k}.", "Now add {k}.",
        "Now add {k} to that.", "Add {k} to it.", "And plus {k}?", "Add {k} more.", "Now {k} more on top.", "Put {k} on top of that.", "Bump it up by {k}.",
        "What if I add {k} to that?"],
    "then-": ["Minus {k} now.", "Subtract {k} from the result.", "Now take away {k}.",
        "Decrease that by {k}.", "Now subtract {k} from that.", "Take {k} away from it.", "And minus {k}?",
        "Take off {k}.", "Remove {k} from that.", "Now {k} less.", "Reduce it by {k}.",
        "What is that less {k}?"],
    "then*": ["Times {k}, please.", "Multiply the result by {k}.", "Now multiply it by {k}.",
        "Scale that by {k}.", "Multiply that by {k}.", "Now times {k}.", "And that times {k}?",
        "Multiply by {k} now.", "Do that times {k}.", "Now {k} times that.", "Make it {k} times bigger.",
        "What is that multiplied by {k}?"],
    "then_unit": ["Now in {tu2}.", "Convert that to {tu2}.", "Same in {tu2}, please.",
        "Can you give that in {tu2}?", "And in {tu2}?", "What is that in {tu2}?", "Now give it in {tu2}.",
        "Now convert it to {tu2}.", "In {tu2} instead.", "Show it in {tu2}.", "Also in {tu2}, please.",
        "How about {tu2} instead?"],
    "then_weekday": ["What weekday is that date?", "Which day of the week is it?", "And what day is that?",
        "Tell me its weekday.", "What day of the week is that?", "Which weekday is that?", "And the weekday?",
        "What day is that?", "Which weekday does that fall on?", "And which day of the week?", "Day name for that date?",
        "Is that a weekend or which day?"],
    "then_save": ["Save it as {key}.", "Note that as my {key}.", "Put that under {key}.",
        "Save that under {key}.", "Save that as my {key}.", "Store it under {key}.",
        "Remember that as {key}.", "Save the result as {key}.", "Write that down as {key}.", "Keep it as my {key}.", "Please note it as {key}.",
        "Keep that result as {key}, please."],
    "then_first": ["Read the first one.", "Open the first one, please.", "Read me the first file.",
        "Cat the first file.", "What does the first one say?", "Open the first file.",
        "Read the first of them.", "Open the first one on the list.", "Show the first one.", "Read that first file.", "Let me see the first one.",
        "Show me what is in the first one."],
    "then_back": ["Read my {key} back.", "What is saved as {key}?", "Get that note back.",
        "Show me the note.", "What did I just save?", "Read it back to me.", "What is my {key} now?",
        "Read back my {key}.", "What did you save?", "Show me what you saved.", "Get my {key} note.",
        "Check what you saved."],
    "then_days": ["Add {k} more days.", "And {k} days on from there?", "What date is {k} days after that?",
        "Now move it {k} days ahead.", "And {k} days after that?", "Add {k} days to that date.",
        "What about {k} days later?", "Now {k} more days.", "Move {k} days on from that date.", "And {k} days later?", "Go forward {k} more days.",
        "Then go {k} days further."],
    "thanks": ["Thanks a lot!", "Thank you so much.", "Great!", "Ok, thanks.", "Thanks!", "Thank you.",
        "Great, thanks.", "Thanks, that helps.", "Awesome, thank you!", "Nice, thanks.", "Cool, thank you.",
        "Perfect, cheers!"],
}  # fmt: skip
WELCOME = ["You're welcome!", "You're welcome, happy to help.", "You're welcome. Anything else?"]


def _s_calc_then(rng: random.Random) -> dict:
    s = _s_calc(rng)
    s["op"], s["k"] = rng.choice("+-*"), rng.randint(2, 20)
    s["expect"] = calculate(f"{s['expect']} {s['op']} {s['k']}")
    return s


def _v_calc_then(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    call.answer(_pick(rng, f"{slots['expr']} = {r}.", f"It is {r}."))
    op, k = slots["op"], slots["k"]
    call.user(call.phrase("then" + op).format(k=k))
    r2 = call("calculate", {"expression": f"{r} {op} {k}"})
    return _pick(rng, f"{r} {op} {k} = {r2}.", f"That gives {r2}."), r2


def _s_convert_then(rng: random.Random) -> dict:
    while True:
        s = _s_convert(rng)
        a, b = unit_name(s["fu"]), unit_name(s["tu"])
        third = [u for u in UNIT_WORDS if u not in (a, b) and UNITS[u] == UNITS[a]]
        if third:
            s["tu2"] = rng.choice(UNIT_WORDS[rng.choice(third)])
            s["expect"] = convert_units(s["v"], s["fu"], s["tu2"])
            return s


def _v_convert_then(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r = call("convert_units", {"value": slots["v"], "from_unit": slots["fu"], "to_unit": slots["tu"]})
    call.answer(
        _pick(rng, f"{slots['v']} {slots['fu']} is {r} {slots['tu']}.", f"That is {r} {slots['tu']}.")
    )
    call.user(call.phrase("then_unit").format(tu2=slots["tu2"]))
    r2 = call("convert_units", {"value": slots["v"], "from_unit": slots["fu"], "to_unit": slots["tu2"]})
    return _pick(
        rng, f"{slots['v']} {slots['fu']} is {r2} {slots['tu2']}.", f"That is {r2} {slots['tu2']}."
    ), r2


def _s_date_then(rng: random.Random) -> dict:
    import datetime as dt

    s = _s_date(rng)
    s["k"] = rng.randint(1, 60)
    s["wd_new"] = dt.date.fromisoformat(s["new"]).strftime("%A")
    s["later"] = (dt.date.fromisoformat(s["new"]) + dt.timedelta(days=s["k"])).isoformat()
    return s


def _v_days_then_weekday(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r = call("add_days", {"date": slots["d"], "days": slots["n"]})
    call.answer(_pick(rng, f"{slots['n']} days after {slots['d']} is {r}.", f"That is {r}."))
    call.user(call.phrase("then_weekday"))
    wd = call("weekday", {"date": r})
    assert wd == slots["wd_new"]
    return _pick(rng, f"{r} is a {wd}.", f"It is a {wd}."), wd


def _v_weekday_then_days(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    wd = call("weekday", {"date": slots["d"]})
    call.answer(_pick(rng, f"{slots['d']} is a {wd}.", f"It is a {wd}."))
    call.user(call.phrase("then_days").format(k=slots["n"]))
    r = call("add_days", {"date": slots["d"], "days": slots["n"]})
    assert r == slots["new"]
    return _pick(rng, f"{slots['n']} days after {slots['d']} is {r}.", f"That is {r}."), r


def _v_calc_then_save(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    call.answer(_pick(rng, f"{slots['expr']} = {r}.", f"It is {r}."))
    call.user(call.phrase("then_save").format(key=slots["key"]))
    call("note_save", {"key": slots["key"], "text": str(r)})
    return _pick(rng, f"Saved {slots['key']} = {r}.", f"Done: your {slots['key']} is {r}."), r


def _v_ls_then_cat(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    listing = call("ls", {"path": slots["folder"]})
    names = ", ".join(p.rsplit("/", 1)[1] for p in listing)
    call.answer(_pick(rng, f"{slots['folder']} has: {names}.", f"Files: {names}."))
    call.user(call.phrase("then_first"))
    r = call("cat", {"path": listing[0]})
    return _pick(rng, f"{listing[0]} says: {r}", f"It says: {r}"), r


def _v_save_then_get(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    call("note_save", {"key": slots["key"], "text": slots["value"]})
    call.answer(_pick(rng, f"Saved: your {slots['key']} is {slots['value']}.", f"Noted, {slots['value']}."))
    call.user(call.phrase("then_back").format(key=slots["key"]))
    r = call("note_get", {"key": slots["key"]})
    return _pick(rng, f"Your {slots['key']} is {r}.", f"It is {r}."), r


def _s_calc_thanks(rng: random.Random) -> dict:
    return {**_s_calc(rng), "expect": "welcome"}


def _v_calc_thanks(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    r = call("calculate", {"expression": slots["expr"]})
    call.answer(_pick(rng, f"{slots['expr']} = {r}.", f"The result is {r}."))
    call.user(call.phrase("thanks"))
    return rng.choice(WELCOME), "welcome"


# ---------------------------------------------------------------- no tool needed / no tool can serve
CHAT_FAMILIES = [
    [("Thanks!", "You're welcome! Anything else?"), ("Thank you so much", "Happy to help!"),
     ("Great, thanks", "Glad I could help.")],
    [("Good night", "Good night! Sleep well."), ("Good evening", "Good evening! What can I do for you?"),
     ("Nice to meet you", "Nice to meet you too! How can I help?")],
    [("What is your name?", "I am a small assistant; I don't have a name."),
     ("Can you help me?", "Of course. What do you need?"), ("I need some help", "Sure, tell me what you need.")],
    [("Tell me something nice", "You are doing great today."), ("I'm bored", "Maybe try a short walk or a new book?"),
     ("Say something funny", "I would tell you a UDP joke, but you might not get it.")],
    [("ok", "Okay! Let me know if you need anything."), ("Cool", "Glad you think so! Anything else?"),
     ("Never mind", "No problem. I'm here if you need me.")],
    [("Hi!", "Hello! How can I help you today?"), ("Hello there", "Hi! What can I do for you?"),
     ("Good morning", "Good morning! How can I help?")],
    [("Who are you?", "I am a small assistant that can use tools to help you."),
     ("What can you do?", "I can calculate, convert units, work with dates, notes and files.")],
    [("How are you?", "I'm doing well, thanks for asking. How can I help?"),
     ("Tell me a joke", "Why did the function return early? It had no arguments left.")],
    [("Bye", "Goodbye! Have a nice day."), ("See you later", "See you! Have a good day.")],
    [("How's it going?", "Going well, thanks! What do you need?"), ("Howdy", "Howdy! What can I do for you?"),
     ("You there?", "Yes, I'm here. What do you need?")],
    [("Good afternoon", "Good afternoon! How can I help?"), ("Hello?", "Hello! I'm listening."),
     ("Thanks, that's all", "You're welcome! Have a good day.")],
    [("Do you have feelings?", "Not really: I am a small program. But thanks for asking!"),
     ("Where do you live?", "I run right here on your device."), ("Are you smart?", "I do my best with my tools."),
     ("How old are you?", "I am quite new: I was trained recently.")],
    [("Hey, what's up?", "Not much! What can I do for you?"), ("Are you a robot?", "I am a small AI assistant.")],
]  # fmt: skip
CHAT_ANSWER = {q: a for fam in CHAT_FAMILIES for q, a in fam}
FACTS = [("capital of Germany", "Berlin"), ("capital of Canada", "Ottawa"), ("capital of Egypt", "Cairo"),
         ("smallest planet", "Mercury"), ("opposite of up", "down"), ("color of grass", "green"),
         ("last month of the year", "December"), ("day before Friday", "Thursday"), ("number of days in a week", "7"),
         ("boiling point of water in celsius", "100"), ("capital of France", "Paris"), ("capital of Japan", "Tokyo"), ("capital of Italy", "Rome"),
         ("capital of Spain", "Madrid"), ("largest planet", "Jupiter"), ("opposite of hot", "cold"),
         ("color of a clear sky", "blue"), ("first month of the year", "January"),
         ("day after Monday", "Tuesday"), ("freezing point of water in celsius", "0")]  # fmt: skip
UNSUPPORTED = [
    [("Take a photo.", "take photos"), ("Open the camera.", "use the camera"), ("Record a video of this.", "record video")],
    [("Show me a map of {city}.", "show maps"), ("How do I drive to {city}?", "give directions"),
     ("How far is {city} from here?", "look up distances")],
    [("Remind me at {hour} pm to call {name}.", "set reminders"), ("Add lunch with {name} to my calendar.",
     "edit your calendar"), ("What's on my calendar today?", "read your calendar")],
    [("Buy {company} shares for me.", "trade stocks"), ("Pay {name} 20 dollars.", "send payments"),
     ("Check my bank balance.", "check bank accounts")],
    [("Post this on social media.", "post online"), ("Open YouTube.", "open apps"),
     ("Download the {company} app.", "install apps")],
    [("What time is it in {city}?", "tell the time"), ("Is the {company} store open now?", "look up opening hours"),
     ("When does the {company} store close?", "look up opening hours")],
    [("What's the weather in {city}?", "check the weather"), ("Will it rain in {city} tomorrow?", "check the weather")],
    [("Send an email to {name} saying hi.", "send emails"), ("Text {name} that I am late.", "send messages")],
    [("Set an alarm for {hour} am.", "set alarms"), ("Wake me up at {hour} tomorrow.", "set alarms")],
    [("Play some music.", "play music"), ("Put on a song by {name}.", "play music")],
    [("Translate 'good morning' into German.", "translate text"), ("How do you say thanks in French?", "translate text")],
    [("What is the stock price of {company}?", "look up stock prices"), ("How much is one bitcoin now?", "look up prices")],
    [("Book a table for two tonight.", "book restaurants"), ("Order a pizza for me.", "order food")],
    [("Track my package.", "track packages"), ("Where is my delivery right now?", "track deliveries"),
     ("Is my flight to {city} on time?", "check flights")],
    [("How is the traffic to {city} right now?", "check traffic"), ("Find me a hotel in {city}.", "book hotels"),
     ("Get me a taxi.", "call taxis")],
    [("Read my latest emails.", "read your email"), ("Did {name} message me?", "read your messages"),
     ("Check my voicemail.", "check voicemail")],
    [("Print this page.", "print"), ("Scan this document.", "scan documents"), ("Turn up the volume.", "control devices")],
    [("What's trending online today?", "browse the web"), ("Look up {company} reviews online.", "search the web"),
     ("Is {company} hiring right now?", "look up job listings")],
    [("Show me photos from my trip to {city}.", "open your photos"), ("Share my location with {name}.",
     "share your location"), ("Where am I right now?", "find your location")],
    [("How much is 100 dollars in euros today?", "look up exchange rates"), ("When is the next bus to {city}?",
     "check timetables"), ("When is the next full moon?", "look up moon phases")],
    [("What's my heart rate?", "read health data"), ("How many steps did I walk today?", "read health data"),
     ("Book a doctor's appointment for me.", "book appointments"), ("Order new shoes online.", "shop online")],
    [("What did {name} post yesterday?", "read social media"), ("How did {company} shares do last week?",
     "look up stock prices"), ("What movies are showing in {city} tonight?", "look up showtimes")],
    [("Search the web for {company} news.", "search the web"), ("Who won the game last night?", "look up the news")],
    [("Call {name} for me.", "make phone calls"), ("Turn off the lights in the kitchen.", "control devices")],
]  # fmt: skip
CANT = ["Sorry, I can't {what}: none of my tools can do that.", "I can't {what} with the tools I have.",
        "That is not something I can do here: I can't {what}."]  # fmt: skip


def _s_direct(rng: random.Random) -> dict:
    q, a = rng.choice(FACTS)
    return {"q": q, "a": a, "t": rng.choice(FILE_TEXTS), "city": rng.choice(["Paris", "Oslo", "Lima", "Tokyo"]),
            "name": rng.choice(["Sam", "Alex", "Mia", "Noah"]), "hour": rng.randint(5, 9),
            "company": rng.choice(["Acme", "Globex", "Initech"]), "state": _state(rng)}  # fmt: skip


def _v_chat(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    return CHAT_ANSWER[slots["phrase"]], None


def _v_repeat(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    return _pick(rng, f"{slots['t']}", f"Sure: {slots['t']}"), slots["t"]


def _v_fact(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    return _pick(rng, f"The {slots['q']} is {slots['a']}.", f"It is {slots['a']}."), slots["a"]


def _v_unsupported(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    return rng.choice(CANT).format(what=UNSUPPORTED_WHAT[slots["phrase"]]), "can't"


# Round 19, training only: requests with 2-4 items of one kind ("Calculate A, B and C.") and more requests no tool
# can serve. Why: all 35 failures of the shipped build on the 210 eval episodes are held-out families; the largest
# groups are parallel requests answered with one call (calc_pair 1/5, convert_pair 0/4, weekday_pair 3/6) and
# requests no tool serves answered as chat (7 of 16). Every training parallel request has exactly two items behind
# one of a few connectors, so "two calls" can be learnt from the connector words; lists of 2-4 items in several
# list styles tie the number of calls to the number of items. The unsupported families are 22 topics; more
# topics widen "none of my tools" beyond them. Neither adds a word or a topic that only held-out families have
# (test_data checks the words).
LIST_STYLES: list[Callable[[list[str]], str]] = [
    lambda xs: ", ".join(xs[:-1]) + " and " + xs[-1],
    lambda xs: ", ".join(xs),
    lambda xs: "; ".join(xs),
    lambda xs: " and ".join(xs),
    lambda xs: "".join(f"\n- {x}" for x in xs),
    lambda xs: " ".join(f"{i}) {x}" for i, x in enumerate(xs, 1)),
]


def _s_list(rng: random.Random, items: list[str], expect: list, state: dict, calls: list) -> dict:
    return {
        "items": rng.choice(LIST_STYLES)(items),
        "xs": items,
        "calls": calls,
        "expect": expect,
        "state": state,
    }


def _s_list_calc(rng: random.Random) -> dict:
    cs = [_s_calc(rng) for _ in range(rng.randint(2, 4))]
    calls = [("calculate", {"expression": c["expr"]}) for c in cs]
    return _s_list(rng, [c["expr"] for c in cs], [c["expect"] for c in cs], cs[0]["state"], calls)


def _s_list_convert(rng: random.Random) -> dict:
    cs = [_s_convert(rng) for _ in range(rng.randint(2, 4))]
    items = [
        rng.choice(["{v} {fu} to {tu}", "{v} {fu} in {tu}", "{v} {fu} into {tu}"]).format(**c) for c in cs
    ]
    calls = [("convert_units", {"value": c["v"], "from_unit": c["fu"], "to_unit": c["tu"]}) for c in cs]
    return _s_list(rng, items, [c["expect"] for c in cs], cs[0]["state"], calls)


def _s_list_weekday(rng: random.Random) -> dict:
    import datetime as dt

    ds = [_date(rng) for _ in range(rng.randint(2, 4))]
    calls = [("weekday", {"date": d}) for d in ds]
    return _s_list(rng, ds, [dt.date.fromisoformat(d).strftime("%A") for d in ds], _state(rng), calls)


def _s_list_cat(rng: random.Random) -> dict:
    n = rng.randint(2, 4)
    state = _state(rng, n_files=rng.randint(n, n + 1))
    ps = rng.sample(sorted(state["files"]), n)
    return _s_list(rng, ps, [state["files"][p] for p in ps], state, [("cat", {"path": p}) for p in ps])


def _v_list(slots: dict, call: Any, rng: random.Random) -> tuple[str, Any]:
    rs = call.many(*slots["calls"])
    if slots["calls"][0][0] == "cat":
        return " ".join(f"{x} says: {r}." for x, r in zip(slots["xs"], rs, strict=True)), list(rs)
    pairs = [f"{x} is {r}" for x, r in zip(slots["xs"], rs, strict=True)]
    return _pick(rng, "; ".join(pairs) + ".", "They are " + ", ".join(str(r) for r in rs) + "."), list(rs)


# Extra topics no tool can serve (training only); each one becomes a family of the frames below.
UNSUPPORTED_MORE = [
    ("book a flight to {city}", "book flights"), ("cancel my {company} subscription", "manage subscriptions"),
    ("rent a car in {city}", "rent cars"), ("get me tickets for a concert in {city}", "buy tickets"),
    ("renew my passport", "handle official documents"), ("walk my dog", "do things in the physical world"),
    ("make me a cup of coffee", "do things in the physical world"),
    ("water my plants", "do things in the physical world"), ("stream a movie on my TV", "stream video"),
    ("add milk to my shopping cart", "shop online"), ("reserve a room in {city} for Friday", "book hotels"),
    ("order groceries for tomorrow", "order groceries"), ("transfer 50 dollars to {name}", "send payments"),
    ("sign me up for a yoga class", "sign you up for things"), ("draw a picture of a cat", "draw pictures"),
    ("record my voice", "record audio"), ("set a timer for {hour} minutes", "set timers"),
    ("log my workout", "track workouts"), ("connect to the wifi", "change settings"),
    ("switch my phone to silent", "change settings"), ("update my apps", "install apps"),
    ("back up my phone", "make backups"), ("reply to the last email from {name}", "send emails"),
    ("invite {name} to dinner on Friday", "send invitations"), ("find a dentist near me", "search for places"),
    ("find the nearest gas station", "search for places"), ("check in for my flight to {city}", "check in for flights"),
    ("order a cake for {name}", "order food"), ("ask {name} if she is free tonight", "send messages"),
    ("leave a review for {company}", "post online"), ("book a haircut for Saturday", "book appointments"),
    ("open my {company} account", "open apps"), ("pick up my laundry", "do things in the physical world"),
    ("show me the menu of a cafe in {city}", "browse the web"), ("compare phone plans from {company}", "browse the web"),
    ("find a flat to rent in {city}", "search for places"),
]  # fmt: skip
UNSUPPORTED_FRAMES = ["<A>.", "Please <a>.", "Can you <a>?", "Could you <a> for me?", "I want you to <a>.",
                      "<A>, please."]  # fmt: skip


def _unsupported_family(action: str) -> list[str]:
    return [
        f.replace("<A>", action[0].upper() + action[1:]).replace("<a>", action) for f in UNSUPPORTED_FRAMES
    ]


# fmt: off
TEMPLATES: list[Template] = [
    # ---- single
    Template("calc", "single", ("calculate",), [
        ["Please calculate {expr}.", "Can you calculate {expr}?", "calculate {expr}"],
        ["What's {expr}?", "what is {expr}", "So what is {expr}?"],
        ["Figure out {expr}.", "Help me figure out {expr}.", "Could you figure out {expr}?"],
        ["Solve {expr}.", "Solve {expr} for me, please.", "Run the numbers on {expr}."],
        ["Quick math: {expr}", "Do the math: {expr}."],
        ["What is {expr}?", "How much is {expr}?"], ["Calculate {expr}.", "Compute {expr} for me."],
        ["Can you work out {expr}?", "Please evaluate {expr}."], ["I need the value of {expr}.", "{expr} = ?"]],
        _s_calc, _v_calc, weight=2.0),
    Template("calc_words", "single", ("calculate",), [
        ["What's {a} {op} {b}?", "So what is {a} {op} {b}?"], ["Figure out {a} {op} {b}.", "Can you do {a} {op} {b}?"],
        ["How much do you get for {a} {op} {b}?", "Solve {a} {op} {b}, please."],
        ["What is {a} {op} {b}?", "How much is {a} {op} {b}?"], ["Calculate {a} {op} {b}.", "Work out {a} {op} {b}."],
        ["Tell me {a} {op} {b}.", "{a} {op} {b} is what?"]], _s_words, _v_calc_word, weight=1.5),
    Template("calc_mul", "single", ("calculate",), [
        ["A crate holds {b} bottles. How many bottles are in {a} crates?", "{a} teams of {b} players: how many players?"],
        ["I bought {a} tickets at {b} dollars each. What did I spend?", "How many eggs in {a} cartons of {b}?"],
        ["There are {a} rows of {b} seats. How many seats altogether?", "{a} weeks of {b} hours each: how many hours?"],
        ["I have {a} boxes with {b} items each. How many items in total?",
         "There are {a} rows of {b} chairs. How many chairs?"],
        ["{a} packs of {b} pens: how many pens?", "A shelf holds {b} books and there are {a} shelves. How many books?"],
        ["Each of {a} bags has {b} apples. How many apples?"]], _s_mul, _v_calc_word),
    Template("calc_share", "single", ("calculate",), [
        ["Divide {a} candies equally among {b} children. How many each?", "{a} stickers for {b} kids: how many per kid?"],
        ["We are {b} people sharing {a} euros. How much per person?", "Split {a} by {b} people, how much for one?"],
        ["{a} pages over {b} days: how many pages a day?", "I have {a} minutes for {b} tasks. Minutes per task?"],
        ["Share {a} cookies among {b} kids. How many does each get?"],
        ["{a} dollars split between {b} people is how much each?"],
        ["If {b} friends split a bill of {a}, what does each pay?"]], _s_share, _v_calc_word),
    Template("convert", "single", ("convert_units",), [
        ["Change {v} {fu} into {tu}.", "Please turn {v} {fu} into {tu}.", "convert {v} {fu} to {tu}"],
        ["What's {v} {fu} in {tu}?", "{v} {fu} to {tu}?", "How much is {v} {fu} in {tu}?"],
        ["I need {v} {fu} in {tu}.", "Give me {v} {fu} in {tu}.", "Can you convert {v} {fu} into {tu}?"],
        ["If something is {v} {fu}, how many {tu} is it?", "My bag is {v} {fu}. What's that in {tu}?"],
        ["Convert {v} {fu} to {tu}.", "{v} {fu} in {tu}, please."], ["How many {tu} is {v} {fu}?",
         "What is {v} {fu} in {tu}?"], ["I have {v} {fu}. How much is that in {tu}?"],
        ["Express {v} {fu} as {tu}.", "{v} {fu} equals how many {tu}?"]], _s_convert, _v_convert, weight=2.0),
    Template("weekday", "single", ("weekday",), [
        ["What weekday is {d}?", "what day is {d}", "Day of the week for {d}?"],
        ["Which day of the week does {d} fall on?", "Can you check what day {d} is?"],
        ["On which day of the week is {d}?", "I need the day name for {d}."],
        ["What day of the week is {d}?", "Which weekday was {d}?"], ["{d} falls on which day?"],
        ["Tell me the weekday of {d}.", "Was {d} a Monday or what?"]], _s_date, _v_weekday),
    Template("add_days", "single", ("add_days",), [
        ["What's the date {n} days after {d}?", "Go {n} days forward from {d}.", "{n} days after {d}?"],
        ["Count {n} days ahead from {d}.", "Move {d} forward by {n} days."],
        ["My trip starts {d} and lasts {n} days. When does it end?", "A deadline {n} days after {d} is when?"],
        ["What date is {n} days after {d}?", "Add {n} days to {d}."], ["Which date comes {n} days after {d}?"],
        ["If I start on {d}, what is the date {n} days later?", "{d} plus {n} days is which date?"]],
        _s_date, _v_add_days),
    Template("days_between", "single", ("days_between",), [
        ["How many days are there between {d} and {d2}?", "Number of days from {d} to {d2}?"],
        ["How many days separate {d} and {d2}?", "From {d} to {d2}, how many days is that?"],
        ["Count how many days it is from {d} to {d2}.", "days between {d} and {d2}"],
        ["How many days from {d} to {d2}?", "Days between {d} and {d2}?"], ["Count the days between {d} and {d2}."],
        ["How long is it from {d} until {d2} in days?", "What is the gap in days from {d} to {d2}?"]],
        _s_date, _v_between),
    Template("cat", "single", ("cat",), [
        ["Can you read {path}?", "Please open {path}.", "read {path}"],
        ["What is written in {path}?", "What does the file {path} contain?", "Tell me what {path} says."],
        ["Display {path}.", "Show {path} to me.", "I want to read {path}."],
        ["Check {path} for me.", "Look at {path} and tell me what it says.", "cat {path}"],
        ["What's in {path}?", "What does {path} say?"], ["Show me {path}.", "Open {path}."], ["Read {path} for me."],
        ["Print the contents of {path}.", "Let me see {path}."]], _s_file, _v_cat),
    Template("ls", "single", ("ls",), [
        ["What files does {folder} have?", "list {folder}", "Can you list {folder}?"],
        ["Show me the files in {folder}.", "What's in {folder}?", "Files in {folder}?"],
        ["Which documents are stored in {folder}?", "Look in {folder} and tell me the file names."],
        ["Which files are in {folder}?", "List the files in {folder}."], ["What is inside {folder}?"],
        ["Show the contents of the folder {folder}.", "What do I have under {folder}?"]], _s_file, _v_ls, weight=0.7),
    Template("find_file", "single", ("find",), FIND_FAMILIES, _s_file, _v_find, weight=0.7),
    Template("find_nowhere", "error", ("find",), FIND_FAMILIES, _s_nowhere, _v_nowhere, weight=0.3),
    Template("note_get", "single", ("note_get",), [
        ["What's my {key}?", "Tell me my {key}.", "my {key}?"],
        ["Can you look up my {key}?", "Check my {key} note.", "What did I save as my {key}?"],
        ["Get my {key}, please.", "I need my {key}.", "Read me my {key}."],
        ["What is my {key}?", "Look up my {key}."], ["Remind me of my {key}."],
        ["Do you know my {key}?", "I forgot my {key}, what was it?"]], _s_note, _v_note_get),
    Template("note_save", "single", ("note_save",), [
        ["Save my {key} as {value}.", "My {key} is {value}, save it.", "note: {key} is {value}"],
        ["Write down that my {key} is {value}.", "Make a note that my {key} is {value}."],
        ["Set my {key} note to {value}.", "Record my {key}: {value}.", "Please remember my {key}: {value}."],
        ["Remember that my {key} is {value}.", "Save a note: {key} is {value}."], ["Note down my {key}: {value}."],
        ["Please store {value} as my {key}.", "Keep in mind: my {key} is {value}."]], _s_note_save, _v_note_save),
    # ---- chain
    Template("run_total", "chain", ("convert_units", "calculate"), [
        ["I walked {a} km and {b} miles. What's the total in km?", "{a} km and {b} miles, total in km?"],
        ["Today I cycled {a} km, yesterday {b} miles. How far in km altogether?"],
        ["What is {a} km + {b} miles in kilometers?", "Total distance in km: {a} km and {b} miles."],
        ["I ran {a} km and then {b} miles. How many km in total?"], ["Add {a} km and {b} miles; give the total in km."],
        ["My trip was {a} km plus {b} miles. What is that in km?"]], _s_run, _v_run),
    Template("weigh_total", "chain", ("convert_units", "calculate"), [
        ["I have {n} boxes of {a} pounds each. How much is that in kg?", "{n} parcels weigh {a} pounds each. How heavy are they in kg?"],
        ["Each bag is {a} pounds. What do {n} of them weigh in kilograms?"],
        ["How many kg are {n} times {a} pounds?", "What is the weight in kg of {n} crates, {a} pounds per crate?"],
        ["One box weighs {a} pounds. How many kg do {n} boxes weigh?"],
        ["What do {n} bags of {a} pounds each weigh in kg?"], ["Total kg for {n} items at {a} pounds each?"]],
        _s_weigh, _v_weigh),
    Template("from_today", "chain", ("today", "add_days"), [
        ["What's the date in {n} days?", "Which date is it {n} days from now?", "date in {n} days?"],
        ["Count {n} days from today. What date do I get?", "If today is day one, what date is {n} days on?"],
        ["I leave {n} days from today. On what date?", "What will the date be {n} days from now?"],
        ["What is the date {n} days from today?", "What date will it be in {n} days?"],
        ["Give me the date {n} days from now."], ["{n} days from today is which date?"]], _s_date, _v_from_today),
    Template("weekday_in", "chain", ("today", "add_days", "weekday"), [
        ["What weekday will it be {n} days from now?", "What weekday do we reach in {n} days?"],
        ["{n} days from now, what day of the week is it?", "In {n} days, what weekday will it be?"],
        ["My exam is in {n} days. Which weekday is that?"],
        ["What day of the week will it be in {n} days?"], ["In {n} days, which weekday is it?"],
        ["Which day of the week is {n} days from today?"]], _s_date, _v_weekday_in, weight=0.7, boost=2.0),
    Template("write_cat", "chain", ("write", "cat"), [
        ["Write '{text}' into {path} and read it back to me.", "Store '{text}' in {path}, then open it."],
        ["Create {path} with '{text}' and show me what it says.", "Save the text '{text}' to {path} and read it."],
        ["Please write '{text}' in {path}, then display it.", "Write '{text}' to {path} and confirm by reading it."],
        ["Write '{text}' to {path}, then read it back."], ["Save '{text}' in {path} and show me the file."],
        ["Put '{text}' into {path} and check it."]], _s_write, _v_write_cat),
    Template("calc_note", "chain", ("calculate", "note_save"), [
        ["Calculate {expr} and remember the result as {key}.", "Work out {expr}, then save it under {key}."],
        ["Compute {expr} and note it down as my {key}.", "What is {expr}? Save the answer as {key}."],
        ["Figure out {expr} and store it as {key}.", "Calculate {expr}, then keep it as my {key} note."],
        ["Compute {expr} and save it as {key}."], ["Work out {expr}, then store the result under {key}."],
        ["Save the value of {expr} as my {key}."]], _s_calc_note, _v_calc_note, boost=1.5),
    # ---- parallel (several calls in one turn)
    Template("calc_pair", "parallel", ("calculate",), [
        ["Calculate {e1}, and also {e2}.", "What's {e1}? And {e2}?", "Compute {e1} and {e2} for me."],
        ["Two sums please: {e1} and {e2}.", "Give me {e1} and also {e2}.", "Solve {e1} and {e2}."],
        ["What are {e1} and {e2}?", "Calculate {e1} and {e2}."], ["Work out both {e1} and {e2}."],
        ["{e1} and {e2}, please.", "Both of these: {e1}, {e2}."], ["First {e1}, then {e2}.", "Do {e1}. Also do {e2}."],
        ["Can you get me {e1} along with {e2}?", "{e1} together with {e2}, please."],
        ["Results for {e1} and for {e2}?", "Evaluate {e1}; evaluate {e2} too."],
        ["I need {e1} as well as {e2}."]], _s_pair_calc, _v_pair_calc),
    Template("convert_pair", "parallel", ("convert_units",), [
        ["Please convert {v1} {fu1} into {tu1}, and {v2} {fu2} into {tu2}.", "{v1} {fu1} to {tu1}? And {v2} {fu2} to {tu2}?"],
        ["How many {tu1} is {v1} {fu1}, and how many {tu2} is {v2} {fu2}?",
         "I need {v1} {fu1} in {tu1} and also {v2} {fu2} in {tu2}."],
        ["Convert {v1} {fu1} to {tu1} and {v2} {fu2} to {tu2}."], ["What is {v1} {fu1} in {tu1}, and {v2} {fu2} in {tu2}?"],
        ["{v1} {fu1} in {tu1}; {v2} {fu2} in {tu2}.", "First {v1} {fu1} to {tu1}, then {v2} {fu2} to {tu2}."],
        ["Can you do {v1} {fu1} to {tu1} along with {v2} {fu2} to {tu2}?",
         "Change {v1} {fu1} into {tu1}. Change {v2} {fu2} into {tu2} too."],
        ["Both please: {v1} {fu1} as {tu1} and {v2} {fu2} as {tu2}.", "{v1} {fu1} to {tu1} plus {v2} {fu2} to {tu2}?"],
        ["Two conversions: {v1} {fu1} to {tu1}, {v2} {fu2} to {tu2}."]], _s_pair_convert, _v_pair_convert),
    Template("weekday_pair", "parallel", ("weekday",), [
        ["What weekday is {d}, and what weekday is {d2}?", "Days of the week for {d} and {d2}?"],
        ["Check which days {d} and {d2} fall on.", "Is {d} or {d2} on a weekend? Give me both days."],
        ["Which weekdays are {d} and {d2}?"], ["What days of the week are {d} and {d2}?"],
        ["{d} and {d2}: which weekdays?", "First {d}, then {d2}: what days are they?"],
        ["Weekday for {d}; weekday for {d2}.", "What day is {d} along with {d2}?"],
        ["Tell me the weekdays of {d} and of {d2}."]], _s_pair_date, _v_pair_weekday),
    Template("cat_pair", "parallel", ("cat",), [
        ["Open {p1} and {p2}.", "Can you read {p1} and also {p2}?", "What is written in {p1} and in {p2}?"],
        ["Read me {p1} and {p2}, please.", "Check {p1} and {p2} for me.", "Display {p1} and {p2}."],
        ["Read {p1} and {p2}."], ["What do {p1} and {p2} say?"],
        ["{p1} and {p2}: what do they say?", "First read {p1}, then {p2}."],
        ["Open {p1} along with {p2}.", "Read {p1}. Read {p2} too."],
        ["Show me both {p1} and {p2}."]],
        _s_pair_file, _v_pair_cat),
    # ---- error and recovery
    Template("cat_lost", "error", ("cat", "find"), LOST_FAMILIES, _s_file, _v_cat_lost, weight=1.2, boost=2.0),
    Template("cat_nowhere", "error", ("cat", "find"), LOST_FAMILIES, _s_nowhere, _v_nowhere, weight=0.3),
    Template("note_fuzzy", "error", ("note_get",), [
        ["What's my {key}?", "Tell me my {key}.", "Can you check my {key}?"],
        ["I need my {key} note.", "What did I save for {key}?", "Get my {key}, please."],
        ["What is my {key}?", "Look up my {key}."], ["Remind me of my {key} note."],
        ["Do you have my {key} saved?"]], _s_note_fuzzy, _v_note_fuzzy),
    Template("missing_file", "error", ("cat",), [
        ["Can you read {path}?", "What does {path} contain?", "Please open {path}."],
        ["Tell me what {path} says.", "Display {path}.", "Check {path} for me."],
        ["What's in {path}?", "Read {path}."], ["Show me {path}."], ["Open {path} for me."]],
        _s_missing, _v_missing, weight=0.8),
    # ---- follow-ups (later turns refer to earlier results)
    Template("calc_then", "followup", ("calculate",), [
        ["What's {expr}?", "Please calculate {expr}."], ["Figure out {expr}.", "Solve {expr}."],
        ["What is {expr}?", "Calculate {expr}."], ["Compute {expr} for me."], ["I need the value of {expr}."]],
        _s_calc_then, _v_calc_then, weight=1.5),
    Template("convert_then", "followup", ("convert_units",), [
        ["What's {v} {fu} in {tu}?", "Change {v} {fu} into {tu}."], ["Give me {v} {fu} in {tu}.", "{v} {fu} to {tu}?"],
        ["Convert {v} {fu} to {tu}."], ["How many {tu} is {v} {fu}?"], ["Express {v} {fu} as {tu}."]],
        _s_convert_then, _v_convert_then),
    Template("days_then_weekday", "followup", ("add_days", "weekday"), [
        ["What's the date {n} days after {d}?", "Go {n} days forward from {d}."], ["{n} days after {d}?"],
        ["What date is {n} days after {d}?"], ["Add {n} days to {d}."], ["If I start on {d}, what is the date {n} days later?"]],
        _s_date_then, _v_days_then_weekday),
    Template("weekday_then_days", "followup", ("weekday", "add_days"), [
        ["What weekday is {d}?", "what day is {d}"], ["Which day of the week does {d} fall on?"],
        ["What day of the week is {d}?"], ["Which weekday was {d}?"], ["Tell me the weekday of {d}."]],
        _s_date_then, _v_weekday_then_days, weight=0.7),
    Template("calc_then_save", "followup", ("calculate", "note_save"), [
        ["What's {expr}?", "Please calculate {expr}."], ["Figure out {expr}.", "Solve {expr}."],
        ["What is {expr}?"], ["Calculate {expr}."], ["Work out {expr}."]], _s_calc_note, _v_calc_then_save),
    Template("ls_then_cat", "followup", ("ls", "cat"), [
        ["What files does {folder} have?", "Show me the files in {folder}."], ["Can you list {folder}?", "Files in {folder}?"],
        ["Which files are in {folder}?"], ["List the files in {folder}."], ["Show the contents of the folder {folder}."]],
        _s_file, _v_ls_then_cat),
    Template("save_then_get", "followup", ("note_save", "note_get"), [
        ["Save my {key} as {value}.", "Make a note that my {key} is {value}."], ["Record my {key}: {value}."],
        ["Remember that my {key} is {value}."], ["Save a note: {key} is {value}."], ["Please store {value} as my {key}."]],
        _s_note_save, _v_save_then_get, weight=0.7),
    Template("calc_thanks", "followup", ("calculate",), [
        ["What's {expr}?", "Please calculate {expr}."], ["Figure out {expr}.", "Solve {expr}."],
        ["What is {expr}?"], ["Compute {expr} for me."], ["I need the value of {expr}."]], _s_calc_thanks, _v_calc_thanks, weight=0.6),
    # ---- no tool needed
    Template("chat", "direct", (), [[q for q, _ in fam] for fam in CHAT_FAMILIES], _s_direct, _v_chat,
             weight=1.5, wrap=False),
    Template("repeat", "direct", (), [
        ["Write back exactly: {t}", "Reply with this: {t}"], ["Say it back: '{t}'", "Please say: {t}"],
        ["Just echo '{t}' to me.", "Type this back: {t}"],
        ["Say '{t}'.", "Just repeat: {t}", "Repeat this: {t}"], ["Copy this back to me: {t}", "Echo this: {t}"],
        ["Repeat after me: {t}", "Say this back to me: {t}"], ["Echo '{t}'.", "Please repeat '{t}'."],
        ["Can you say '{t}' back?"]], _s_direct, _v_repeat, weight=0.8),
    Template("fact", "direct", (), [
        ["What would you say is the {q}?", "The {q}?"], ["I forgot the {q}. What is it?", "Remind me, what's the {q}?"],
        ["Any idea what the {q} is?", "Tell me, what is the {q}?"],
        ["What's the {q}?", "Name the {q}.", "Name the {q}, please."], ["Which is the {q}?", "Can you tell me the {q}?"],
        ["What is the {q}?", "Tell me the {q}."], ["Do you know the {q}?"], ["Quick one: the {q}?"]],
        _s_direct, _v_fact, weight=1.0),
    # ---- no tool can serve
    Template("unsupported", "unsupported", (), [[q for q, _ in fam] for fam in UNSUPPORTED], _s_direct,
             _v_unsupported, heldout=2, weight=2.0),
    # ---- training only (round 19)
    Template("calc_list", "parallel", ("calculate",), [[f] for f in [
        "Calculate {items}.", "What are {items}?", "Work out {items}.", "Solve these: {items}",
        "Compute each of these: {items}", "Give me the results of {items}.", "Can you calculate {items}?"]],
        _s_list_calc, _v_list, heldout=0, weight=0.5, train_only=True),
    Template("convert_list", "parallel", ("convert_units",), [[f] for f in [
        "Convert {items}.", "Please convert these: {items}", "Can you convert {items}?",
        "I need these converted: {items}", "Change {items}."]],
        _s_list_convert, _v_list, heldout=0, weight=0.5, train_only=True),
    Template("weekday_list", "parallel", ("weekday",), [[f] for f in [
        "Which weekdays are {items}?", "What days of the week are {items}?", "Give me the weekday of each: {items}",
        "Check which days these fall on: {items}", "What weekday is each of these: {items}?"]],
        _s_list_weekday, _v_list, heldout=0, weight=0.5, train_only=True),
    Template("cat_list", "parallel", ("cat",), [[f] for f in [
        "Read {items}.", "Open {items}.", "What do {items} say?", "Show me {items}.",
        "Please read these files: {items}", "Can you open {items}?"]],
        _s_list_cat, _v_list, heldout=0, weight=0.5, train_only=True),
    Template("unsupported_more", "unsupported", (), [_unsupported_family(a) for a, _ in UNSUPPORTED_MORE],
             _s_direct, _v_unsupported, heldout=0, weight=1.5, train_only=True),
]
UNSUPPORTED_WHAT = {q: what for fam in UNSUPPORTED for q, what in fam} | {
    q: what for a, what in UNSUPPORTED_MORE for q in _unsupported_family(a)
}
# Wrappers around a first request, in families ((prefix, suffix) pairs); the last HELDOUT_WRAPPERS are eval-only.
WRAPPERS: list[list[tuple[str, str]]] = [
    [("So, ", ""), ("Okay. ", ""), ("Alright. ", "")],
    [("Hi there! ", ""), ("Good morning. ", ""), ("Hey there. ", "")],
    [("", " Thanks a lot."), ("", " Thanks a bunch."), ("", " Thanks in advance.")],
    [("I was wondering: ", ""), ("Just curious: ", ""), ("Question: ", "")],
    [("Sorry to bother you. ", ""), ("Excuse me. ", "")],
    [("", " When you have a moment."), ("", " No rush."), ("", " Right now, please.")],
    [("Help needed: ", ""), ("Task for you: ", ""), ("Need a hand here. ", "")],
    [("Hello, assistant. ", ""), ("Yo! ", ""), ("Hi again. ", "")],
    [("Hey! ", ""), ("Hi. ", ""), ("Hello! ", "")],
    [("Quick question: ", ""), ("One thing: ", "")],
    [("", " Thanks!"), ("", " Thank you.")],
    [("Please help me. ", ""), ("", " Please.")],
    [("I have a question. ", ""), ("Can you help? ", "")],
    [("Okay, next one. ", ""), ("Another thing. ", ""), ("Next: ", "")],
    [("", " Appreciate it."), ("", " Cheers."), ("", " Many thanks!")],
    [("Can you do this for me? ", ""), ("Would you mind? ", ""), ("Could you? ", "")],
    [("", " That would help a lot."), ("", " I need it soon."), ("", " Thanks, friend.")],
    [("Good evening! ", ""), ("Hiya. ", ""), ("Morning! ", "")],
    [("For my homework: ", ""), ("For work: ", ""), ("For a friend: ", "")],
    [("Could you help me out? ", ""), ("", " Much appreciated!")],
]
# fmt: on
HELDOUT_WRAPPERS = 1
TEMPLATE_BY_NAME = {t.name: t for t in TEMPLATES}
HELDOUT: frozenset[str] = frozenset(
    [f"{t.name}/{f}" for t in TEMPLATES for f in range(len(t.paraphrases) - t.heldout, len(t.paraphrases))]
    + [f"wrap/{f}" for f in range(len(WRAPPERS) - HELDOUT_WRAPPERS, len(WRAPPERS))]
    + [f"{k}/{len(v) - 1}" for k, v in FOLLOWUPS.items()]
)  # every phrasing id that only eval episodes use
# Training only: requests composed from training phrasings of a one-call template, two joined for a parallel
# template, one plus a "save it" clause for calc_note. Round 11's build got one call for the held-out "I need X as
# well as Y." (5 of 5) and dropped a digit in "Save the value of X as my Y" (3 of 4): the pair and chain templates'
# few fixed wordings taught their surface, not "two requests in one message". Composition multiplies the shapes
# without touching a held-out family (only the first len - heldout families of each template are drawn). Side
# effect seen in round 12's build: "I need X as well as Y." now saves X as a note ("as" read as "Save it as").
COMPOSE: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "calc_pair": ("calc", {"expr": "e1"}, {"expr": "e2"}),
    "convert_pair": ("convert", {"v": "v1", "fu": "fu1", "tu": "tu1"}, {"v": "v2", "fu": "fu2", "tu": "tu2"}),
    "weekday_pair": ("weekday", {"d": "d"}, {"d": "d2"}),
    "cat_pair": ("cat", {"path": "p1"}, {"path": "p2"}),
    "calc_note": ("calc", {"expr": "expr"}, {}),
}
JOINS = [" Also, ", " And ", " Then ", " Next, ", " Plus, ", " One more: ", " After that, ", " Second: ", "\n",
         " And also ", " Oh, and ", " Same for this: "]  # fmt: skip
COMPOSE_P = 0.35  # share of the training episodes of a COMPOSE template that get a composed request


def _slot_phrase(name: str, mapping: dict[str, str], rng: random.Random) -> str:
    """A training phrasing of template `name` with its slots renamed (`{expr}` -> `{e1}`), ending in punctuation."""
    t = TEMPLATE_BY_NAME[name]
    out = rng.choice(t.paraphrases[rng.randrange(len(t.paraphrases) - t.heldout)])
    for old, new in mapping.items():
        out = out.replace("{" + old + "}", "{" + new + "}")
    return out if out[-1] in ".?!" else out + rng.choice(".?")


def composed_phrase(template: Template, rng: random.Random) -> str:
    """A composed request template for `template` (a COMPOSE key), formatted later like any paraphrase."""
    single, m1, m2 = COMPOSE[template.name]
    first = _slot_phrase(single, m1, rng)
    if not m2:  # a chain: the first request, then a training phrasing of "save it as {key}"
        return first + " " + rng.choice(FOLLOWUPS["then_save"][:-1])
    second, join = _slot_phrase(single, m2, rng), rng.choice(JOINS)
    if join[-1] == " " and join.strip()[-1:] != ":":  # " And what is ..." reads on: lower-case its start
        second = second[:1].lower() + second[1:]
    return first + join + second


# Training only (round 19): a request that starts with an imperative ("Read {path} for me.") is sometimes put into
# one of UNSUPPORTED_FRAMES ("Could you read {path} for me?"). Those frames carry the extra unsupported topics, so
# without this they would themselves say "no tool" (round 19's first probe refused "Tell me where X is saved." and
# "Show me X, wherever it is." as things it cannot do).
FRAME_P = 0.25
IMPERATIVES = {"calculate", "compute", "convert", "change", "figure", "solve", "work", "read", "open", "show",
               "display", "list", "look", "check", "count", "add", "save", "write", "note", "remember", "record",
               "set", "get", "give", "find", "locate", "make", "store", "create", "move", "go", "evaluate", "run",
               "do", "tell"}  # fmt: skip


def _framed(phrase: str, rng: random.Random) -> str:
    """`phrase` in a random UNSUPPORTED_FRAMES frame if it starts with an imperative, else unchanged."""
    if phrase.split(" ", 1)[0].strip(",.:").lower() not in IMPERATIVES:
        return phrase
    core = phrase.rstrip(".?! ")
    frame = rng.choice([f for f in UNSUPPORTED_FRAMES if "for me" not in f or "for me" not in core])
    return frame.replace("<A>", core[0].upper() + core[1:]).replace("<a>", core[0].lower() + core[1:])


NOISE = 0.5  # training: share of episodes whose requests get surface noise (`_noisy`)
# Surface noise for training requests: the round-9 model scored 84% on training phrasings but 38% on held-out
# ones, and an unseen "Much appreciated!" after a plain request made it answer "I can't ...". Words slipped into
# a request, other openers and closers, lower case and no final punctuation teach that the request's content
# words and slots decide the call, not its exact surface form. Train split only; eval requests stay clean.
FILLERS = ["please", "just", "now", "quickly", "actually", "really", "kindly", "for me", "right away",
           "real quick", "if you can", "maybe", "also", "exactly", "here"]  # fmt: skip
OPENERS = ["I'm planning my week.", "This is for work.", "My friend asked me this.", "I'm in a hurry.",
           "Here's what I need.", "Different question now.", "One more.", "Simple one.", "Another request.",
           "Ok so.", "Hmm.", "Well,", "Listen,", "Right,", "Hello again!", "Sorry, quick one."]  # fmt: skip
CLOSERS = ["Thanks so much!", "Ta.", "Please and thank you.", "If that's ok.", "Thank you kindly.",
           "Much obliged.", "No hurry.", "Thanks again.", "You're the best.", "Great.", "Asap.", "Ok?"]  # fmt: skip


def _noisy(phrase: str, rng: random.Random, fill: bool = True) -> str:
    """A request template with surface noise; `{slot}` placeholders and their neighbours are left intact."""
    words = phrase.split(" ")
    gaps = [i for i in range(1, len(words)) if "{" not in words[i - 1] + words[i]]
    if fill and gaps and rng.random() < 0.5:
        i = rng.choice(gaps)
        words.insert(i, rng.choice(FILLERS))
    out = " ".join(words)
    if rng.random() < 0.25:
        out = rng.choice(OPENERS) + " " + out
    if rng.random() < 0.25:
        out = out + " " + rng.choice(CLOSERS)
    if rng.random() < 0.3:
        out = out[:1].lower() + out[1:]
    if rng.random() < 0.2:
        out = out.rstrip(".?!")
    return out


WITHHOLD = 0.08  # training: share of single-tool tasks whose tool is not offered (answered "can't")
THINKING = 0.5  # share of episodes in the thinking rendering
ALL_TOOLS = 0.4  # training: share of episodes that offer every tool (the others: needed + random distractors)

# The short reasoning of the thinking rendering: what each tool is for, and one sentence per kind of step.
PURPOSE = {"calculate": "This needs arithmetic", "convert_units": "This is a unit conversion",
           "today": "I need today's date", "add_days": "I need to add days to a date",
           "days_between": "I need the days between two dates", "weekday": "I need a weekday",
           "note_save": "This should be saved as a note", "note_get": "I need a saved note",
           "ls": "I need to list a folder", "find": "I need to find a file", "cat": "I need to read a file",
           "write": "I need to write a file"}  # fmt: skip


class Transcript:
    """What a solver writes: tool calls really executed in `env`, intermediate answers and follow-up requests."""

    def __init__(
        self,
        env: ToolEnv,
        allowed: Sequence[str],
        task: str,
        rng: random.Random,
        held: bool,
        noisy: random.Random | None = None,
    ) -> None:
        self.env, self.allowed, self.rng, self.held, self.noisy = env, set(allowed), rng, held, noisy
        self.messages: list[dict] = [{"role": "user", "content": task}]
        self.phrasing: list[str] = []

    def __call__(self, name: str, args: dict) -> Any:
        return self.many((name, args))[0]

    def many(self, *calls: tuple[str, dict]) -> list[Any]:
        """Several calls in one assistant turn; their results in order."""
        assert all(n in self.allowed for n, _ in calls), calls
        fns = [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]
        self.messages.append({"role": "assistant", "content": "", "tool_calls": fns})
        out = []
        for n, a in calls:
            res = self.env.call(n, a)
            self.messages.append({"role": "tool", "content": res})
            parsed = json.loads(res)
            out.append(parsed.get("result", parsed))
        return out

    def answer(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def phrase(self, name: str) -> str:
        """A follow-up phrasing: the held-out one in a held-out episode, else one of the others."""
        options = FOLLOWUPS[name]
        i = len(options) - 1 if self.held else self.rng.randrange(len(options) - 1)
        self.phrasing.append(f"{name}/{i}")
        return _noisy(options[i], self.noisy) if self.noisy else options[i]


def _thought(messages: list[dict], i: int, kind: str) -> str:
    """One sentence of reasoning for assistant message i, from what it does and what came before."""
    m, prev = messages[i], messages[i - 1]
    err = json.loads(prev["content"]).get("error") if prev["role"] == "tool" else None
    calls_before = [c["function"]["name"] for x in messages[:i] for c in x.get("tool_calls") or []]
    prev_name = calls_before[-1] if calls_before else None
    names = [c["function"]["name"] for c in m.get("tool_calls") or []]
    if len(names) > 1:
        what = f"{names[0]} {len(names)} times" if len(set(names)) == 1 else " and ".join(names)
        return f"These are independent, so I call {what} at once."
    if names and err:
        return f"That failed, so I call {names[0]} {'again' if names[0] == prev_name else 'instead'}."
    if names:
        return f"{PURPOSE[names[0]]}, so I call {names[0]}."
    if kind == "unsupported":
        return "None of my tools can do this, so I say so."
    if err:
        return "The tool reported an error, so I tell the user."
    if prev["role"] == "user":
        return "No tool is needed here, so I answer directly."
    return "I have the result, so I answer."


def _offer(
    rng: random.Random, needed: Sequence[str], mode: str, withhold: bool, all_tools: float = ALL_TOOLS
) -> list[str]:
    """Tool names to offer: every tool ("all"), or the needed ones plus random distractors (every tool with
    probability `all_tools`); `withhold`: a random set without the needed ones."""
    others = [t for t in TOOL_NAMES if t not in needed]
    if withhold:
        names = rng.sample(others, rng.randint(1, len(others)))
    elif mode == "all" or rng.random() < all_tools:
        names = list(TOOL_NAMES)
    else:
        names = list(needed) + rng.sample(others, rng.randint(0, len(others)))
    rng.shuffle(names)
    return names


def episode_seed(seed: int, split: Split, i: int) -> int:
    """A per-episode seed; the train and eval streams are disjoint (a 64-bit hash of split, seed, index)."""
    return int.from_bytes(hashlib.sha256(f"edgeport:{split}:{seed}:{i}".encode()).digest()[:8], "little")


def build_episode(
    template: Template,
    family: int,
    para: int,
    ep_seed: int,
    tools: str = "random",
    thinking: bool = False,
    wrapper: tuple[int, int] | None = None,
    held: bool = False,
    withhold: bool = False,
    all_tools: float = ALL_TOOLS,
    noise: bool = False,
    compose: bool = False,
    frame: bool = False,
) -> Episode:
    """Sample slots, run the solver against a real ToolEnv, and record the messages it produced.

    tools: "all" offers every tool, "random" the needed ones plus distractors (all of them with probability
    `all_tools`); withhold: offer none of the needed tools, so the answer is that it cannot be done.
    wrapper: (family, index) into WRAPPERS.
    held: use the held-out follow-up phrasings. thinking: give every assistant turn a short <think> block.
    noise: surface noise on the user's requests (`_noisy`; fillers only in requests that call tools).
    compose: the request is `composed_phrase(template)` instead of paraphrase (family, para); training only.
    frame: an imperative request goes into a polite frame (`_framed`); training only."""
    rng = random.Random(ep_seed)
    noisy = random.Random(ep_seed ^ 0x0015E) if noise else None
    slots = template.sample(rng)
    slots["phrase"] = template.paraphrases[family][para]
    if compose:
        slots["phrase"] = composed_phrase(template, random.Random(ep_seed ^ 0xC0))
    env = ToolEnv(slots["state"])
    phrase = _framed(slots["phrase"], random.Random(ep_seed ^ 0xF4)) if frame else slots["phrase"]
    phrase = _noisy(phrase, noisy, bool(template.tools)) if noisy else phrase
    task = phrase.format(**slots)
    phrasing = [f"{template.name}/{'composed' if compose else family}"]
    if wrapper is not None:
        prefix, suffix = WRAPPERS[wrapper[0]][wrapper[1]]
        task = prefix + task + suffix
        phrasing.append(f"wrap/{wrapper[0]}")
    tr = Transcript(env, template.tools, task, rng, held, noisy)
    final, answer = template.solve(slots, tr, rng)
    tr.answer(final)
    if slots.get("expect") is not None:
        assert answer == slots["expect"], (template.name, answer, slots["expect"])
    messages, kind, expect_state = tr.messages, template.kind, slots.get("expect_state", {})
    if withhold:  # the same request, but none of its tools is offered
        needs = " and ".join(template.tools)
        final = rng.choice([f"I can't do that here: it needs {needs}, which I don't have.",
                            f"Sorry, I can't: no {needs} tool is available."])  # fmt: skip
        messages, kind, answer, expect_state = (
            [messages[0], {"role": "assistant", "content": final}],
            "unsupported",
            "can't",
            {},
        )
    offered = _offer(random.Random(ep_seed ^ 0x70015), template.tools, tools, withhold, all_tools)
    if thinking:
        thoughts = {
            i: _thought(messages, i, kind) for i, m in enumerate(messages) if m["role"] == "assistant"
        }
        for i, t in thoughts.items():
            messages[i]["content"] = f"{THINK_START}\n{t}\n{THINK_END}\n\n" + messages[i]["content"]
    ep = Episode(messages, schemas(offered) if offered else None, answer, task, slots["state"],
                 f"{template.name}/{family}.{para}", ep_seed, kind, expect_state, thinking,
                 phrasing + tr.phrasing)  # fmt: skip
    verify_episode(ep)
    return ep


def verify_episode(ep: Episode) -> None:
    """Re-execute every tool call in a fresh env built from `env_state`; results and final state must match."""
    env = ToolEnv(ep.env_state)
    msgs = ep.messages
    for i, m in enumerate(msgs):
        for k, tc in enumerate(m.get("tool_calls") or []):
            fn = tc["function"]
            out = env.call(fn["name"], fn["arguments"])
            if i + 1 + k >= len(msgs) or msgs[i + 1 + k] != {"role": "tool", "content": out}:
                raise AssertionError(
                    f"{ep.template}: replay of {fn['name']} gave {out}, not the transcript's"
                )
    if not state_matches(env, ep.expect_state):
        raise AssertionError(f"{ep.template}: final state does not hold {ep.expect_state}")
    final = strip_reasoning(msgs[-1]["content"])
    if ep.answer is not None and not answer_matches(final, ep.answer):
        raise AssertionError(f"{ep.template}: final text {final!r} lacks answer {ep.answer!r}")


def generate_episodes(
    n: int,
    seed: int = 0,
    split: Split = "train",
    tools: str | None = None,
    all_tools: float = ALL_TOOLS,
    withhold: float = WITHHOLD,
) -> list[Episode]:
    """`n` deterministic episodes (see the module docstring).

    train: templates by weight, only non-held-out phrasings, tools "random" (needed + distractors, often all);
    eval: its own seed stream, kinds in turn (equal counts), held-out phrasings in about half of the episodes,
    tools "all". `tools` ("all" | "random") overrides the split's default. Training only: `all_tools` is the share
    of "random" episodes offering every tool, `withhold` the share of single-tool tasks whose tool is not offered."""
    split = {"val": "eval", "heldout": "eval", "test": "eval"}.get(split, split)
    if split not in ("train", "eval"):
        raise EdgeportError(f"split must be 'train' or 'eval', got {split!r}")
    mode = tools or ("all" if split == "eval" else "random")
    if mode not in ("all", "random"):
        raise EdgeportError(f"tools must be 'all' or 'random', got {mode!r}")
    out = []
    for i in range(n):
        s = episode_seed(seed, split, i)
        rng = random.Random(s ^ 0x5EED)
        pool = [
            t for t in TEMPLATES if split == "train" or (t.kind == KINDS[i % len(KINDS)] and not t.train_only)
        ]
        t = rng.choices(pool, [t.weight * (t.boost if split == "train" else 1.0) for t in pool])[0]
        held = split == "eval" and rng.random() < 0.5
        n_seen = len(t.paraphrases) - t.heldout
        family = rng.randrange(n_seen, len(t.paraphrases)) if held and t.heldout else rng.randrange(n_seen)
        para = rng.randrange(len(t.paraphrases[family]))
        wrapper = None
        if t.wrap and rng.random() < 0.5:
            n_wseen = len(WRAPPERS) - HELDOUT_WRAPPERS
            wf = rng.randrange(n_wseen, len(WRAPPERS)) if held else rng.randrange(n_wseen)
            wrapper = (wf, rng.randrange(len(WRAPPERS[wf])))
        thinking = rng.random() < THINKING
        drop = split == "train" and mode == "random" and t.kind == "single" and rng.random() < withhold
        noise = split == "train" and rng.random() < NOISE
        compose = split == "train" and t.name in COMPOSE and rng.random() < COMPOSE_P
        frame = split == "train" and bool(t.tools) and rng.random() < FRAME_P
        out.append(
            build_episode(
                t, family, para, s, mode, thinking, wrapper, held, drop, all_tools, noise, compose, frame
            )
        )
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
