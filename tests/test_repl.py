"""The chat REPL as a person uses it, in a real pseudo-terminal (pexpect): commands, a streamed answer, a tool
call, /reset, Ctrl-C during an answer, an over-long message, and Ctrl-C twice at the prompt to leave."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

PROMPT = "you> "


def _chat(tmp_path: Path, *args: str):
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "edgeport.cli", "chat", *args],
        env=env,
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=90,
    )
    child.expect(r"edgeport chat \(torch, \d+ tools\)")
    child.expect_exact(PROMPT)
    return child


def test_repl_in_a_terminal(tmp_path: Path) -> None:
    # chat's defaults (all 12 tools offered), as a user starts it, and issue 10's request: the default model calls
    # `calculate` for it with and without thinking (the unspaced "17*23" it refuses or miscopies: a wrong argument)
    child = _chat(tmp_path)
    try:
        child.sendline("/help")
        child.expect_exact("/reset")
        child.expect_exact(PROMPT)
        # a tool call: the model's call runs for real and its result is shown, then the answer
        child.sendline("What is 17 times 23?")
        child.expect_exact("[tool] calculate(")
        child.expect_exact("-> {")
        child.expect_exact(PROMPT)
        child.sendline("/reset")
        child.expect_exact("(conversation cleared)")
        child.expect_exact(PROMPT)
        # an over-long message: a note, and the chat goes on
        child.sendline("word " * 1200)
        child.expect_exact("(note:")
        child.expect_exact("context")
        child.expect_exact(PROMPT)
        # /tools and /system
        child.sendline("/tools none")
        child.expect_exact("(tools offered: none)")
        child.expect_exact(PROMPT)
        child.sendline("/system")
        child.expect_exact("(system prompt: None)")
        child.expect_exact(PROMPT)
        # line editing and history: the Up arrow brings the last line back (not `^[[A`)
        child.send("\x1b[A\r")
        child.expect_exact("(system prompt: None)")
        child.expect_exact(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        assert "/tools none" in (tmp_path / ".edgeport_history").read_text()  # kept for the next session
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_ctrl_c_stops_an_answer_and_twice_at_the_prompt_quits(tmp_path: Path) -> None:
    # an answer that cannot end before the interrupt lands: --min-new-tokens holds its end token back (with
    # sampling alone the trained model often ended, or called tools until the context filled, first)
    child = _chat(tmp_path, "--no-tools", "--temperature", "1", "--seed", "5",
                  "--min-new-tokens", "1500", "--max-new-tokens", "1500")  # fmt: skip
    try:
        child.sendline("Tell me a long story.")
        child.expect_exact("model> ")
        child.expect(r"\S")  # the answer is streaming
        child.sendintr()
        child.expect_exact("(stopped; that exchange was dropped)")
        child.expect_exact(PROMPT)
        child.sendline("/save chat.json")
        child.expect_exact("(saved 0 messages")
        child.expect_exact(PROMPT)
        child.sendintr()
        child.expect_exact("(Ctrl-C again or /exit to quit)")
        child.expect_exact(PROMPT)
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert (tmp_path / "chat.json").is_file()
    finally:
        if child.isalive():
            child.terminate(force=True)
