"""The episode text protocol: transcript layout, command extraction, output format, <cot> stripping."""

from __future__ import annotations

from rewardlab.envs.protocol import (
    build_messages,
    extract_command,
    format_command_output,
    preamble,
    render_transcript,
    strip_cot,
)
from rewardlab.envs.sandbox.base import CommandResult


def test_tool_transcript_has_preamble_ack_demo_task_and_cot_opening():
    messages = build_messages("Find the file.", uses_tools=True)
    assert messages[0]["role"] == "user" and "<bash>" in messages[0]["content"]
    assert "/rl_environment/" in messages[0]["content"] and "/root/rl_environment" in messages[0]["content"]
    assert "<cot>" in messages[0]["content"] and "/root" in messages[0]["content"]
    assert messages[1]["role"] == "assistant" and messages[1]["content"].endswith("Yes, I understand.")
    assert any("<stderr>" in m["content"] for m in messages if m["role"] == "user")
    assert messages[-2] == {"role": "user", "content": "Find the file."}
    assert messages[-1] == {"role": "assistant", "content": "<cot>"}
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in zip(roles, roles[1:])), "turns must alternate"


def test_plain_transcript_has_no_shell_instructions_or_demo():
    messages = build_messages("Pick one.", uses_tools=False)
    assert len(messages) == 4
    assert "<bash>" not in messages[0]["content"] and "<bash>" not in preamble(False)
    assert messages[-1]["content"] == "<cot>"


def test_extract_command_only_when_reply_ends_with_a_closed_command():
    assert extract_command("<cot>look</cot>\n<bash>ls -la /root</bash>") == "ls -la /root"
    assert extract_command("<bash>echo a</bash> then <bash>cat b</bash>\n") == "cat b"
    assert extract_command("The answer is 3.") is None
    assert extract_command("<bash>ls") is None
    assert extract_command("<bash>ls</bash> and more text") is None


def test_command_output_uses_stdout_and_stderr_blocks_and_explains_limits():
    ok = CommandResult("ls", 0, "a\nb\n", "", 0.01)
    assert format_command_output(ok) == "<stdout>\na\nb\n</stdout>"
    failed = CommandResult("cat x", 1, "", "cat: x: No such file\n", 0.01)
    assert format_command_output(failed) == "<stderr>\ncat: x: No such file\n</stderr>"
    silent = CommandResult("true", 0, "", "", 0.01)
    assert format_command_output(silent) == "<stdout>\n\n</stdout>"
    limited = CommandResult("yes", -9, "y\ny", "", 1.0, output_truncated=True, notes=["output exceeded 10 bytes"])
    text = format_command_output(limited)
    assert "<stdout>\ny\ny\n</stdout>" in text and "[sandbox: output exceeded 10 bytes]" in text


def test_strip_cot_removes_closed_blocks_and_everything_after_an_unclosed_one():
    assert strip_cot("<cot>secret plan</cot>\nHello!") == "Hello!"
    assert strip_cot("A <cot>x</cot> B <cot>y</cot> C") == "A  B  C"
    assert strip_cot("Visible <cot>never closed, hidden") == "Visible"
    assert strip_cot("<cot>only thoughts") == ""


def test_render_transcript_uses_human_and_assistant_names():
    text = render_transcript([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert text == "Human: hi\n\nAssistant: hello"
