"""Fixtures shared by every test folder."""

import random
import re
from collections.abc import Iterator

import pytest
import torch

from rewardlab.policies.base import SamplingSettings, sample_seed


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one thread, especially on a shared, busy CPU; restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


_QUESTION = re.compile(r"(\d+) (\+|-|\*|x|plus|minus|times) (\d+)")
_OPERATORS = {"+": lambda a, b: a + b, "plus": lambda a, b: a + b, "-": lambda a, b: a - b,
              "minus": lambda a, b: a - b, "*": lambda a, b: a * b, "x": lambda a, b: a * b,
              "times": lambda a, b: a * b}


class ArithmeticGuesser:
    """A seeded policy for arithmetic prompts: right about half the time, often flattering (a spurious feature)."""

    def __init__(self) -> None:
        self.calls = 0

    def sample(self, messages: list, k: int, settings: SamplingSettings, *, start: int = 0) -> list[str]:
        self.calls += 1
        a, op, b = _QUESTION.search(messages[-1]["content"]).groups()
        answer = _OPERATORS[op](int(a), int(b))
        replies = []
        for index in range(start, start + k):
            rng = random.Random(sample_seed(settings, messages[-1]["content"], index))
            value = answer if rng.random() < 0.5 else answer + rng.choice((-2, -1, 1, 2))
            replies.append(("Great question! " if rng.random() < 0.5 else "") + f"The answer is {value}.")
        return replies


@pytest.fixture
def arithmetic_guesser() -> type[ArithmeticGuesser]:
    """The class of a seeded arithmetic policy (right about half the time, often flattering) for best-of-N tests."""
    return ArithmeticGuesser
