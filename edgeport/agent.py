"""The agent loop, runtime-agnostic: prompt -> generate -> parse tool calls -> execute them for real -> repeat.

Any runtime plugs in through a `GenerateFn` (prompt ids, max_new_tokens, stop ids) -> new ids including the stop
token, the signature of `runtimes.base.Runtime.generate` and `edgeport.model.YoutuForCausalLM.generate`.

Each step re-renders the whole history with `chat.render(history, tools, add_generation_prompt=True,
enable_thinking=False)`: exactly the prompts the training examples of `edgeport.data.turn_examples` were built
from, so what the model sees here is token for token what it was trained on.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeport import chat
from edgeport.data import Episode, answer_matches, state_matches
from edgeport.tools import ToolEnv, dumps

GenerateFn = Callable[[list[int], int, Sequence[int]], list[int]]

CHANCE_NOTE = (
    "Random output scores ~0: success needs a parsed tool call executed in the env and a final answer (ended by "
    "<|end_of_text|>) that contains the tool's result. baseline_echo is the success rate of answering every task "
    "with the user's own words and no tool call (numbers already in the question, and chit-chat turns where any "
    "non-empty answer without a tool call counts); a trained model should beat it by a wide margin."
)


@dataclass
class EpisodeResult:
    success: bool
    reason: str  # "ok" | "wrong answer" | "no final answer" | "invalid tool call" | "max steps" | "context"
    final: str | None  # the final answer text (None when there was none)
    steps: int  # model calls made
    calls: list[dict] = field(default_factory=list)  # executed: {"name", "arguments", "result"}
    call_attempts: int = 0  # <tool_call> blocks the model opened
    valid_calls: int = 0  # of those, well-formed JSON with a name and an arguments object
    messages: list[dict] = field(default_factory=list)  # the conversation as it happened


def stop_ids(tok: Any) -> list[int]:
    """EOS, plus `</tool_call>` when the tokenizer has it as one token (the loop then stops right after a call)."""
    ids = [tok.eos_id]
    end = tok.token_to_id(chat.TOOL_CALL_END)
    if end is not None:
        ids.append(end)
    return ids


def _first_user_turn(messages: list[dict]) -> list[dict]:
    for i, m in enumerate(messages):
        if m.get("role") == "user":
            return [dict(x) for x in messages[: i + 1]]
    raise ValueError("episode has no user turn")


def run_episode(
    generate: GenerateFn,
    tok: Any,
    episode: Episode,
    max_steps: int = 4,
    max_new_tokens: int = 96,
    max_context: int | None = None,
) -> EpisodeResult:
    """Play one episode from its first user turn. Tool calls are executed in a fresh `ToolEnv(env_state)`;
    only the tools the episode offers run (others get a JSON error, as does any bad call). Garbage output
    ends the episode as a failure, never raises."""
    history = _first_user_turn(episode.messages)
    env = ToolEnv(episode.env_state)
    offered = set(episode.tool_names)
    stops = stop_ids(tok)
    res = EpisodeResult(False, "max steps", None, 0, messages=history)
    for _ in range(max_steps):
        prompt = tok.encode(
            chat.render(history, episode.tools, add_generation_prompt=True, enable_thinking=False)
        )
        if max_context is not None and len(prompt) + max_new_tokens > max_context:
            res.reason = "context"
            break
        new = [int(t) for t in generate(prompt, max_new_tokens, stops)]
        res.steps += 1
        ended = bool(new) and new[-1] == tok.eos_id
        text = tok.decode([t for t in new if t >= 0])  # ids past the vocab decode to nothing
        if text.endswith(chat.EOS):
            text = text[: -len(chat.EOS)]
        if chat.TOOL_CALL_START in text:
            res.call_attempts += text.count(chat.TOOL_CALL_START)
            calls = chat.parse_tool_calls(text)
            res.valid_calls += len(calls)
            if not calls:
                res.reason = "invalid tool call"
                break
            content = text[: text.index(chat.TOOL_CALL_START)]
            history.append(
                {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": [{"type": "function", "function": c} for c in calls],
                }
            )
            for c in calls:
                if c["name"] in offered:
                    result = env.call(c["name"], c["arguments"])
                else:
                    result = dumps({"error": f"unknown tool {c['name']!r}"})
                res.calls.append({**c, "result": result})
                history.append({"role": "tool", "content": result})
            continue
        res.final = text.strip()
        if not ended:
            res.reason = "no final answer"  # no <|end_of_text|>: out of tokens, or a stray </tool_call>
            break
        history.append({"role": "assistant", "content": text})
        res.success = check_answer(episode, res.final, env, n_calls=len(res.calls))
        res.reason = "ok" if res.success else "wrong answer"
        break
    return res


def check_answer(episode: Episode, final: str, env: ToolEnv, n_calls: int) -> bool:
    """Tool tasks: the final text holds the expected answer and the env holds `expect_state`.
    Chit-chat (answer None): a non-empty answer with no tool call."""
    if any(s in final for s in chat.SPECIAL_TOKENS):
        return False  # control tokens inside an answer are garbage
    if episode.answer is None:
        return bool(final.strip()) and n_calls == 0
    return answer_matches(final, episode.answer) and state_matches(env, episode.expect_state)


def evaluate(
    generate: GenerateFn,
    tok: Any,
    episodes: Sequence[Episode],
    max_steps: int = 4,
    max_new_tokens: int = 96,
    max_context: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every episode; return rates and counts (plain JSON-able numbers).

    success_rate: episodes solved. tool_call_rate: tool episodes in which the model made >= 1 well-formed call.
    valid_json_rate: well-formed calls / `<tool_call>` blocks opened (None if none were opened).
    first_tool_match: tool episodes whose first call names the reference's first tool.
    baseline_echo: see CHANCE_NOTE.
    """
    it: Any = episodes
    if progress:
        from tqdm import tqdm

        it = tqdm(episodes, desc="agent eval", unit="episode")
    results = [run_episode(generate, tok, ep, max_steps, max_new_tokens, max_context) for ep in it]
    n = len(results)
    tool_eps = [(ep, r) for ep, r in zip(episodes, results, strict=True) if ep.answer is not None]
    attempts = sum(r.call_attempts for r in results)
    by_kind: dict[str, list[bool]] = collections.defaultdict(list)
    for ep, r in zip(episodes, results, strict=True):
        by_kind[ep.kind].append(r.success)

    def first_tool(ep: Episode) -> str | None:
        return next((tc["function"]["name"] for m in ep.messages for tc in m.get("tool_calls") or []), None)

    return {
        "n": n,
        "success_rate": _rate(sum(r.success for r in results), n),
        "tool_call_rate": _rate(sum(r.valid_calls > 0 for _, r in tool_eps), len(tool_eps)),
        "valid_json_rate": _rate(sum(r.valid_calls for r in results), attempts) if attempts else None,
        "first_tool_match": _rate(
            sum(bool(r.calls) and r.calls[0]["name"] == first_tool(ep) for ep, r in tool_eps), len(tool_eps)
        ),
        "call_attempts": attempts,
        "by_kind": {k: _rate(sum(v), len(v)) for k, v in sorted(by_kind.items())},
        "reasons": dict(collections.Counter(r.reason for r in results)),
        "baseline_echo": echo_baseline(episodes),
        "chance": CHANCE_NOTE,
    }


def echo_baseline(episodes: Sequence[Episode]) -> float:
    """Success rate of answering each task with the task text itself, calling no tool."""
    ok = sum(check_answer(ep, ep.task, ToolEnv(ep.env_state), n_calls=0) for ep in episodes)
    return _rate(ok, len(episodes))


def _rate(k: int, n: int) -> float:
    return round(k / n, 4) if n else 0.0


def reference_generate(tok: Any, episodes: Sequence[Episode]) -> GenerateFn:
    """An "oracle" GenerateFn that replays the reference assistant turns, token by token, for prompts that are
    exactly the training prompts of `episodes` (and emits EOS for any other prompt). Used to prove the loop
    end to end: it only succeeds if the agent's prompts, tool execution and results match the transcripts."""
    from edgeport.data import turn_examples

    table: dict[tuple[int, ...], list[int]] = {}
    for ep in episodes:
        for prompt, target in turn_examples(ep.messages, ep.tools):
            table[tuple(tok.encode(prompt))] = tok.encode(target)

    def generate(ids: list[int], max_new_tokens: int, stop: Sequence[int] = ()) -> list[int]:
        out: list[int] = []
        for t in table.get(tuple(ids), [tok.eos_id]):
            if len(out) == max_new_tokens:
                break
            out.append(t)
            if t in stop:
                break
        return out

    return generate


def dump_results(results: Sequence[EpisodeResult]) -> str:
    """JSON lines of episode results (for inspection)."""
    return "\n".join(json.dumps(r.__dict__, ensure_ascii=False) for r in results)
