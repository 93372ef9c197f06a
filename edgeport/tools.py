"""Small, really executable tool environments for agentic trajectories (deterministic, stdlib only).

`ToolEnv(state)` holds the state (a seeded "today", an in-memory file tree, a notes store) and
`env.call(name, arguments)` runs one tool and returns a compact JSON string: `{"result": ...}` on success,
`{"error": "..."}` for an unknown tool, bad arguments or a missing path. Tool errors are data, never exceptions.

Schemas are in OpenAI function format and deliberately short: the eval and `edgeport chat` offer all 12
(`schemas(TOOL_NAMES)`, ~900 tokens with the default model's tokenizer) or a subset (`schemas(names)`).
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import gc
import json
import math
import operator
import re
import time
from collections.abc import Callable
from typing import Any

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def fmt_num(x: float | int) -> int | float:
    """Integral values as int, others rounded to 4 decimals (so results stay short and comparable)."""
    if isinstance(x, bool):
        raise TypeError("bool is not a number")
    if isinstance(x, int):
        return x
    if not math.isfinite(x):
        raise ValueError("result is not finite")
    r = round(float(x), 4)
    return int(r) if r.is_integer() and abs(r) < 1e15 else r


# "<|...|>" and the chat's tag tokens (<think>, <tool_call>, <tool_response> and their closing forms)
_CONTROL = re.compile(r"<(?=\||/?(?:think|tool_call|tool_response)>)")


def neutralize_control_tokens(json_text: str) -> str:
    """Write the "<" of every control-token string in a JSON text as the JSON escape \\u003c: the value decodes
    the same, but the text no longer holds a special token, so a tool result cannot end a turn or fake one."""
    return _CONTROL.sub(r"\\u003c", json_text)


def dumps(obj: Any) -> str:
    """Compact, deterministic JSON as tool results appear in the transcript."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


# ---------------------------------------------------------------- calculator (a safe AST evaluator, no eval)
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
# Every step of the calculator has bounded cost: expressions of at most MAX_EXPRESSION characters, integers of
# at most MAX_INT_DIGITS digits (constants and every intermediate result), exponents of at most 64 on bases up
# to 1e6, round() to at most MAX_ROUND_DIGITS digits either side, and a wall-clock deadline checked at each node.
MAX_EXPRESSION = 200
MAX_INT_DIGITS = 100
MAX_ROUND_DIGITS = 15
MAX_SECONDS = 0.5
MAX_ARGUMENT_CHARS = 100_000  # any tool's argument: notes and files stay bounded in memory


def _round(x: Any, ndigits: Any = None) -> Any:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS):
        raise ValueError(f"digits must be an integer in -{MAX_ROUND_DIGITS}..{MAX_ROUND_DIGITS}")
    return round(x, ndigits)


_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
}


def calculate(expression: str) -> int | float:
    """Evaluate + - * / // % ** ( ) and sqrt/abs/round/min/max on numbers. Raises ValueError on anything else."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"expression too long (at most {MAX_EXPRESSION} characters)")
    try:
        tree = ast.parse(expression.replace("^", "**").replace("×", "*"), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse {expression!r}") from None

    def ev(node: ast.AST) -> Any:
        if time.thread_time() > deadline:
            raise ValueError("expression takes too long")
        value = _ev(node)
        if isinstance(value, int) and value.bit_length() > MAX_INT_DIGITS * 3.33:
            raise ValueError("number too large")
        return value

    def _ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e6):
                raise ValueError("exponent too large")
            try:
                return _BINOPS[type(node.op)](a, b)
            except ZeroDivisionError:
                raise ValueError("division by zero") from None
            except OverflowError:
                raise ValueError("result too large") from None
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            if node.keywords or not node.args:
                raise ValueError(f"bad call to {node.func.id}")
            try:
                return _FUNCS[node.func.id](*[ev(a) for a in node.args])
            except (TypeError, ValueError, OverflowError) as e:
                raise ValueError(f"{node.func.id}: {e}") from None
        raise ValueError(f"unsupported expression: {ast.unparse(node)[:40]!r}")

    # the deadline measures the expression, not a collector pause of a busy host process (a cyclic GC pass over
    # the objects of 40,000 generated episodes took longer than MAX_SECONDS and failed a 2-number sum), so it starts
    # once the collector is off (set before, a collection triggered by the allocations above still counted), and it
    # is this thread's CPU time, not wall time, so a host busy with other work does not fail an expression either
    was_enabled = gc.isenabled()
    gc.disable()
    deadline = time.thread_time() + MAX_SECONDS
    try:
        value = ev(tree)
    finally:
        if was_enabled:
            gc.enable()
    if isinstance(value, complex):
        raise ValueError("complex result")
    if isinstance(value, int) and abs(value) > 10**15:
        raise ValueError("result too large")
    return fmt_num(value)


# ---------------------------------------------------------------- unit conversion
# factor to the base unit of each dimension (m, kg, l); temperature is handled by formulas
_LENGTH = {
    "m": 1.0,
    "km": 1000.0,
    "cm": 0.01,
    "mm": 0.001,
    "mi": 1609.344,
    "ft": 0.3048,
    "in": 0.0254,
    "yd": 0.9144,
}
_MASS = {"kg": 1.0, "g": 0.001, "mg": 1e-6, "lb": 0.45359237, "oz": 0.028349523125}
_VOLUME = {"l": 1.0, "ml": 0.001, "gal": 3.785411784, "cup": 0.2365882365}
_TEMP = ("c", "f", "k")
_ALIASES = {
    "meter": "m", "meters": "m", "metre": "m", "metres": "m", "kilometer": "km", "kilometers": "km",
    "centimeter": "cm", "centimeters": "cm", "millimeter": "mm", "millimeters": "mm", "mile": "mi", "miles": "mi",
    "foot": "ft", "feet": "ft", "inch": "in", "inches": "in", "yard": "yd", "yards": "yd",
    "kilogram": "kg", "kilograms": "kg", "gram": "g", "grams": "g", "milligram": "mg", "milligrams": "mg",
    "pound": "lb", "pounds": "lb", "lbs": "lb", "ounce": "oz", "ounces": "oz",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l", "milliliter": "ml", "milliliters": "ml",
    "gallon": "gal", "gallons": "gal", "cups": "cup",
    "celsius": "c", "fahrenheit": "f", "kelvin": "k", "°c": "c", "°f": "f",
}  # fmt: skip
UNITS = {**{u: "length" for u in _LENGTH}, **{u: "mass" for u in _MASS}, **{u: "volume" for u in _VOLUME}}
UNITS.update({u: "temperature" for u in _TEMP})


def unit_name(u: Any) -> str:
    key = str(u).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in UNITS:
        raise ValueError(f"unknown unit {u!r}")
    return key


def convert_units(value: float, from_unit: str, to_unit: str) -> int | float:
    """Convert between length, mass, volume or temperature units. Raises ValueError on a bad unit or dimension."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"value must be a number, got {value!r}") from None
    a, b = unit_name(from_unit), unit_name(to_unit)
    if UNITS[a] != UNITS[b]:
        raise ValueError(f"cannot convert {UNITS[a]} ({a}) to {UNITS[b]} ({b})")
    if UNITS[a] == "temperature":
        kelvin = {"c": value + 273.15, "f": (value - 32) * 5 / 9 + 273.15, "k": value}[a]
        out = {"c": kelvin - 273.15, "f": (kelvin - 273.15) * 9 / 5 + 32, "k": kelvin}[b]
    else:
        table = {"length": _LENGTH, "mass": _MASS, "volume": _VOLUME}[UNITS[a]]
        out = value * table[a] / table[b]
    return fmt_num(out)


# ---------------------------------------------------------------- dates
def parse_date(s: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(str(s).strip())
    except ValueError:
        raise ValueError(f"bad date {s!r}, use YYYY-MM-DD") from None


def _int(x: Any, what: str) -> int:
    if isinstance(x, bool):
        raise ValueError(f"{what} must be an integer")
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, int):
        return x
    try:
        return int(str(x).strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {x!r}") from None


# ---------------------------------------------------------------- schemas (short on purpose)
def _schema(name: str, desc: str, props: dict[str, str], required: list[str] | None = None) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": {k: {"type": t} for k, t in props.items()},
                "required": list(props) if required is None else required,
            },
        },
    }


SCHEMAS: dict[str, dict] = {
    s["function"]["name"]: s
    for s in [
        _schema("calculate", "Evaluate an arithmetic expression.", {"expression": "string"}),
        _schema("convert_units", "Convert length, mass, volume or temperature.",
                {"value": "number", "from_unit": "string", "to_unit": "string"}),
        _schema("today", "Today's date.", {}),
        _schema("add_days", "Date plus a number of days.", {"date": "string", "days": "integer"}),
        _schema("days_between", "Days from start to end date.", {"start": "string", "end": "string"}),
        _schema("weekday", "Weekday of a date.", {"date": "string"}),
        _schema("note_save", "Save a note under a key.", {"key": "string", "text": "string"}),
        _schema("note_get", "Read a saved note.", {"key": "string"}),
        _schema("ls", "List files under a folder.", {"path": "string"}),
        _schema("find", "Find a file by its name.", {"name": "string"}),
        _schema("cat", "Read a file.", {"path": "string"}),
        _schema("write", "Write text to a file.", {"path": "string", "text": "string"}),
    ]
}  # fmt: skip
TOOL_NAMES = tuple(SCHEMAS)


def schemas(names: list[str] | tuple[str, ...]) -> list[dict]:
    """The OpenAI-format schemas of `names`, in that order (deep copies, safe to mutate)."""
    return [copy.deepcopy(SCHEMAS[n]) for n in names]


def _norm_path(p: Any) -> str:
    if not isinstance(p, str) or not p.strip():
        raise ValueError("path must be a non-empty string")
    parts = [x for x in p.strip().split("/") if x not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' is not allowed")
    return "/" + "/".join(parts)


class ToolEnv:
    """State + tools. `state` = {"today": "YYYY-MM-DD", "files": {path: text}, "notes": {key: text}}."""

    def __init__(self, state: dict | None = None) -> None:
        state = copy.deepcopy(state or {})
        self.today = parse_date(state.get("today", "2025-01-01"))
        self.files: dict[str, str] = {_norm_path(k): str(v) for k, v in state.get("files", {}).items()}
        self.notes: dict[str, str] = {str(k): str(v) for k, v in state.get("notes", {}).items()}
        self.log: list[tuple[str, dict, str]] = []  # (name, arguments, result) of every call

    def state(self) -> dict:
        return {"today": self.today.isoformat(), "files": dict(self.files), "notes": dict(self.notes)}

    def call(self, name: str, arguments: Any) -> str:
        """Run tool `name` with `arguments` (a dict, or a JSON object string); always returns a JSON string."""
        try:
            if isinstance(arguments, str):
                arguments = json.loads(arguments) if arguments.strip() else {}
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
            if name not in SCHEMAS:
                raise ValueError(f"unknown tool {name!r}")
            spec = SCHEMAS[name]["function"]["parameters"]
            missing = [k for k in spec["required"] if k not in arguments]
            extra = [k for k in arguments if k not in spec["properties"]]
            if missing or extra:
                raise ValueError(f"missing {missing}" if missing else f"unexpected {extra}")
            if any(len(str(v)) > MAX_ARGUMENT_CHARS for v in arguments.values()):
                raise ValueError(f"argument longer than {MAX_ARGUMENT_CHARS} characters")
            out = dumps({"result": getattr(self, "_" + name)(**arguments)})
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            out = dumps({"error": str(e)})
        out = neutralize_control_tokens(out)
        self.log.append((name, arguments if isinstance(arguments, dict) else {}, out))
        return out

    # each tool: keyword arguments exactly as in its schema; raise ValueError for bad input
    def _calculate(self, expression: str) -> int | float:
        return calculate(expression)

    def _convert_units(self, value: float, from_unit: str, to_unit: str) -> int | float:
        return convert_units(value, from_unit, to_unit)

    def _today(self) -> str:
        return self.today.isoformat()

    def _add_days(self, date: str, days: int) -> str:
        n = _int(days, "days")
        if abs(n) > 100_000:
            raise ValueError("days out of range")
        return (parse_date(date) + dt.timedelta(days=n)).isoformat()

    def _days_between(self, start: str, end: str) -> int:
        return (parse_date(end) - parse_date(start)).days

    def _weekday(self, date: str) -> str:
        return WEEKDAYS[parse_date(date).weekday()]

    def _note_save(self, key: str, text: str) -> str:
        self.notes[str(key)] = str(text)
        return "saved"

    def _note_get(self, key: str) -> str:
        if str(key) not in self.notes:
            raise ValueError(f"no note {key!r}; keys: {sorted(self.notes)}")
        return self.notes[str(key)]

    def _ls(self, path: str) -> list[str]:
        p = _norm_path(path)
        prefix = "/" if p == "/" else p + "/"
        out = sorted(f for f in self.files if f.startswith(prefix))
        if not out and p not in self.files:
            raise ValueError(f"no such folder: {p}")
        return out or [p]

    def _find(self, name: str) -> list[str]:
        # the search takes the name and does the lookup, so a model copies a name instead of matching one in an
        # `ls /` listing to the folder written before it (which the 3.4 M default model does not learn: round 16)
        base = str(name).strip().strip("/").rsplit("/", 1)[-1]
        if not base:
            raise ValueError("name must be a non-empty string")
        out = sorted(f for f in self.files if f.rsplit("/", 1)[1] == base)
        if not out:
            raise ValueError(f"no file named {base!r}")
        return out

    def _cat(self, path: str) -> str:
        p = _norm_path(path)
        if p not in self.files:
            raise ValueError(f"no such file: {p}")
        return self.files[p]

    def _write(self, path: str, text: str) -> str:
        p = _norm_path(path)
        if any(f.startswith(p + "/") for f in self.files):
            raise ValueError(f"{p} is a folder")
        self.files[p] = str(text)
        return f"wrote {len(str(text))} chars to {p}"
