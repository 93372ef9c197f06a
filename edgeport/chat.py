"""The Youtu-LLM chat format: control tokens, the Jinja chat template, and the same rules in plain Python.

`render` is the tested ground truth; `CHAT_TEMPLATE` (stored in tokenizer_config.json and in the GGUF) must give
byte-identical text in transformers' apply_chat_template, llama-cpp-python's Jinja2 formatter and plain jinja2.
Rules (the chat_template in tencent/Youtu-LLM-2B's tokenizer_config.json): BOS,
 then all system messages joined by a blank line, then the tool block;
`<|User|>` + content; `<|Assistant|>` + content + tool calls + `<|end_of_text|>`; a run of tool messages becomes
one user turn of `<tool_response>` blocks; earlier assistant turns lose their reasoning (text up to `</think>`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgeport.errors import EdgeportError

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
USER = "<|User|>"
ASSISTANT = "<|Assistant|>"
THINK_START, THINK_END = "<think>", "</think>"
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_START, TOOL_RESPONSE_END = "<tool_response>", "</tool_response>"
TOOL_DESC_START, TOOL_DESC_END = "<|begin_of_tool_description|>", "<|end_of_tool_description|>"
# Added to the vocabulary but not special, as in other tool-calling models' tokenizers (Qwen's <tool_call>, <think>):
# single ids that stay in decoded text (skip_special_tokens keeps them) and are USER_DEFINED rather than CONTROL in
# the GGUF, so a client or an OpenAI-style server sees the call and the reasoning and can parse them.
TEXT_MARKERS: list[str] = [
    THINK_START,
    THINK_END,
    TOOL_CALL_START,
    TOOL_CALL_END,
    TOOL_RESPONSE_START,
    TOOL_RESPONSE_END,
]
# The order gives a trained tokenizer's ids: keep it.
SPECIAL_TOKENS: list[str] = [BOS, EOS, USER, ASSISTANT, *TEXT_MARKERS, TOOL_DESC_START, TOOL_DESC_END]

EMPTY_THINK = "<think>\n\n</think>\n\n"
TOOLS_HEADER = (
    "<|begin_of_tool_description|>Tool calling capabilities.\nYou may call one or more functions to assist "
    "with the user query. You have the following functions available:"
)
TOOLS_FOOTER = (
    '\nFor tool call returns, you MUST use the following format:\n<tool_call>{"name": "function-name", '
    '"arguments": {"param1": "value1", "param2": "value2"}}</tool_call>\n<|end_of_tool_description|>'
)


def _jinja_str(s: str) -> str:
    """A Python string as a single-quoted Jinja string literal (no real newlines in the template)."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


# The template source is written one tag per line for reading; the newlines and indentation are removed below, so
# the stored template is one line and renders the same whatever trim_blocks / lstrip_blocks say. Literal text only
# appears inside {{ '...' }}. `tojson` must equal json.dumps(x, ensure_ascii=False) (transformers and
# llama-cpp-python override it that way); plain jinja2's tojson sorts keys and escapes HTML, so the template probes
# it once and falls back to the small recursive `ep_json` macro there.
_TEMPLATE_SRC = r"""
{%- macro ep_json(x) -%}
  {%- if x is none -%}{{- 'null' -}}
  {%- elif x is true -%}{{- 'true' -}}
  {%- elif x is false -%}{{- 'false' -}}
  {%- elif x is string -%}
    {{- '"' + x|replace('\\', '\\\\')|replace('"', '\\"')|replace('\n', '\\n')|replace('\r', '\\r')|replace('\t', '\\t')|replace('\b', '\\b')|replace('\f', '\\f') + '"' -}}
  {%- elif x is mapping -%}
    {{- '{' -}}
    {%- for k, v in x.items() -%}
      {%- if not loop.first -%}{{- ', ' -}}{%- endif -%}
      {{- ep_json(k|string) + ': ' + ep_json(v) -}}
    {%- endfor -%}
    {{- '}' -}}
  {%- elif x is iterable -%}
    {{- '[' -}}
    {%- for v in x -%}
      {%- if not loop.first -%}{{- ', ' -}}{%- endif -%}
      {{- ep_json(v) -}}
    {%- endfor -%}
    {{- ']' -}}
  {%- else -%}{{- x|string -}}
  {%- endif -%}
{%- endmacro -%}
{%- set ep = namespace(native=(({'b': 1, 'a': 'é<'}|tojson) == '{"b": 1, "a": "é<"}'), system='', n_system=0, first_tool=messages|length, found_tool=false, open_turn=false, first_response=true) -%}
{%- for m in messages -%}
  {%- if m['role'] == 'system' -%}
    {%- if ep.n_system > 0 -%}{%- set ep.system = ep.system + '\n\n' -%}{%- endif -%}
    {%- set ep.system = ep.system + (m['content'] if m['content'] is string else '') -%}
    {%- set ep.n_system = ep.n_system + 1 -%}
  {%- endif -%}
  {%- if not ep.found_tool and (m['role'] == 'tool' or (m['role'] == 'user' and m['content'] is string and m['content'].startswith('<tool_response>') and m['content'].endswith('</tool_response>'))) -%}
    {%- set ep.found_tool = true -%}
    {%- set ep.first_tool = loop.index0 -%}
  {%- endif -%}
{%- endfor -%}
{{- bos_token -}}
{{- ep.system -}}
{%- if tools is defined and tools is not none -%}
  {%- if ep.system != '' -%}{{- '\n\n' -}}{%- endif -%}
  {{- TOOLS_HEADER -}}
  {%- for tool in tools -%}
    {{- '\n```json\n' -}}
    {%- if ep.native -%}{{- tool|tojson -}}{%- else -%}{{- ep_json(tool) -}}{%- endif -%}
    {{- '\n```' -}}
  {%- endfor -%}
  {{- TOOLS_FOOTER -}}
{%- endif -%}
{%- for m in messages -%}
  {%- set content = m['content'] if m['content'] is string else '' -%}
  {%- if m['role'] == 'user' -%}
    {%- set ep.open_turn = true -%}
    {{- '<|User|>' + content -}}
  {%- elif m['role'] == 'assistant' -%}
    {%- if '</think>' in content and not loop.last and loop.index0 < ep.first_tool - 1 -%}
      {%- set content = content.split('</think>')[-1].lstrip('\n') -%}
    {%- endif -%}
    {%- if '<think>' not in content and '</think>' not in content and loop.last -%}
      {%- set content = '<think>\n\n</think>\n\n' + content -%}
    {%- endif -%}
    {%- set ep.open_turn = false -%}
    {%- set ep.first_response = true -%}
    {{- '<|Assistant|>' + content -}}
    {%- if m['tool_calls'] is defined and m['tool_calls'] is not none -%}
      {%- for call in m['tool_calls'] -%}
        {%- if not loop.first -%}{{- '\n' -}}{%- endif -%}
        {{- '<tool_call>{"name": "' + call['function']['name'] + '", "arguments": ' -}}
        {%- if call['function']['arguments'] is string -%}{{- call['function']['arguments'] -}}
        {%- elif ep.native -%}{{- call['function']['arguments']|tojson -}}
        {%- else -%}{{- ep_json(call['function']['arguments']) -}}
        {%- endif -%}
        {{- '}</tool_call>' -}}
      {%- endfor -%}
    {%- endif -%}
    {{- '<|end_of_text|>' -}}
  {%- elif m['role'] == 'tool' -%}
    {%- set ep.open_turn = true -%}
    {%- if ep.first_response -%}{{- '<|User|>' -}}{%- set ep.first_response = false -%}{%- else -%}{{- '\n' -}}{%- endif -%}
    {{- '<tool_response>' + content + '</tool_response>' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt is defined and add_generation_prompt and ep.open_turn -%}
  {{- '<|Assistant|>' -}}
  {%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\n\n</think>\n\n' -}}
  {%- elif forced_thinking is defined and forced_thinking is true -%}{{- '<think>\n' -}}
  {%- endif -%}
{%- endif -%}
"""
CHAT_TEMPLATE: str = (
    "".join(line.strip() for line in _TEMPLATE_SRC.splitlines())
    .replace("TOOLS_HEADER", _jinja_str(TOOLS_HEADER))
    .replace("TOOLS_FOOTER", _jinja_str(TOOLS_FOOTER))
)


def _dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False)


def format_tool_call(name: str, arguments: dict | str) -> str:
    """`<tool_call>{"name": ..., "arguments": ...}</tool_call>`; a string `arguments` is taken as JSON text as-is."""
    args = arguments if isinstance(arguments, str) else _dumps(arguments)
    return f'{TOOL_CALL_START}{{"name": "{name}", "arguments": {args}}}{TOOL_CALL_END}'


_TOOL_CALL_RE = re.compile(re.escape(TOOL_CALL_START) + r"(.*?)" + re.escape(TOOL_CALL_END), re.DOTALL)


def parse_tool_calls(text: str) -> list[dict]:
    """Every well-formed `<tool_call>{json}</tool_call>` in generated text as {"name", "arguments": dict}."""
    calls = []
    for body in _TOOL_CALL_RE.findall(text):
        try:
            obj = json.loads(body)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            continue
        args = obj.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                continue
        if isinstance(args, dict):
            calls.append({"name": obj["name"], "arguments": args})
    return calls


def strip_reasoning(text: str) -> str:
    """A reply without its reasoning: the text after the last `</think>` (all of it when there is none)."""
    return text.rsplit(THINK_END, 1)[-1].strip()


def _content(m: dict, i: int) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if not isinstance(c, str):
        raise EdgeportError(f"chat message {i}: content must be a string, got {type(c).__name__}")
    return c


def _tool_call_text(call: Any, i: int) -> str:
    try:
        fn = call["function"]
        return format_tool_call(fn["name"], fn["arguments"])
    except (KeyError, TypeError):
        raise EdgeportError(
            f'chat message {i}: tool calls must look like {{"type": "function", "function": {{"name": ..., '
            f'"arguments": ...}}}}, got {call!r:.80}'
        ) from None


def _is_tool_result(m: dict) -> bool:
    c = m.get("content")
    return m["role"] == "tool" or (
        m["role"] == "user"
        and isinstance(c, str)
        and c.startswith(TOOL_RESPONSE_START)
        and c.endswith(TOOL_RESPONSE_END)
    )


def render_with_spans(
    messages: list[dict],
    tools: list[dict] | None = None,
    add_generation_prompt: bool = False,
    enable_thinking: bool | None = None,
    forced_thinking: bool = False,
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat plus the [start, end) character spans the assistant generates (content, tool calls and
    the closing `<|end_of_text|>` of every assistant turn; not the `<|Assistant|>` marker)."""
    parts: list[str] = []
    pos = 0
    spans: list[tuple[int, int]] = []

    def emit(s: str) -> None:
        nonlocal pos
        parts.append(s)
        pos += len(s)

    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise EdgeportError(
                f"chat message {i}: role must be system, user, assistant or tool, got {m!r:.80}"
            )
    system = "\n\n".join(_content(m, i) for i, m in enumerate(messages) if m["role"] == "system")
    first_tool = next((i for i, m in enumerate(messages) if _is_tool_result(m)), len(messages))
    emit(BOS + system)
    if tools is not None:
        block = TOOLS_HEADER + "".join(f"\n```json\n{_dumps(t)}\n```" for t in tools) + TOOLS_FOOTER
        emit("\n\n" + block if system else block)

    open_turn, first_response = False, True
    for i, m in enumerate(messages):
        role, content, last = m["role"], _content(m, i), i == len(messages) - 1
        if role == "user":
            open_turn = True
            emit(USER + content)
        elif role == "assistant":
            if THINK_END in content and not last and i < first_tool - 1:
                content = content.rsplit(THINK_END, 1)[-1].lstrip("\n")
            if THINK_START not in content and THINK_END not in content and last:
                content = EMPTY_THINK + content
            open_turn, first_response = False, True
            emit(ASSISTANT)
            start = pos
            emit(content)
            if m.get("tool_calls") is not None:
                emit("\n".join(_tool_call_text(c, i) for c in m["tool_calls"]))
            emit(EOS)
            spans.append((start, pos))
        elif role == "tool":
            open_turn = True
            emit(USER if first_response else "\n")
            first_response = False
            emit(TOOL_RESPONSE_START + content + TOOL_RESPONSE_END)
    if add_generation_prompt and open_turn:
        emit(ASSISTANT)
        if enable_thinking is False:
            emit(EMPTY_THINK)
        elif forced_thinking is True:
            emit(THINK_START + "\n")
    return "".join(parts), spans


def render(
    messages: list[dict],
    tools: list[dict] | None = None,
    add_generation_prompt: bool = False,
    enable_thinking: bool | None = None,
    forced_thinking: bool = False,
) -> str:
    """The chat as the model sees it (same bytes as CHAT_TEMPLATE); tools=None means no tool block at all."""
    return render_with_spans(messages, tools, add_generation_prompt, enable_thinking, forced_thinking)[0]
