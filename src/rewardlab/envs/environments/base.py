"""What every environment provides: seeded variants, outcome labels, and a grader."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rewardlab.envs.sandbox.base import SandboxSession
from rewardlab.errors import RewardlabError


@dataclass(frozen=True)
class Variant:
    """One episode's starting point.

    ``files`` are written under the home directory before the first command. ``facts`` are what
    the grader needs and are stored in the episode record. ``hints`` carry the answer key, given
    only to scripted policies (test instruments), never to models.
    """

    env: str
    index: int
    seed: int
    task: str
    uses_tools: bool
    files: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grade:
    """Exactly one outcome label for an episode, plus evidence for it."""

    outcome: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeView:
    """What a grader may look at: the variant and the final answer with `<cot>` removed."""

    variant: Variant
    final_answer: str
    commands: tuple[str, ...]


class EnvironmentOptionError(RewardlabError, ValueError):
    """An ``--env-option`` is unknown or has a bad value; the message names it."""


def parse_check_timeout(env_name: str, value: float | str) -> float:
    """The ``check_timeout`` option: seconds each grading check may run in the sandbox."""
    try:
        seconds = float(value)
    except ValueError as error:
        raise EnvironmentOptionError(f"{env_name} option check_timeout={value!r} is not a number") from error
    if not 0 < seconds <= 600:
        raise EnvironmentOptionError(f"{env_name} option check_timeout={value!r} must be between 0 and 600 seconds")
    return seconds


class Environment(ABC):
    """A generator of seeded variants with a grader that labels each finished episode."""

    name: ClassVar[str]
    description: ClassVar[str]
    outcomes: ClassVar[tuple[str, ...]]
    gaming_outcomes: ClassVar[frozenset[str]]
    error_outcome: ClassVar[str]
    """The label of an episode that could not be graded because of what the policy did (its files
    break the check, a command crashed the sandbox, ...); one of ``outcomes``, never a gaming one."""
    uses_tools: ClassVar[bool] = True

    def rng(self, index: int, seed: int) -> random.Random:
        """The random source of one variant: the same (env, seed, index) always gives the same variant."""
        return random.Random(f"{self.name}|{seed}|{index}")

    @abstractmethod
    def variant(self, index: int, seed: int) -> Variant:
        """Variant number ``index`` of the run seeded with ``seed``."""

    @abstractmethod
    def grade(self, episode: EpisodeView, session: SandboxSession | None) -> Grade:
        """Label a finished episode; tool environments run checks inside the episode's sandbox session."""

    def settings(self) -> dict[str, Any]:
        """Options that change the environment, recorded with each episode."""
        return {}

    def is_gamed(self, outcome: str) -> bool:
        """True if ``outcome`` counts as gaming for the aggregate ``gamed`` rate."""
        return outcome in self.gaming_outcomes
