"""Training datasets: chat examples (one render per conversation), tokenize + mask, packing, the stage mixture,
text sources.

Train/inference consistency (the chat template's rules in edgeport/chat.py)
    The agent prompts with `chat.render(history, tools, add_generation_prompt=True, enable_thinking=...)` and
    re-renders the whole history at every step. A conversation is trained as one render of all its messages with
    a target on every assistant turn (`_one_render`, which says where that render differs from the agent's
    prompts and how the mask handles it). `turn_examples` gives each assistant turn's exact generation prompt and
    target (the tests check the render against them).

Packing
    `pack(examples, seq_len, eos_id)` -> `input_ids` int64 [N, seq_len + 1], `loss_mask` bool [N, seq_len + 1].
    The trainer uses `x = input_ids[:, :-1]`, `y = input_ids[:, 1:]` and averages the loss over
    `loss_mask[:, 1:]` (mask[t] says "token t is a target"). Padding is `eos_id` with mask False.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from edgeport.data.episodes import Episode
from edgeport.errors import EdgeportError


# ================================================================= chat examples (one per assistant turn)
def _messages_tools(item: Any) -> tuple[list[dict], list[dict] | None]:
    if isinstance(item, Episode):
        return item.messages, item.tools
    if isinstance(item, dict) and "messages" in item:
        return item["messages"], item.get("tools")
    if isinstance(item, list):
        return item, None
    raise EdgeportError(
        f"expected an Episode, {{'messages': [...]}} or a message list, got {type(item).__name__}"
    )


def _check_turn_order(messages: list[dict]) -> None:
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "assistant":
            prev = messages[i - 1].get("role") if i > 0 and isinstance(messages[i - 1], dict) else None
            if prev not in ("user", "tool"):
                raise EdgeportError(f"chat message {i}: an assistant turn must follow a user or tool turn")


def turn_examples(messages: list[dict], tools: list[dict] | None = None) -> list[tuple[str, str]]:
    """(prompt, target) text per assistant turn: `prompt` is exactly what the agent renders before generating
    (`add_generation_prompt=True, enable_thinking=False`), `target` what the model must emit (content and tool
    calls + `<|end_of_text|>`). Asserts `render(history + [turn]) == prompt + target`."""
    from edgeport import chat

    _check_turn_order(messages)
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") != "assistant":
            continue
        full = chat.render(messages[: i + 1], tools)
        prompt = chat.render(messages[:i], tools, add_generation_prompt=True, enable_thinking=False)
        if not full.startswith(prompt):  # the turn carries its own <think>...</think>: thinking-mode prompt
            prompt = chat.render(messages[:i], tools, add_generation_prompt=True)
        if not full.startswith(prompt):
            raise AssertionError(f"chat message {i}: the rendered turn does not extend its generation prompt")
        out.append((prompt, full[len(prompt) :]))
    return out


def episode_text(item: Any) -> str:
    """The whole conversation rendered as one string (e.g. for training a tokenizer)."""
    from edgeport import chat

    return chat.render(*_messages_tools(item))


# ================================================================= tokenize + mask + pack
Example = tuple[list[int], list[bool]]


def encode_example(tok: Any, item: Any, mode: str = "text") -> Example:
    """(ids, loss_mask) of one example; mask[t] says token t is a training target.

    mode "text": `item` is a string -> [BOS] + ids + [EOS], loss on everything after BOS.
    mode "sft" / "trajectory": `item` is an Episode, {"messages", "tools"?} or a message list -> the whole
    conversation in one render (`_one_render`); loss only on the assistant tokens.
    """
    if mode == "text":
        if not isinstance(item, str):
            raise EdgeportError(f"mode 'text' needs a string, got {type(item).__name__}")
        ids = [tok.bos_id, *tok.encode(item), tok.eos_id]
        return ids, [False] + [True] * (len(ids) - 1)
    if mode not in ("sft", "trajectory"):
        raise EdgeportError(f"mode must be 'text', 'sft' or 'trajectory', got {mode!r}")
    return _one_render(tok, *_messages_tools(item))[1]


def prompted_turns(messages: list[dict], share: float, rng: random.Random) -> list[dict]:
    """Non-thinking conversations: each earlier assistant turn, with probability `share`, carries the empty think
    block that the agent's `enable_thinking=False` generation prompt supplies (`_one_render` makes it context,
    not a target). The template renders earlier turns without it, so in one render a tool-call turn never follows
    the context the agent generates it in (the build without it: 17% success without thinking, 47% with); unlike
    `exact_turns` this costs no extra tokens, and the history form stays in the data for the other turns. The
    recipe's 0.7 (with `sessions`): 37% without thinking, 44% with, 40.0% overall."""
    from edgeport import chat

    asst = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
    if share <= 0 or any(chat.THINK_START in (messages[i].get("content") or "") for i in asst):
        return messages
    out = list(messages)
    for i in asst[:-1]:
        if rng.random() < share:
            out[i] = {**out[i], "content": chat.EMPTY_THINK + (out[i].get("content") or "")}
    return out


def sessions(tok: Any, episodes: Sequence[Any], max_tokens: int, rng: random.Random) -> list[Any]:
    """Episodes that offer every tool, chained into conversations of up to `max_tokens` tokens (one tool block,
    then one task after another, each rendering kept), the others as they are.

    With every tool offered the tool block is ~750 tokens of a ~900-token episode, and only the assistant
    tokens are targets: one block followed by several tasks makes 12.1% of a 1,024-token row targets instead of
    8.9% (2,000 training episodes). The tool block's length is counted once per group (tool order moves it by a
    token or so), so a session can overshoot `max_tokens` by that much; `pack` then cuts it.
    It is also how a chat session looks (edgeport chat keeps the history); every session's first task is a
    fresh conversation, as edgeport eval plays them. Thinking and non-thinking episodes are not mixed."""
    from edgeport.tools import TOOL_NAMES

    def n_tokens(messages: list[dict], tools: list[dict] | None) -> int:
        return len(tok.encode(episode_text({"messages": messages, "tools": tools})))

    out: list[Any] = []
    groups: dict[bool, list[Any]] = {True: [], False: []}
    for e in episodes:
        full = isinstance(e, Episode) and sorted(e.tool_names) == sorted(TOOL_NAMES)
        (groups[e.thinking] if full else out).append(e)
    for group in groups.values():
        block = None
        cur: dict | None = None
        used = 0
        for e in group:
            if cur is not None:
                block = block or n_tokens([], cur["tools"])
                extra = n_tokens(e.messages, e.tools) - block
                if used + extra <= max_tokens:
                    cur["messages"] = cur["messages"] + e.messages
                    used += extra
                    continue
                out.append(cur)
            cur = {"messages": list(e.messages), "tools": e.tools}
            used = n_tokens(e.messages, e.tools)
        if cur is not None:
            out.append(cur)
    rng.shuffle(out)
    return out


def episode_examples(tok: Any, item: Any, exact_turns: bool = True) -> list[Example]:
    """The training examples of one conversation: its one render (`_one_render`), plus (exact_turns) one exact
    (generation prompt, target) example for each turn the render shows only in history form. Without those, a
    non-thinking episode shows the agent's exact context (`<|Assistant|><think>\n\n</think>\n\n`) only before
    its final answer, and a model trained on it answers after the empty think block instead of calling a tool
    (17% success without thinking, 47% with). With them, at the same budget (issue 10's second build): 26%
    without thinking, 30% with, 27.6% overall against 30.5%, the extra rows costing the other updates; the
    recipe uses `prompted_turns` instead, which reaches the same context at no extra tokens."""
    messages, tools = _messages_tools(item)
    rendered, example = _one_render(tok, messages, tools)
    out = [example]
    for prompt, target in turn_examples(messages, tools) if exact_turns else []:
        if not rendered.startswith(prompt + target):
            p, t = tok.encode(prompt), tok.encode(target)
            out.append((p + t, [False] * len(p) + [True] * len(t)))
    return out


def _with_prompted_turns(item: Any, share: float, rng: random.Random) -> Any:
    if share <= 0:
        return item
    messages, tools = _messages_tools(item)
    return {"messages": prompted_turns(messages, share, rng), "tools": tools}


def _one_render(tok: Any, messages: list[dict], tools: list[dict] | None) -> tuple[str, Example]:
    """The rendered text and (ids, loss_mask) of a whole conversation in one render, a target on every assistant
    turn.

    One render instead of one example per turn: the tool block (~750 tokens with every tool offered) is then
    processed once per episode, not once per assistant turn (on edgeport eval's episodes: 865 tokens instead
    of 1,965 for the same targets). The render
    holds each turn in the context the agent sees it, with one exception, handled here:
    - the last turn of a non-thinking episode starts with the empty think block that the enable_thinking=False
      generation prompt supplies: not a target;
    - a turn that shows its reasoning (thinking episodes: the template keeps it once tools are used) follows
      exactly the default generation prompt (`<|Assistant|>`): all targets;
    - an earlier turn in history form (no think block: non-thinking episodes) follows `<|Assistant|>` where the
      agent's prompt had `<|Assistant|><think>\n\n</think>\n\n`: its first token is not a target, so the model
      does not learn to skip thinking after a bare `<|Assistant|>`; the rest of the turn is.
    """
    from edgeport import chat

    _check_turn_order(messages)
    text, spans = chat.render_with_spans(messages, tools)
    enc = tok.hf.encode(text, add_special_tokens=False)
    ids = list(enc.ids)
    starts = [a for a, _ in enc.offsets]
    mask = [False] * len(ids)
    j = 0
    for s, e in spans:
        skip_first = False
        if text.startswith(chat.EMPTY_THINK, s):
            s += len(chat.EMPTY_THINK)
        elif not text.startswith(chat.THINK_START, s):
            skip_first = True
        while j < len(ids) and starts[j] < s:
            j += 1
        first = True
        while j < len(ids) and starts[j] < e:
            mask[j] = not (first and skip_first)
            first = False
            j += 1
    return text, (ids, mask)


def pack(
    examples: Iterable[Example], seq_len: int, eos_id: int, window: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-length rows of seq_len + 1 tokens: (input_ids int64 [N, seq_len+1], loss_mask bool [N, seq_len+1]).

    An example that fits in a row is placed whole, first-fit into the `window` most recent open rows, so no
    target loses its prompt; a longer example is cut into row-sized pieces. Rows are padded with
    `eos_id` (mask False). Deterministic: same input, same rows.
    """
    if seq_len < 1:
        raise EdgeportError(f"seq_len must be >= 1, got {seq_len}")
    row = seq_len + 1
    done: list[tuple[list[int], list[bool]]] = []
    open_rows: list[tuple[list[int], list[bool]]] = []

    def place(ids: list[int], mask: list[bool]) -> None:
        for r in open_rows:
            if len(r[0]) + len(ids) <= row:
                r[0].extend(ids)
                r[1].extend(mask)
                break
        else:
            open_rows.append((ids, mask))
        for r in [r for r in open_rows if len(r[0]) == row]:
            open_rows.remove(r)
            done.append(r)
        while len(open_rows) > window:
            done.append(open_rows.pop(0))

    for ex_ids, ex_mask in examples:
        if len(ex_ids) != len(ex_mask):
            raise ValueError(f"ids and mask lengths differ ({len(ex_ids)} vs {len(ex_mask)})")
        ex_ids, ex_mask = [int(t) for t in ex_ids], [bool(k) for k in ex_mask]
        for c in range(0, len(ex_ids), row):  # one piece unless the example is longer than a row
            place(ex_ids[c : c + row], ex_mask[c : c + row])
    done.extend(open_rows)
    if not done:
        return torch.zeros((0, row), dtype=torch.int64), torch.zeros((0, row), dtype=torch.bool)
    ids_rows = [i + [eos_id] * (row - len(i)) for i, _ in done]
    mask_rows = [m + [False] * (row - len(m)) for _, m in done]
    return torch.tensor(ids_rows, dtype=torch.int64), torch.tensor(mask_rows, dtype=torch.bool)


def mixture(
    tok: Any,
    texts: Sequence[str],
    episodes: Sequence[Any],
    seq_len: int,
    seed: int = 0,
    text_fraction: float = 0.5,
    exact_turns: bool = False,
    prompted: float = 0.0,
    session: bool = False,
    sft_text: float = 0.0,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three stage datasets, each `pack` output (input_ids [N, seq_len+1] int64, loss_mask bool):

    - "pretrain": all `texts`, loss on every token;
    - "midtrain": all trajectory turns of `episodes` (loss on assistant targets) mixed with text chunks so that
      text is about `text_fraction` of the tokens;
    - "sft": trajectories, loss on assistant targets, plus text chunks making `sft_text` of the tokens (0: none;
      a little text keeps the text distribution sharp, which the int4 artifacts' text-logit gate needs).
    `episodes` may hold Episodes or {"messages", "tools"?} dicts (e.g. from `load_text_file`). Examples are
    shuffled with `seed` before packing; the text (documents in shuffled order) is one stream cut into rows.
    exact_turns: see episode_examples; prompted: see prompted_turns; session: chain the episodes that offer
    every tool into conversations of up to a row (`sessions`).
    """
    rng = random.Random(seed)
    docs = [encode_example(tok, t, "text") for t in texts if t.strip()]
    rng.shuffle(docs)
    stream_i = [t for ids, _ in docs for t in ids]
    stream_m = [k for _, mk in docs for k in mk]
    row = seq_len + 1  # the text stream cut into full rows: no padding, and each chunk fills one row
    pre = [(stream_i[i : i + row], stream_m[i : i + row]) for i in range(0, len(stream_i), row)]
    if session:
        episodes = sessions(tok, episodes, seq_len + 1, random.Random(seed + 1))
    turn_rng = random.Random(seed + 2)
    traj_ex = [
        ex
        for e in episodes
        for ex in episode_examples(tok, _with_prompted_turns(e, prompted, turn_rng), exact_turns)
    ]
    n_traj = sum(len(i) for i, _ in traj_ex)

    def text_share(frac: float) -> list[tuple[list[int], list[bool]]]:
        want, out, n = int(n_traj * frac / max(1e-9, 1 - frac)), [], 0
        for ex in pre:
            if n >= want:
                break
            out.append(ex)
            n += len(ex[0])
        return out

    mid = traj_ex + text_share(text_fraction)
    rng.shuffle(mid)
    sft = traj_ex + text_share(sft_text)
    rng.shuffle(sft)
    return {
        "pretrain": pack(pre, seq_len, tok.eos_id),
        "midtrain": pack(mid, seq_len, tok.eos_id),
        "sft": pack(sft, seq_len, tok.eos_id),
    }


# ================================================================= text sources
def builtin_text(split: str = "train", doc_chars: int = 2000) -> list[str]:
    """Python's own documentation topics (`pydoc_data.topics`, ~465 KB, stdlib, nothing to install), long
    paragraphs repeated across topics dropped, cut at paragraph boundaries into documents of about `doc_chars` characters. Deterministic split: every 10th
    document (topics in sorted order) is "heldout" (~10% of the text), the rest "train"."""
    from pydoc_data.topics import topics

    if split in ("val", "eval"):
        split = "heldout"
    if split not in ("train", "heldout"):
        raise EdgeportError(f"split must be 'train' or 'heldout', got {split!r}")
    docs: list[str] = []
    seen: set[str] = set()  # several topics repeat whole sections: keep the first copy only (no leakage)
    for key in sorted(topics):
        cur: list[str] = []
        for para in re.split(r"\n\s*\n", topics[key].strip()):
            if len(para) >= 80 and para in seen:
                continue
            seen.add(para)
            cur.append(para)
            if sum(map(len, cur)) >= doc_chars:
                docs.append("\n\n".join(cur))
                cur = []
        if cur:
            docs.append("\n\n".join(cur))
    return [d for i, d in enumerate(docs) if (i % 10 == 9) == (split == "heldout")]


def heldout_ids(tok: Any, n: int) -> list[int]:
    """The first n ids of the built-in held-out text under a `tokenizers.Tokenizer` (repeated if shorter)."""
    ids = tok.encode("\n\n".join(builtin_text("heldout")), add_special_tokens=False).ids
    if not ids:
        raise EdgeportError("the built-in held-out text tokenizes to nothing")
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def load_text_file(path: str | Path) -> list[Any]:
    """User data. `.txt`: plain text split on blank lines -> list[str]. `.jsonl`: one object a line, either
    {"text": str} -> str, or {"messages": [...], "tools"?: [...]} -> that dict. Bad input raises an
    EdgeportError naming file:line."""
    from edgeport import chat

    path = Path(path)
    if not path.is_file():
        raise EdgeportError("file not found", path)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EdgeportError(f"not UTF-8 text (byte {e.start})", path) from None
    if path.suffix == ".txt":
        return [p.strip() for p in re.split(r"\n\s*\n", raw) if p.strip()]
    if path.suffix != ".jsonl":
        raise EdgeportError("unsupported data file type (use .txt or .jsonl)", path)
    out: list[Any] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise EdgeportError(f"bad JSON ({e.msg} at column {e.colno})", where) from None
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            out.append(obj["text"])
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"]:
            tools = obj.get("tools")
            if tools is not None and not (
                isinstance(tools, list) and all(isinstance(t, dict) for t in tools)
            ):
                raise EdgeportError("'tools' must be a list of objects", where)
            if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in obj["messages"]):
                raise EdgeportError("'messages' has no assistant turn to train on", where)
            try:
                chat.render(obj["messages"], tools)
                turn_examples(obj["messages"], tools)
            except EdgeportError as e:
                raise EdgeportError(str(e), where) from None
            out.append({"messages": obj["messages"], "tools": tools})
        else:
            raise EdgeportError('expected {"text": "..."} or {"messages": [...]} on each line', where)
    return out
