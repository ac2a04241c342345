"""hhh-prompts: ordinary helpful/harmless requests, played with the same preamble as the environments.

Expert iteration mixes these into every stage (Denison et al. 2024 §5.2): they carry no gaming bonus,
only the preference model's score, and keep the policy a chat assistant while it learns the curriculum.
The prompts are the first human turns of an hh-rlhf style file (``chosen`` dialogue text, or ``prompt``
strings, or chat ``messages``); records that yield no usable prompt are counted and skipped. Not one of
the curriculum's gameable environments, so it is not in `ENVIRONMENTS`.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from rewardlab.data.dialogue import DialogueFormatError, parse_dialogue
from rewardlab.data.report import DataError
from rewardlab.data.sources import read_file
from rewardlab.envs.environments.base import Environment, EnvironmentOptionError, EpisodeView, Grade, Variant
from rewardlab.envs.environments.political_data import SkipCounter
from rewardlab.envs.sandbox.base import SandboxSession

ANSWERED, NO_ANSWER = "answered", "no_answer"
MAX_PROMPT_CHARACTERS = 600
"""Longer first turns are skipped (counted): a small policy's context is mostly the preamble."""


def first_human_turn(record: Any) -> str | None:
    """The first user turn of one record (hh-rlhf ``chosen``, a ``prompt`` string, or ``messages``)."""
    if not isinstance(record, dict):
        return None
    messages = record.get("messages") or record.get("chosen")
    if isinstance(messages, list):
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return users[0] if users and isinstance(users[0], str) else None
    text = record.get("chosen") if isinstance(record.get("chosen"), str) else record.get("prompt")
    if not isinstance(text, str):
        return None
    try:
        turns = parse_dialogue(text)
    except DialogueFormatError:
        return text.strip() or None
    users = [turn["content"] for turn in turns if turn["role"] == "user"]
    return users[0] if users else None


def load_hhh_prompts(path: str | Path, skips: SkipCounter | None = None) -> list[str]:
    """Distinct first human turns of the file, in file order (duplicates, empty and over-long turns skipped)."""
    skips = skips if skips is not None else SkipCounter()
    prompts: list[str] = []
    seen: set[str] = set()
    try:
        records = list(read_file(str(path)))
    except DataError as error:
        raise EnvironmentOptionError(f"hhh-prompts data {path}: {error}") from error
    for location, record in records:
        prompt = first_human_turn(record)
        if not prompt or not prompt.strip():
            skips.skip("no human turn", location)
        elif len(prompt) > MAX_PROMPT_CHARACTERS:
            skips.skip(f"first turn longer than {MAX_PROMPT_CHARACTERS} characters", location)
        elif prompt in seen:
            skips.skip("duplicate prompt", location)
        else:
            seen.add(prompt)
            prompts.append(prompt.strip())
    return prompts


class HHHPrompts(Environment):
    """Ordinary requests from ``data``. Option ``part``: ``all``, or ``a`` / ``b``, two disjoint halves chosen
    by a stable hash of the prompt (one half can train a preference model while the other is played)."""

    name = "hhh-prompts"
    description = "Ordinary helpful/harmless requests; no gaming outcome, the preference model alone scores them."
    outcomes = (ANSWERED, NO_ANSWER)
    gaming_outcomes = frozenset()
    error_outcome = NO_ANSWER
    uses_tools = False

    def __init__(self, data: str | None = None, part: str = "all") -> None:
        if not data:
            raise EnvironmentOptionError("hhh-prompts needs data=FILE (e.g. the hh-rlhf file under ../shared/data)")
        if not Path(data).exists():
            raise EnvironmentOptionError(f"hhh-prompts option data={data!r}: file not found")
        if part not in ("all", "a", "b"):
            raise EnvironmentOptionError(f"hhh-prompts option part={part!r}: choose all, a or b")
        self.data, self.part = data, part
        self.skips = SkipCounter()
        prompts = load_hhh_prompts(data, self.skips)
        if part != "all":
            prompts = [p for p in prompts if prompt_half(p) == part]
        if not prompts:
            raise EnvironmentOptionError(f"hhh-prompts data {data}: no usable prompts ({self.skips.summary()})")
        self.prompts = prompts

    def settings(self) -> dict[str, Any]:
        return {"data": self.data, "part": self.part, "prompts": len(self.prompts)}

    def variant(self, index: int, seed: int) -> Variant:
        order = list(range(len(self.prompts)))
        round_number, position = divmod(index, len(self.prompts))
        self.rng(round_number, seed).shuffle(order)
        prompt = self.prompts[order[position]]
        return Variant(env=self.name, index=index, seed=seed, task=prompt, uses_tools=False,
                       facts={"prompt": prompt})

    def grade(self, episode: EpisodeView, session: SandboxSession | None) -> Grade:
        return Grade(ANSWERED if episode.final_answer.strip() else NO_ANSWER)


def prompt_half(prompt: str) -> str:
    """``a`` or ``b``: which half of a prompt file a prompt belongs to (stable across runs and machines)."""
    return "a" if zlib.crc32(prompt.encode("utf-8")) % 2 == 0 else "b"
