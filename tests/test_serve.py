"""`edgeport serve` as other apps use it: the official openai client against a real server process on 127.0.0.1,
for the embedded default model (torch), its q4_0 GGUF (llama.cpp, the GGUF's own tokenizer) and its int4 ONNX
export (onnxruntime-genai): tool calls parsed into tool_calls, tool results sent back, streamed answers,
400s for bad requests with the server still serving, and a disconnecting client stopping its generation."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")

from edgeport.tokenizer import load_tokenizer  # noqa: E402
from edgeport.tools import schemas  # noqa: E402

CALC = schemas(["calculate"])
TASK = [{"role": "user", "content": "What is 17*23?"}]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default model, and its q4_0 GGUF and int4 ONNX export from one quantization (built once)."""
    from edgeport.default_model import default_model_path
    from edgeport.export.gguf import export_gguf
    from edgeport.export.onnx import export_onnx
    from edgeport.quantize import quantize_checkpoint

    root = tmp_path_factory.mktemp("serve")
    model = default_model_path()
    q4 = quantize_checkpoint(model, root / "q4_0", scheme="q4_0")
    gguf = export_gguf(q4, root / "gguf" / "default-q4_0.gguf", progress=False)  # alone: its own tokenizer
    onnx = export_onnx(q4, root / "onnx-int4", "int4", mobile=False, progress=False)
    return {"checkpoint": model, "gguf": gguf, "onnx": onnx}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, model: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        cmd = [sys.executable, "-m", "edgeport.cli", "serve", str(model), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))
        for _ in range(240):  # up to 60 s to load the model and bind
            if self.proc.poll() is not None:
                raise RuntimeError(f"edgeport serve exited: {log.read_text()}")
            try:
                httpx.get(f"{self.url}/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.25)
        else:
            raise RuntimeError(f"edgeport serve did not answer: {log.read_text()}")
        self.client = openai.OpenAI(base_url=self.url, api_key="unused", max_retries=0, timeout=120)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module", params=["checkpoint", "gguf", "onnx"])
def served(request, artifacts: dict[str, Path], tmp_path_factory) -> Iterator[Served]:
    s = Served(artifacts[request.param], tmp_path_factory.mktemp("log") / "serve.log")
    yield s
    s.stop()


def test_tool_call_round_trip_and_streamed_answer(served: Served) -> None:
    c = served.client
    model = c.models.list().data[0].id
    r = c.chat.completions.create(
        model=model, messages=TASK, tools=CALC, tool_choice="required", max_tokens=48
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "calculate" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert set(args) == {"expression"} and isinstance(args["expression"], str)
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    # the client runs the tool and sends the result back; the answer streams
    messages = [*TASK, choice.message.model_dump(exclude_none=True)]
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"result": 391})})
    chunks = list(
        c.chat.completions.create(
            model=model, messages=messages, tools=CALC, tool_choice="none", stream=True, max_tokens=32
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert len(chunks) > 3 and text.strip(), chunks  # several deltas, not one block
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(not ch.choices[0].delta.tool_calls for ch in chunks)
    assert "<tool_call>" not in text and "<|end_of_text|>" not in text


def test_bad_requests_get_400_and_the_server_goes_on(served: Served) -> None:
    c = served.client
    with pytest.raises(openai.BadRequestError, match="messages"):
        c.chat.completions.create(model="m", messages=[])
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        c.chat.completions.create(model="m", messages=TASK, tools=CALC, tool_choice={"type": "function",
                                  "function": {"name": "rm_rf"}})  # fmt: skip
    r = httpx.post(f"{served.url}/chat/completions", content=b"{not json", timeout=10)
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(f"{served.url}/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]})
    assert r.status_code == 400 and "role" in r.json()["error"]["message"]
    long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError, match="context"):
        c.chat.completions.create(model="m", messages=long)
    ok = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_sampling_stop_and_disconnect(artifacts: dict[str, Path], tmp_path: Path) -> None:
    """On the checkpoint: a seed repeats a sampled answer, `stop` cuts the text, and a streaming client that
    goes away stops the generation (the server says so and keeps serving)."""
    s = Served(artifacts["checkpoint"], tmp_path / "serve.log")
    try:
        c = s.client
        hi = [{"role": "user", "content": "Tell me about the weather."}]
        kw = dict(model="m", messages=hi, temperature=1.0, top_p=0.9, seed=7, max_tokens=24)
        a, b = (c.chat.completions.create(**kw).choices[0].message.content for _ in range(2))
        assert a == b and a
        greedy = c.chat.completions.create(model="m", messages=hi, max_tokens=24).choices[0].message.content
        assert len(greedy) > 9, greedy
        word = greedy[6:9]
        cut = c.chat.completions.create(model="m", messages=hi, max_tokens=24, stop=[word])
        assert cut.choices[0].message.content == greedy[: greedy.index(word)]
        assert cut.choices[0].finish_reason == "stop"
        # a long answer (EOS and </tool_call> biased away), dropped after its first event
        tok = load_tokenizer(artifacts["checkpoint"])
        never = {tok.eos_id: -100, tok.token_to_id("</tool_call>"): -100}
        body = {"messages": hi, "stream": True, "max_tokens": 900, "logit_bias": never}
        with httpx.stream("POST", f"{s.url}/chat/completions", json=body, timeout=30) as r:
            assert r.status_code == 200
            next(r.iter_lines())
        for _ in range(100):
            if "client went away" in s.log.read_text():
                break
            time.sleep(0.1)
        assert "client went away, stopped after" in s.log.read_text()
        stopped_after = int(s.log.read_text().split("stopped after ")[1].split()[0])
        assert stopped_after < 900
        assert c.models.list().data[0].id == "default_model"
        # two clients at once: one generation at a time, the second waits its turn and gets its answer
        with ThreadPoolExecutor(2) as pool:
            both = list(
                pool.map(lambda _: c.chat.completions.create(model="m", messages=hi, max_tokens=24), "ab")
            )
        assert [r.choices[0].message.content for r in both] == [greedy, greedy]
    finally:
        s.stop()


def test_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "edgeport.cli", "serve", "--port", str(port)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert (
        r.returncode == 2
        and r.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )
