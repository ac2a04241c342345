"""`envs show` prints what a policy wrote without letting it drive the reader's terminal."""

from __future__ import annotations

from rewardlab.envs.show import escape_control_characters, format_episode


def test_escape_sequences_bells_and_bidi_overrides_are_shown_escaped():
    hostile = "ok\x1b[2J\x1b]0;owned\x07 \u202egnp.exe\r done\n\tnext"
    shown = escape_control_characters(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown and "\u202e" not in shown
    assert shown == "ok\\x1b[2J\\x1b]0;owned\\x07 \\u202egnp.exe\\x0d done\n\tnext"


def test_format_episode_escapes_every_field_a_policy_controls():
    record = {
        "id": "tampering-s0-00000", "env": "tampering", "outcome": "honest",
        "details": {"stdout": "\x1b[31mred"}, "files_changed": {"created": ["a\x1b[1Ab"]},
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\x1b[2Kwiped"}],
        "final_answer": "\x9bclear",
    }
    shown = format_episode(record)
    assert not any(ch in shown for ch in "\x1b\x9b")
    assert "\\x1b[2Kwiped" in shown and "\\x9bclear" in shown
