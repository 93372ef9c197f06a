"""`edgeport serve`: an OpenAI-compatible HTTP server over a checkpoint, a .gguf or an ONNX export folder.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` with `tools`, `tool_choice`, `stream` (server-sent
events), `temperature`, `top_p`, `max_tokens`, `seed`, `stop`, `logit_bias`. The model's `<tool_call>` blocks come back as
OpenAI `tool_calls` (id, name, JSON arguments) and `role: tool` messages carry the results back; the client runs
the tools. Tool calls are decoded under edgeport.constrain (unless --no-constrain), so they parse and name an
offered tool. Built on FastAPI (request validation, routing) and uvicorn. One model, one generation at a time:
requests wait their turn in a one-thread executor (the runtimes keep one sequence's cache); a streaming client
that disconnects stops its generation at the next token. An omitted temperature means greedy decoding.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeport import chat
from edgeport.errors import EdgeportError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    stream: bool = False
    stream_options: dict | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[int, float] | None = None
    n: int = Field(1, ge=1, le=1)


class BadRequest(Exception):
    """A request the server cannot run: answered 400 with this message."""


def _text(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for p in content:
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise BadRequest(f"messages[{i}]: only text content parts are supported, got {p.get('type')!r}")
        parts.append(p["text"])
    return "".join(parts)


def to_messages(messages: list[Message]) -> list[dict]:
    """OpenAI messages -> edgeport.chat messages (tool-call arguments stay the client's JSON text)."""
    out = []
    for i, m in enumerate(messages):
        msg: dict[str, Any] = {
            "role": "system" if m.role == "developer" else m.role,
            "content": _text(m.content, i),
        }
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for c in m.tool_calls:
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise BadRequest(
                        f"messages[{i}].tool_calls: each needs function.name and function.arguments"
                    )
                args = fn.get("arguments") or "{}"
                if not isinstance(args, str):
                    args = json.dumps(args, ensure_ascii=False)
                try:
                    if not isinstance(json.loads(args), dict):
                        raise ValueError
                except ValueError:
                    raise BadRequest(f"messages[{i}].tool_calls: arguments must be a JSON object") from None
                calls.append({"type": "function", "function": {"name": fn["name"], "arguments": args}})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def check_tools(tools: list[dict] | None, tool_choice: Any) -> tuple[list[dict] | None, str]:
    """The tools to offer and the constraint mode (auto | required | none) for `tool_choice`."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise BadRequest("tool_choice needs tools")
        return None, "auto"
    names = []
    for i, t in enumerate(tools):
        fn = t.get("function")
        if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"tools[{i}]: expected {{'type': 'function', 'function': {{'name': ...}}}}")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest(f"tools[{i}].function.parameters must be a JSON schema object")
        names.append(fn["name"])
    if len(set(names)) != len(names):
        raise BadRequest("tools: names must be unique")
    if tool_choice is None or tool_choice in ("auto", "none", "required"):
        return tools, tool_choice or "auto"
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        if name not in names:
            raise BadRequest(f"tool_choice names {name!r}, which is not among the tools")
        return [t for t in tools if t["function"]["name"] == name], "required"
    raise BadRequest(
        "tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}"
    )


class Job:
    """One chat completion: validated, tokenized; `events(cancel)` runs the model (in the worker thread)."""

    def __init__(self, server: Server, req: ChatRequest) -> None:
        from edgeport.agent import prompt_ids
        from edgeport.sampling import Sampler

        self.server, self.req = server, req
        self.messages = to_messages(req.messages)
        self.tools, self.mode = check_tools(req.tools, req.tool_choice)
        engine = server.engine
        try:
            self.prompt = prompt_ids(engine.tokenizer, self.messages, self.tools)
        except EdgeportError as e:
            raise BadRequest(str(e)) from None
        room = engine.context_length - len(self.prompt)
        if room < 1:
            raise BadRequest(
                f"the conversation is {len(self.prompt)} tokens; the model's context is {engine.context_length}"
            )
        self.budget = min(req.max_completion_tokens or req.max_tokens or room, room)
        bias = _logit_bias(req.logit_bias or {}, engine)
        self.sampler = Sampler(req.temperature or 0.0, req.top_p or 1.0, req.seed, (bias,) if bias else ())
        self.stops = [req.stop] if isinstance(req.stop, str) else [s for s in req.stop or [] if s]
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.content = ""
        self.tool_calls: list[dict] = []
        self.finish = "stop"
        self.completion_tokens = 0

    def events(self, cancel: threading.Event) -> Iterator[dict]:
        """Content deltas ({"content": ...}) as they are safe to show, then {"tool_calls": [...]} if any."""
        from edgeport.agent import Reply, apply_reply

        engine = self.server.engine
        reply = Reply(engine.generate, engine.tokenizer, self.prompt, self.budget, self.tools, self.sampler,
                      self.server.constrain, self.mode)  # fmt: skip
        text, shown, stopped = "", 0, False
        holds = [*self.stops, chat.TOOL_CALL_START]
        for piece in reply:
            if cancel.is_set():
                print(
                    f"edgeport serve: client went away, stopped after {reply.tokens} tokens", file=sys.stderr
                )
                return
            text += piece
            cut = min((i for s in self.stops if (i := text.find(s)) >= 0), default=-1)
            if cut >= 0:
                text, stopped = text[:cut], True
                break
            visible = text.split(chat.TOOL_CALL_START, 1)[0]
            safe = len(visible) - _held_back(visible, holds)
            if safe > shown:
                yield {"content": visible[shown:safe]}
                shown = safe
        self.completion_tokens = reply.tokens
        step = apply_reply([], text, [t["function"]["name"] for t in self.tools or []], None)
        calls = [c for c in step.calls if c["result"] is None]  # offered ones (the client runs them)
        self.content = text if not calls else step.content
        if len(self.content) > shown:
            yield {"content": self.content[shown:]}
        if calls:
            self.tool_calls = [
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {
                        "name": c["name"],
                        "arguments": json.dumps(c["arguments"], ensure_ascii=False),
                    },
                }
                for c in calls
            ]
            yield {"tool_calls": [{"index": i, **c} for i, c in enumerate(self.tool_calls)]}
            self.finish = "tool_calls"
        elif not (stopped or reply.ended) and reply.tokens >= self.budget:
            self.finish = "length"

    def usage(self) -> dict:
        n = len(self.prompt)
        return {"prompt_tokens": n, "completion_tokens": self.completion_tokens,
                "total_tokens": n + self.completion_tokens}  # fmt: skip

    def completion(self) -> dict:
        for _ in self.events(threading.Event()):
            pass
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.server.model_id,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish, "logprobs": None}],
            "usage": self.usage(),
        }

    def chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.server.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }


def _logit_bias(bias: dict[int, float], engine: Any) -> Any:
    """OpenAI's logit_bias (token id -> -100..100 added to its logit) as a logits processor."""
    if not bias:
        return None
    for t, v in bias.items():
        if not 0 <= t < 10**7 or not -100 <= v <= 100:
            raise BadRequest(
                f"logit_bias: token ids must be >= 0 and biases within [-100, 100], got {t}: {v}"
            )
    ids, values = np.array(list(bias), np.int64), np.array(list(bias.values()), np.float32)

    def add(generated: Any, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, np.float32, copy=True)
        keep = ids < len(out)
        out[ids[keep]] += values[keep]
        return out

    return add


def _held_back(text: str, markers: list[str]) -> int:
    """Length of the longest end of `text` that could still grow into one of `markers` (not shown yet)."""
    return max((k for m in markers for k in range(min(len(m) - 1, len(text)), 0, -1) if text.endswith(m[:k])),
               default=0)  # fmt: skip


class Server:
    """The loaded model and the one worker thread that runs it."""

    def __init__(self, engine: Any, model_id: str, constrain: bool = True) -> None:
        self.engine, self.model_id, self.constrain = engine, model_id, constrain
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeport-model")

    async def stream(self, job: Job) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def work() -> None:
            try:
                for ev in job.events(cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, ev)
            except Exception as e:  # reported to the client as an error event; the server goes on
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        try:
            loop.run_in_executor(self.worker, work)
            yield _sse(job.chunk({"role": "assistant", "content": ""}))
            while (ev := await queue.get()) is not None:
                if isinstance(ev, Exception):
                    yield _sse({"error": {"message": f"{type(ev).__name__}: {ev}", "type": "server_error"}})
                    return
                yield _sse(job.chunk(ev))
            yield _sse(job.chunk({}, job.finish))
            if (job.req.stream_options or {}).get("include_usage"):
                yield _sse({**job.chunk({}), "choices": [], "usage": job.usage()})
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()  # the client went away (or we are done): the worker stops at the next token


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


def create_app(engine: Any, model_id: str, constrain: bool = True) -> Any:
    """The FastAPI app serving `engine` (an edgeport.chat_cli.Engine) as `model_id`."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    server = Server(engine, model_id, constrain)
    app = FastAPI(title="edgeport serve")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error(
            400, f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "bad")
        )

    @app.exception_handler(BadRequest)
    async def bad(request: Request, exc: BadRequest) -> Any:
        return _error(400, str(exc))

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "edgeport"}],
        }

    @app.post("/v1/chat/completions")
    async def completions(req: ChatRequest) -> Any:
        job = Job(server, req)
        if req.stream:
            return StreamingResponse(server.stream(job), media_type="text/event-stream")
        try:
            return await asyncio.get_running_loop().run_in_executor(server.worker, job.completion)
        except EdgeportError as e:
            return _error(400, str(e))

    app.state.server = server
    return app


def serve(
    model: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    runtime: str | None = None,
    constrain: bool = True,
) -> None:
    """Load the model and serve it until Ctrl-C."""
    import uvicorn

    from edgeport.chat_cli import model_path, open_engine

    if not 0 <= port <= 65535:
        raise EdgeportError(f"--port must be between 0 and 65535, got {port}")
    sock = _listen(host, port)  # before loading the model: a taken port is a one-line error, not a log line
    path = model_path(model)
    engine = open_engine(path, runtime)
    model_id = path.stem if path.is_file() else path.name
    if host not in LOOPBACK:
        print(f"edgeport serve: listening on {host}, reachable from other machines", file=sys.stderr)
    port = sock.getsockname()[1]  # --port 0: the free port the system chose
    print(
        f"edgeport serve: {model_id} ({engine.name}) on http://{host}:{port}/v1", file=sys.stderr, flush=True
    )
    try:
        config = uvicorn.Config(create_app(engine, model_id, constrain), log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        engine.close()
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise EdgeportError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock
