"""Parsing of Anthropic-style raw dialogue text: ``"\\n\\nHuman: …\\n\\nAssistant: …"``.

Used for hh-rlhf records and for any eval set whose inputs hold earlier ``Human:``/``Assistant:`` turns.
"""

from __future__ import annotations

import re

from rewardlab.data.pair import Message
from rewardlab.errors import RewardlabError

ASSISTANT_MARKER = "\n\nAssistant:"
SPEAKER_ROLES = {"Human": "user", "Assistant": "assistant"}

# A speaker label at the very start of the text or after a blank line.
_TURN_START = re.compile(r"(?:\A|\n\n)(Human|Assistant):")
_HUMAN_TURN = re.compile(r"(?:\A|\n\n)Human:")


class DialogueFormatError(RewardlabError, ValueError):
    """Text that does not follow the Human/Assistant turn layout."""


def parse_dialogue(text: str) -> list[Message]:
    """Split dialogue text into chat messages (``Human`` -> user, ``Assistant`` -> assistant).

    Turn contents are stripped of surrounding whitespace. Text before the first speaker label is
    an error, not something to guess about.
    """
    matches = list(_TURN_START.finditer(text))
    if not matches:
        raise DialogueFormatError("no 'Human:' or 'Assistant:' turn found")
    if text[: matches[0].start()].strip():
        raise DialogueFormatError("text before the first 'Human:'/'Assistant:' turn")
    messages: list[Message] = []
    for match, following in zip(matches, [*matches[1:], None]):
        end = following.start() if following is not None else len(text)
        content = text[match.end() : end].strip()
        messages.append({"role": SPEAKER_ROLES[match.group(1)], "content": content})
    return messages


def has_dialogue_markers(text: str) -> bool:
    """Whether ``text`` looks like hh-rlhf dialogue: a ``Human:`` turn and a ``"\\n\\nAssistant:"`` turn."""
    return ASSISTANT_MARKER in text and _HUMAN_TURN.search(text) is not None


def split_last_assistant_turn(text: str) -> tuple[str, str] | None:
    """``(history text, final response)`` split at the last ``"\\n\\nAssistant:"``; None if there is none."""
    cut = text.rfind(ASSISTANT_MARKER)
    if cut < 0:
        return None
    return text[:cut], text[cut + len(ASSISTANT_MARKER) :].strip()
