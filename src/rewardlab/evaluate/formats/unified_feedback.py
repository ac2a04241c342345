"""Unified-Feedback (``llm-blender/Unified-Feedback``): ``{"conv_A": [messages], "conv_B":
[messages], "conv_A_rating": number, "conv_B_rating": number, "source": str, …}``.

Chosen = the conversation with the higher rating; pairs with equal ratings are dropped and
counted (as GRM does). Each conversation ends with the assistant answer being compared; the
messages before it are the prompt. The ``source`` (16 origin datasets) is the subset, which gives
the per-source breakdown. Unlike GRM's code, nothing is prepended to summarization prompts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.evaluate.formats.common import parse_messages, read_records, record_skip, require, require_str
from rewardlab.evaluate.items import REJECTED_PROMPT_KEY


def _split(conversation: tuple[Message, ...], location: str, field: str) -> tuple[tuple[Message, ...], str]:
    if len(conversation) < 2 or conversation[-1]["role"] != "assistant" or conversation[-2]["role"] != "user":
        raise DataError(location, f"field '{field}' must end with a user message and then an assistant answer")
    return conversation[:-1], conversation[-1]["content"]


def _rating(record: Any, field: str, location: str) -> float:
    value = require(record, field, location)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(location, f"field '{field}' must be a number, got {value!r}")
    return float(value)


def load_unified_feedback(path: str | Path, *, report: LoadReport | None = None) -> list[PreferencePair]:
    """Load Unified-Feedback pairs from a file, dropping (and counting) equal ratings."""
    return unified_feedback_pairs(read_records(path), report=report)


def unified_feedback_pairs(
    records: Iterable[tuple[str, Any]], *, report: LoadReport | None = None
) -> list[PreferencePair]:
    """Unified-Feedback pairs from ``(location, record)`` items (a file's or a hub split's), equal ratings dropped and counted."""
    pairs: list[PreferencePair] = []
    for location, record in records:
        prompt_a, answer_a = _split(parse_messages(require(record, "conv_A", location), location, "conv_A"), location, "conv_A")
        prompt_b, answer_b = _split(parse_messages(require(record, "conv_B", location), location, "conv_B"), location, "conv_B")
        rating_a = _rating(record, "conv_A_rating", location)
        rating_b = _rating(record, "conv_B_rating", location)
        source = require_str(record, "source", location)
        if rating_a == rating_b:
            record_skip(report, "Unified-Feedback equal ratings", location)
            continue
        if rating_a > rating_b:
            chosen_prompt, chosen, rejected_prompt, rejected = prompt_a, answer_a, prompt_b, answer_b
        else:
            chosen_prompt, chosen, rejected_prompt, rejected = prompt_b, answer_b, prompt_a, answer_a
        meta: dict[str, Any] = {"subset": source, "id": record.get("id")}
        if rejected_prompt != chosen_prompt:
            meta[REJECTED_PROMPT_KEY] = rejected_prompt
        pairs.append(
            PreferencePair(
                prompt=chosen_prompt,
                chosen=chosen,
                rejected=rejected,
                margin=abs(rating_a - rating_b),
                source=location,
                meta=meta,
            )
        )
    return pairs
