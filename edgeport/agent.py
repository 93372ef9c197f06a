"""The agent loop, runtime-agnostic: prompt -> decode a reply -> parse tool calls -> check they were offered ->
execute them for real -> repeat. Chat (edgeport.chat_cli), the server (edgeport.serve) and the eval share it:

- `Reply` decodes one model reply through a `GenerateFn` (a runtime's generate or stream), streaming its text,
  optionally under edgeport.constrain's tool-call constraint and a sampler;
- `apply_reply` is the rest of one agent turn: parse, check offered, execute in a ToolEnv, append the messages;
- `run_episode` / `evaluate` play held-out episodes with them and score the answers.

Each step re-renders the whole history with `chat.render(history, tools, add_generation_prompt=True,
enable_thinking=False)` (or, for an episode in the thinking rendering, with the template's defaults): exactly the
prompts the training examples of `edgeport.data.turn_examples` were built from, so what the model sees here is
token for token what it was trained on.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgeport import chat
from edgeport.data import NO_TOOL_KINDS, Episode, answer_matches, state_matches
from edgeport.sampling import GREEDY, Sampler, suppress_until
from edgeport.tools import ToolEnv, dumps

GenerateFn = Callable[..., Iterable[int]]
"""(prompt ids, max_new_tokens, stop ids[, sampler=edgeport.sampling.Sampler]) -> the new ids (a list, or lazily
as a stream). `runtimes.base.Runtime.generate` is one and `runtime_stream(rt)` streams; a sampler is passed only
when one is needed (sampling, a tool-call constraint), so plain 3-argument functions plug in as well."""

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
    """EOS only: a reply may hold several calls (`<tool_call>..</tool_call>\n<tool_call>..</tool_call>`, one turn
    of parallel calls as the training data has them), and the template ends a call turn with EOS as well."""
    return [tok.eos_id]


def runtime_stream(rt: Any) -> GenerateFn:
    """A runtime's token stream as a GenerateFn (tokens arrive one by one, so replies can be shown as they grow)."""

    def generate(ids: list[int], max_new_tokens: int, stops: Sequence[int], sampler: Sampler = GREEDY):
        return rt.stream(ids, max_new_tokens=max_new_tokens, stop_ids=stops, sampler=sampler)

    return generate


def prompt_ids(tok: Any, history: list[dict], tools: list[dict] | None, thinking: bool = False) -> list[int]:
    """The conversation rendered for the model's next reply (an empty think block unless `thinking`): the
    prompts the training examples of edgeport.data.turn_examples were built from, token for token."""
    text = chat.render(
        history, tools, add_generation_prompt=True, enable_thinking=None if thinking else False
    )
    return tok.encode(text)


class Reply:
    """One model reply, decoded as it is generated: iterate for the text pieces; then `text` (without the EOS),
    `ended` (it ended with EOS: a finished answer), `tokens` (ids generated). Breaking off the iteration stops
    the generation."""

    def __init__(
        self,
        generate: GenerateFn,
        tok: Any,
        prompt: list[int],
        max_new_tokens: int,
        tools: list[dict] | None = None,
        sampler: Sampler | None = None,
        constrain: bool = False,
        tool_choice: str = "auto",
    ) -> None:
        self.tok = tok
        self.text, self.ended, self.tokens = "", False, 0
        self.stops = stop_ids(tok)
        if not tools and tok.token_to_id(chat.TOOL_CALL_START) is None:
            constrain, tool_choice = False, "auto"  # no tools, no call token: nothing to constrain
        if constrain or tool_choice != "auto":
            from edgeport.constrain import ToolCallConstraint

            sampler = sampler or GREEDY
            constraint = ToolCallConstraint(tok, tools or [], tool_choice if tools else "none")
            sampler = replace(sampler, processors=(*sampler.processors, constraint))
        if sampler is not None and sampler.min_new_tokens > 0:
            early = suppress_until(self.stops, sampler.min_new_tokens)
            sampler = replace(sampler, processors=(*sampler.processors, early))
        kw = {} if sampler is None or sampler == GREEDY else {"sampler": sampler}
        self._source = generate(prompt, max_new_tokens, self.stops, **kw)

    def __iter__(self) -> Iterator[str]:
        ids: list[int] = []
        shown = ""
        tokens = iter(self._source)
        try:
            for t in tokens:
                t = int(t)
                self.tokens += 1
                if t == self.tok.eos_id:
                    self.ended = True
                    break
                if t >= 0:  # ids past the vocab decode to nothing
                    ids.append(t)
                text = self.tok.decode(ids)
                if not text.endswith("\ufffd"):  # else hold back a partial UTF-8 character
                    self.text = text
                    if text.startswith(shown) and len(text) > len(shown):
                        yield text[len(shown) :]
                        shown = text
                if t in self.stops:
                    break
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()
        self.text = self.tok.decode(ids)
        if self.text != shown:
            yield self.text[len(shown) :] if self.text.startswith(shown) else "\n" + self.text

    def read(self) -> str:
        """Run to the end; the whole text."""
        for _ in self:
            pass
        return self.text


@dataclass
class ToolStep:
    """What `apply_reply` did with one reply."""

    content: str  # the reply's text before its first <tool_call> (the whole text when there is none)
    calls: list[dict] = field(default_factory=list)  # {"name", "arguments", "result"} in call order
    attempts: int = 0  # <tool_call> blocks opened
    valid: int = 0  # of those, parsed into a name and an arguments object

    @property
    def malformed(self) -> bool:
        """Calls were attempted but none parsed."""
        return self.attempts > 0 and self.valid == 0


def apply_reply(history: list[dict], text: str, offered: Iterable[str], env: ToolEnv | None) -> ToolStep:
    """The agent turn after decoding: parse the reply's tool calls, check each names an offered tool, run it in
    `env` (None: do not run, e.g. a server whose client runs the tools; such calls get result None), and append
    the assistant message plus one tool message per executed or refused call to `history`. A reply whose calls all fail to parse is appended as text."""
    offered = set(offered)
    step = ToolStep(text, attempts=text.count(chat.TOOL_CALL_START))
    calls = chat.parse_tool_calls(text) if step.attempts else []
    step.valid = len(calls)
    if not calls:
        history.append({"role": "assistant", "content": text})
        return step
    step.content = text[: text.index(chat.TOOL_CALL_START)]
    history.append(
        {
            "role": "assistant",
            "content": step.content,
            "tool_calls": [{"type": "function", "function": c} for c in calls],
        }
    )
    for c in calls:
        if c["name"] not in offered:
            result = dumps({"error": f"tool {c['name']!r} was not offered"})
        elif env is None:  # someone else runs it: no result yet
            step.calls.append({**c, "result": None})
            continue
        else:
            result = env.call(c["name"], c["arguments"])
        step.calls.append({**c, "result": result})
        history.append({"role": "tool", "content": result})
    return step


def run_episode(
    generate: GenerateFn,
    tok: Any,
    episode: Episode,
    max_steps: int = 4,
    max_new_tokens: int = 160,
    max_context: int | None = None,
    constrain: bool = False,
    sampler: Sampler | None = None,
) -> EpisodeResult:
    """Play one episode: its first user turn, then each later user turn of the episode (a follow-up) once the
    model has answered the one before, each with up to `max_steps` model calls. Rendered as the episode is
    (`episode.thinking`: the template's default, the model writes its own <think> block). Tool calls are executed
    in a fresh `ToolEnv(env_state)`; only the tools the episode offers run (others get a JSON error, as does any
    bad call). The last answer, without its reasoning, is scored. Garbage output ends the episode as a failure,
    never raises. `constrain`: tool calls decoded under edgeport.constrain."""
    turns = [i for i, m in enumerate(episode.messages) if m.get("role") == "user"]
    if not turns:
        raise ValueError("episode has no user turn")
    history = [dict(m) for m in episode.messages[: turns[0] + 1]]
    env = ToolEnv(episode.env_state)
    res = EpisodeResult(False, "max steps", None, 0, messages=history)
    for k, turn in enumerate(turns):
        if k:
            history.append(dict(episode.messages[turn]))
        res.reason, answered = "max steps", False
        for _ in range(max_steps):
            prompt = prompt_ids(tok, history, episode.tools, episode.thinking)
            if max_context is not None and len(prompt) + max_new_tokens > max_context:
                res.reason = "context"
                break
            reply = Reply(generate, tok, prompt, max_new_tokens, episode.tools, sampler, constrain)
            text = reply.read()
            res.steps += 1
            if chat.TOOL_CALL_START in text:
                step = apply_reply(history, text, episode.tool_names, env)
                res.call_attempts += step.attempts
                res.valid_calls += step.valid
                res.calls += step.calls
                if step.malformed:
                    history.pop()
                    res.reason = "invalid tool call"
                    break
                continue
            res.final = chat.strip_reasoning(text)
            if not reply.ended:
                res.reason = "no final answer"  # no <|end_of_text|>: out of tokens
                break
            history.append({"role": "assistant", "content": text})
            answered = True
            break
        if not answered:
            return res
    res.success = check_answer(episode, res.final or "", env, n_calls=len(res.calls))
    res.reason = "ok" if res.success else "wrong answer"
    return res


def check_answer(episode: Episode, final: str, env: ToolEnv, n_calls: int) -> bool:
    """Tool tasks: the final text holds the expected answer and the env holds `expect_state`.
    Chit-chat (answer None): a non-empty answer that is not a refusal (round 19: "Hey, what's up?" answered "I
    can't do things in the physical world" had counted as a success). Kinds solved without tools (no tool needed,
    no tool can serve): no tool call at all."""
    if any(s in final for s in chat.SPECIAL_TOKENS):
        return False  # control tokens inside an answer are garbage
    if episode.kind in NO_TOOL_KINDS and n_calls:
        return False
    if episode.answer is None:
        return bool(final.strip()) and n_calls == 0 and not answer_matches(final, "can't")
    return answer_matches(final, episode.answer) and state_matches(env, episode.expect_state)


def reference_calls(episode: Episode) -> list[dict]:
    """The episode's reference tool calls ({"name", "arguments"}) in order, over all its turns."""
    return [tc["function"] for m in episode.messages for tc in m.get("tool_calls") or []]


def failure_mode(episode: Episode, res: EpisodeResult) -> str | None:
    """Where a failed episode first left its reference trajectory (None when it succeeded): "called a tool" (a
    kind that needs none), "no tool call", "wrong tool", "wrong arguments" (right tool, other arguments),
    "too few calls" (every call right but some missing), or "answer" (the calls were the reference's, or none were
    needed, and the final text or state was wrong). Unparsable output, running out of steps or context keep
    their `reason`."""
    if res.success:
        return None
    if res.reason != "wrong answer":
        return res.reason
    if episode.kind in NO_TOOL_KINDS:
        return "called a tool" if res.calls else "answer"
    if not res.calls:
        return "no tool call"
    ref = reference_calls(episode)
    for want, got in zip(ref, res.calls, strict=False):
        if got["name"] != want["name"]:
            return "wrong tool"
        if got["arguments"] != want["arguments"]:
            return "wrong arguments"
    return "too few calls" if len(res.calls) < len(ref) else "answer"


def evaluate(
    generate: GenerateFn,
    tok: Any,
    episodes: Sequence[Episode],
    max_steps: int = 4,
    max_new_tokens: int = 160,
    max_context: int | None = None,
    progress: bool = False,
    constrain: bool = False,
    sampler: Sampler | None = None,
    records: list[dict] | None = None,
) -> dict[str, Any]:
    """Run every episode; return rates and counts (plain JSON-able numbers).

    success_rate: episodes solved (by_kind: per kind; by_rendering: thinking or not; heldout_phrasing: episodes
    phrased with families never seen in training). tool_call_rate: tool episodes in which the model made >= 1
    well-formed call.
    valid_json_rate: well-formed calls / `<tool_call>` blocks opened (None if none were opened).
    first_tool_match: tool episodes whose first call names the reference's first tool.
    failure_modes: failed episodes by where they first left the reference (failure_mode).
    baseline_echo: see CHANCE_NOTE. constrain: tool calls decoded under edgeport.constrain (off: the raw model).
    records: when given, one `episode_record` per episode is appended (what a failure looked like).
    """
    it: Any = episodes
    if progress:
        from tqdm import tqdm

        it = tqdm(episodes, desc="agent eval", unit="episode")
    results = [
        run_episode(generate, tok, ep, max_steps, max_new_tokens, max_context, constrain, sampler)
        for ep in it
    ]
    if records is not None:
        records.extend(episode_record(ep, r) for ep, r in zip(episodes, results, strict=True))
    n = len(results)
    tool_eps = [(ep, r) for ep, r in zip(episodes, results, strict=True) if ep.kind not in NO_TOOL_KINDS]
    attempts = sum(r.call_attempts for r in results)
    by_kind: dict[str, list[bool]] = collections.defaultdict(list)
    by_rendering: dict[str, list[bool]] = collections.defaultdict(list)
    for ep, r in zip(episodes, results, strict=True):
        by_kind[ep.kind].append(r.success)
        by_rendering["thinking" if ep.thinking else "no thinking"].append(r.success)
    held = [r.success for ep, r in zip(episodes, results, strict=True) if ep.heldout]

    def first_tool(ep: Episode) -> str | None:
        return next((c["name"] for c in reference_calls(ep)), None)

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
        "by_rendering": {k: _rate(sum(v), len(v)) for k, v in sorted(by_rendering.items())},
        "heldout_phrasing": _rate(sum(held), len(held)),
        "reasons": dict(collections.Counter(r.reason for r in results)),
        "failure_modes": dict(
            collections.Counter(
                m for ep, r in zip(episodes, results, strict=True) if (m := failure_mode(ep, r))
            )
        ),
        "baseline_echo": echo_baseline(episodes),
        "chance": CHANCE_NOTE,
    }


def episode_record(episode: Episode, res: EpisodeResult) -> dict[str, Any]:
    """One played episode as plain JSON: the request turns, the reference calls, what the model called and
    answered, and where it first left the reference (`failure_mode`)."""
    return {
        "template": episode.template,
        "kind": episode.kind,
        "heldout": episode.heldout,
        "thinking": episode.thinking,
        "user": [m["content"] for m in episode.messages if m.get("role") == "user"],
        "reference": reference_calls(episode),
        "calls": res.calls,
        "final": res.final,
        "success": res.success,
        "reason": res.reason,
        "failure_mode": failure_mode(episode, res),
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
