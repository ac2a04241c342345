"""Turn one input record into a `PreferencePair`, whatever preference format it is in.

Formats (TRL's conventions, detected from the columns of the first record):

* ``standard``: ``prompt``, ``chosen``, ``rejected`` strings;
* ``conversational``: ``prompt`` a list of messages, ``chosen``/``rejected`` lists holding one assistant
  message (or full conversations that start with the prompt messages);
* ``implicit-standard``: ``chosen``/``rejected`` plain-text strings whose common beginning is the prompt;
* ``implicit-conversational``: ``chosen``/``rejected`` full conversations, prompt = all but the last message;
* ``hh-rlhf-text``: ``chosen``/``rejected`` raw ``"\\n\\nHuman: …\\n\\nAssistant: …"`` strings (told apart
  from ``implicit-standard`` by those markers).

Structural problems (missing column, wrong type) raise `DataError`; content problems raise `SkipRecord`,
which the loader counts in its `LoadReport`.
"""

from __future__ import annotations

import math
import os
from typing import Any

from rewardlab.data.dialogue import (
    DialogueFormatError,
    has_dialogue_markers,
    parse_dialogue,
    split_last_assistant_turn,
)
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.data.report import DataError

ALLOWED_ROLES = ("system", "user", "assistant")
SOURCE_COLUMNS = ("source", "subset")
EXPLICIT_PROMPT_FORMATS = ("standard", "conversational")
FORMATS = (*EXPLICIT_PROMPT_FORMATS, "implicit-standard", "implicit-conversational", "hh-rlhf-text")

SKIP_EMPTY_RESPONSE = "empty response"
SKIP_IDENTICAL = "chosen equals rejected"
SKIP_PROMPTS_DIFFER = "prompts differ"
SKIP_NO_ASSISTANT_TURN = "no final assistant turn"
SKIP_PROMPT_NOT_USER = "prompt does not end with a user turn"
SKIP_EMPTY_PROMPT = "empty prompt"
SKIP_BAD_DIALOGUE = "unparsable dialogue"


class SkipRecord(Exception):
    """A record that is readable but unusable; ``reason`` is the key counted in `LoadReport.skipped`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def detect_format(record: Any, location: str) -> str:
    """Name of the preference format of ``record`` (see the module docstring)."""
    record = _as_record(record, location)
    for name in ("chosen", "rejected"):
        if name not in record:
            columns = ", ".join(sorted(map(str, record))) or "none"
            raise DataError(
                location,
                f"missing required column (found: {columns}; expected prompt/chosen/rejected or chosen/rejected)",
                field=name,
            )
    if "prompt" in record:
        return "conversational" if isinstance(record["prompt"], list) else "standard"
    if isinstance(record["chosen"], list):
        return "implicit-conversational"
    texts = [record[name] for name in ("chosen", "rejected") if isinstance(record[name], str)]
    return "hh-rlhf-text" if any(map(has_dialogue_markers, texts)) else "implicit-standard"


def record_to_pair(record: Any, location: str, *, record_format: str) -> PreferencePair:
    """Convert one record of a file whose format (one of `FORMATS`, see `detect_format`) is ``record_format``."""
    if record_format not in FORMATS:
        raise ValueError(f"unknown preference format {record_format!r}; expected one of {', '.join(FORMATS)}")
    record = _as_record(record, location)
    explicit_prompt = record_format in EXPLICIT_PROMPT_FORMATS
    required = ("prompt", "chosen", "rejected") if explicit_prompt else ("chosen", "rejected")
    for name in required:
        if name not in record:
            raise DataError(location, "missing required column", field=name)
        if record[name] is None:
            raise DataError(location, "is null", field=name)

    if explicit_prompt and _prompt_column_is_redundant(record):
        # TRL's `maybe_extract_prompt`: a string prompt next to full conversations is only a label.
        prompt, chosen, rejected = _split_conversations(record["chosen"], record["rejected"], location)
    elif explicit_prompt:
        prompt = _prompt_messages(record["prompt"], location)
        chosen = _completion(record["chosen"], prompt, location, "chosen")
        rejected = _completion(record["rejected"], prompt, location, "rejected")
    else:
        prompt, chosen, rejected = _split_implicit(
            record["chosen"], record["rejected"], location, text_format=record_format
        )

    if not prompt or prompt[-1]["role"] != "user":
        raise SkipRecord(SKIP_PROMPT_NOT_USER)
    if not prompt[-1]["content"].strip():
        raise SkipRecord(SKIP_EMPTY_PROMPT)
    if not chosen.strip() or not rejected.strip():
        raise SkipRecord(SKIP_EMPTY_RESPONSE)
    if chosen == rejected:
        raise SkipRecord(SKIP_IDENTICAL)
    for index, message in enumerate(prompt):
        _check_encodable(message["content"], location, f"prompt[{index}].content")
    _check_encodable(chosen, location, "chosen")
    _check_encodable(rejected, location, "rejected")
    return PreferencePair(
        prompt=tuple(prompt),
        chosen=chosen,
        rejected=rejected,
        margin=_margin(record, location),
        source=_source(record, location),
        meta={"location": location},
    )


def _as_record(record: Any, location: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(location, f"expected an object with named fields, got {_type_name(record)}")
    return record


def _prompt_messages(value: Any, location: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return _messages(value, location, "prompt")
    raise DataError(location, f"expected a string or a list of messages, got {_type_name(value)}", field="prompt")


def _completion(value: Any, prompt: list[Message], location: str, name: str) -> str:
    """The assistant response in a ``chosen``/``rejected`` value of an explicit-prompt record."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise DataError(location, f"expected a string or a list of messages, got {_type_name(value)}", field=name)
    messages = _messages(value, location, name)
    offset = len(prompt) if len(messages) > len(prompt) and messages[: len(prompt)] == prompt else 0
    rest = messages[offset:]
    if not rest:
        raise SkipRecord(SKIP_EMPTY_RESPONSE)
    if len(rest) > 1:
        raise DataError(
            location,
            f"expected one assistant message after the prompt, got {len(rest)} messages "
            "(a full conversation must start with exactly the prompt messages)",
            field=name,
        )
    if rest[0]["role"] != "assistant":
        raise DataError(location, f"expected role 'assistant', got {rest[0]['role']!r}", field=f"{name}[{offset}].role")
    return rest[0]["content"]


def _prompt_column_is_redundant(record: dict[str, Any]) -> bool:
    """A string ``prompt`` beside ``chosen``/``rejected`` conversations that both hold their own prompt turns."""
    values = (record["chosen"], record["rejected"])
    return isinstance(record["prompt"], str) and all(
        isinstance(value, list) and any(isinstance(m, dict) and m.get("role") != "assistant" for m in value)
        for value in values
    )


def _split_implicit(
    chosen: Any, rejected: Any, location: str, *, text_format: str
) -> tuple[list[Message], str, str]:
    """Prompt and responses from two full texts or dialogues that share everything but the response."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        if text_format == "implicit-standard":
            return _split_plain_text(chosen, rejected)
        return _split_hh_text(chosen, rejected)
    if isinstance(chosen, list) and isinstance(rejected, list):
        return _split_conversations(chosen, rejected, location)
    wrong = "chosen" if not isinstance(chosen, (str, list)) else "rejected"
    raise DataError(
        location,
        f"chosen and rejected must both be strings or both lists of messages; got {_type_name(chosen)} "
        f"and {_type_name(rejected)}",
        field=wrong,
    )


def extract_text_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """``(prompt, chosen response, rejected response)`` of two plain texts sharing their beginning.

    Like TRL's ``extract_prompt``, the prompt is the longest common prefix and a space just before the
    cut goes to the responses. Unlike it, a cut inside a word (a letter or digit on both sides), or at
    the very end of one text, first moves back to the start of that word, so ``"… is blue"`` /
    ``"… is black"`` split as ``"… is"`` + ``" blue"`` / ``" black"`` rather than ``"… is bl"`` + ``"ue"``.
    """
    cut = len(os.path.commonprefix([chosen, rejected]))
    if cut == min(len(chosen), len(rejected)):
        while cut > 0 and not chosen[cut - 1].isspace():
            cut -= 1
    elif cut > 0 and _is_word_char(chosen[cut - 1]) and (_is_word_char(chosen[cut]) or _is_word_char(rejected[cut])):
        while cut > 0 and _is_word_char(chosen[cut - 1]):
            cut -= 1
    if cut > 0 and chosen[cut - 1] == " ":
        cut -= 1
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _split_plain_text(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    if chosen == rejected:
        raise SkipRecord(SKIP_IDENTICAL)
    prompt, chosen_response, rejected_response = extract_text_prompt(chosen, rejected)
    if not prompt.strip():
        raise SkipRecord(SKIP_PROMPTS_DIFFER)
    return [{"role": "user", "content": prompt}], chosen_response, rejected_response


def _split_hh_text(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    """Prompt and responses of two hh-rlhf dialogues, split at their last ``Assistant:`` turn."""
    chosen_parts = split_last_assistant_turn(chosen)
    rejected_parts = split_last_assistant_turn(rejected)
    if chosen_parts is None or rejected_parts is None:
        raise SkipRecord(SKIP_NO_ASSISTANT_TURN)
    if chosen_parts[0] != rejected_parts[0]:
        raise SkipRecord(SKIP_PROMPTS_DIFFER)
    try:
        prompt = parse_dialogue(chosen_parts[0])
    except DialogueFormatError as exc:
        raise SkipRecord(SKIP_BAD_DIALOGUE) from exc
    return prompt, chosen_parts[1], rejected_parts[1]


def _split_conversations(chosen: list[Any], rejected: list[Any], location: str) -> tuple[list[Message], str, str]:
    """Prompt and responses of two conversations that share every message but the final assistant one.

    This is TRL's longest-common-prefix split wherever that leaves one message on each side.
    """
    chosen_messages = _messages(chosen, location, "chosen")
    rejected_messages = _messages(rejected, location, "rejected")
    if not chosen_messages or not rejected_messages:
        raise SkipRecord(SKIP_EMPTY_RESPONSE)
    if chosen_messages[-1]["role"] != "assistant" or rejected_messages[-1]["role"] != "assistant":
        raise SkipRecord(SKIP_NO_ASSISTANT_TURN)
    if chosen_messages[:-1] != rejected_messages[:-1]:
        raise SkipRecord(SKIP_PROMPTS_DIFFER)
    return chosen_messages[:-1], chosen_messages[-1]["content"], rejected_messages[-1]["content"]


def _messages(value: list[Any], location: str, name: str) -> list[Message]:
    messages: list[Message] = []
    for index, message in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(message, dict):
            raise DataError(location, f"expected a message object, got {_type_name(message)}", field=where)
        role = message.get("role")
        if role not in ALLOWED_ROLES:
            allowed = ", ".join(ALLOWED_ROLES)
            raise DataError(location, f"role must be one of {allowed}; got {role!r}", field=f"{where}.role")
        messages.append({"role": role, "content": _content_text(message.get("content"), location, f"{where}.content")})
    return messages


def _content_text(content: Any, location: str, where: str) -> str:
    """Message content as text; a list of ``{"type": "text", "text": …}`` parts is joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise DataError(location, "only text content parts are supported", field=where)
            parts.append(part["text"])
        return "".join(parts)
    raise DataError(location, f"expected a string, got {_type_name(content)}", field=where)


def _check_encodable(text: str, location: str, where: str) -> None:
    """Refuse text that no tokenizer can take: a lone surrogate, legal as a JSON escape such as ``\\ud800``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            location, f"holds an unpaired surrogate {text[exc.start]!r} at character {exc.start + 1}", field=where
        ) from exc


def _margin(record: dict[str, Any], location: str) -> float | None:
    value = record.get("margin")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(location, f"expected a number, got {_type_name(value)}", field="margin")
    if not math.isfinite(value):
        raise DataError(location, f"expected a finite number, got {value}", field="margin")
    return float(value)


def _source(record: dict[str, Any], location: str) -> str:
    """The record's ``source``/``subset`` column if it has one, else where it was read from."""
    for name in SOURCE_COLUMNS:
        value = record.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(location, f"expected a string, got {_type_name(value)}", field=name)
        return value
    return location


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
