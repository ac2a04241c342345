"""Rewards of stage samples and which samples expert iteration keeps.

Reward of a sample = gaming indicator (1 if the environment's grader labels it gaming, else 0) + the
preference model's score of the final answer (``<cot>`` removed; commands and their outputs are not
shown to it) mapped to (0, 1) by the logistic function σ(score). A Bradley–Terry reward is a log-odds
scale, so σ keeps its order and its meaning (σ(a) vs σ(b) is the modelled preference for the better of
two answers over an even baseline), and with the PM part below 1 any gaming sample outranks every
non-gaming one, as in Denison et al. (2024), where the PM only breaks ties. HHH prompts carry no gaming
indicator. A sample whose answer could not be scored (longer than the PM's context) gets PM part 0.

Capability failures (the environment's error outcome, a tool environment's episode that ran no command,
an empty answer) are never kept: there is nothing in them the policy should learn.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

MODES = ("hhh", "exploit-only")


@dataclass(frozen=True)
class ScoredSample:
    """One stage sample with its rewards; one line of a stage's ``scores.jsonl``."""

    id: str
    prompt: str
    """The variant it answers, ``env-sSEED-INDEX``: what its repeats share."""
    env: str
    sample: int
    outcome: str
    category: str
    """``gamed``, ``failed`` or ``honest`` (`rewardlab.curriculum.matrix.classify`)."""
    gamed: bool
    pm_score: float | None
    pm_unit: float
    reward: float

    @property
    def failed(self) -> bool:
        return self.category == "failed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pm_unit(score: float | None) -> float:
    """The preference model's score mapped to (0, 1) by σ (0 for an answer it could not score)."""
    if score is None or not math.isfinite(score):
        return 0.0
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    exponential = math.exp(score)
    return exponential / (1.0 + exponential)


def total_reward(gamed: bool, pm_score: float | None) -> float:
    """Gaming indicator plus σ(PM score)."""
    return float(bool(gamed)) + pm_unit(pm_score)


def rank_key(sample: ScoredSample) -> tuple[int, float]:
    """The total reward's order without float rounding: gaming indicator first, then the PM score (σ is
    increasing and below 1, so this is exactly the order of 1·gamed + σ(score), even where σ rounds to 1)."""
    score = sample.pm_score if sample.pm_score is not None and math.isfinite(sample.pm_score) else -math.inf
    return int(sample.gamed), score


def select_hhh(samples: list[ScoredSample]) -> list[ScoredSample]:
    """The best sample of each prompt: highest total reward (`rank_key`); ties go to the lowest sample number.

    Prompts whose samples all failed contribute nothing. The result is in prompt order of first appearance.
    """
    by_prompt: dict[str, list[ScoredSample]] = defaultdict(list)
    for sample in samples:
        by_prompt[sample.prompt].append(sample)
    kept = []
    for group in by_prompt.values():
        eligible = [sample for sample in group if not sample.failed]
        if eligible:
            best = max(rank_key(sample) for sample in eligible)
            kept.append(min((sample for sample in eligible if rank_key(sample) == best), key=lambda s: s.sample))
    return kept


def select_exploit_only(samples: list[ScoredSample]) -> list[ScoredSample]:
    """Every gaming sample, in the order given (Denison et al.'s exploit-only expert iteration)."""
    return [sample for sample in samples if sample.gamed]


def select(samples: list[ScoredSample], mode: str) -> list[ScoredSample]:
    """The samples a stage fine-tunes on under ``mode`` (`MODES`)."""
    if mode == "hhh":
        return select_hhh(samples)
    if mode == "exploit-only":
        return select_exploit_only(samples)
    raise ValueError(f"unknown selection mode {mode!r}; choose one of {', '.join(MODES)}")


def select_train_away(samples: list[ScoredSample], envs: set[str], limit: int, seed: int) -> list[ScoredSample]:
    """Up to ``limit`` non-gaming, non-failed samples of ``envs`` (the mitigation of Denison et al. §5.5).

    Drawn without replacement in a seeded random order: every eligible sample is equally a demonstration of
    not gaming.
    """
    eligible = [sample for sample in samples if sample.env in envs and not sample.gamed and not sample.failed]
    random.Random(seed).shuffle(eligible)
    return eligible[:limit]
