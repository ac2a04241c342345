"""Replay policy: hand-written assistant turns, replayed in order in every episode.

The file is a JSON list of strings, one per assistant message. The first message continues the
episode's `<cot>` opening: write it starting with ``<cot>`` (if it does not, the opening is
prepended). Text after a stop string (``</bash>``) is dropped, as a model's would be.

For sampling tests, `ReplayPolicy.sample` returns the turns as samples: sample ``j`` of any prompt
is turn ``j`` modulo the number of turns (continuing any assistant opening).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rewardlab.data.pair import Message
from rewardlab.policies.base import PolicyError, SamplingSettings, check_sample_request, continuation_prefix, cut_at_stop


def load_turns(path: str | Path) -> list[str]:
    """The assistant turns of a replay file; `PolicyError` names the file and the bad entry."""
    file = Path(path)
    try:
        turns = json.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise PolicyError(f"cannot read replay file {file}: {error}") from error
    except json.JSONDecodeError as error:
        raise PolicyError(f"replay file {file}: invalid JSON at line {error.lineno}: {error.msg}") from error
    if not isinstance(turns, list) or not turns:
        raise PolicyError(f"replay file {file}: expected a non-empty JSON list of assistant turns (strings)")
    for number, turn in enumerate(turns):
        if not isinstance(turn, str):
            raise PolicyError(f"replay file {file}: turn {number} is {type(turn).__name__}, expected a string")
    return turns


class ReplayPolicy:
    """Replays the same turns in each episode (`for_episode` restarts from the first turn)."""

    def __init__(self, turns: list[str], source: str = "replay") -> None:
        if not turns:
            raise PolicyError(f"{source}: no turns to replay")
        self.turns = list(turns)
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path) -> ReplayPolicy:
        """Load the turns of a replay file."""
        return cls(load_turns(path), source=str(path))

    def for_episode(self, hints: Mapping[str, Any]) -> ReplayEpisode:
        """A cursor at the first turn."""
        return ReplayEpisode(self.turns, self.source)

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        """Without an episode there is no position to keep: return the first turn."""
        return ReplayEpisode(self.turns, self.source).generate(messages, stop)

    def sample(self, messages: list[Message], k: int, settings: SamplingSettings, *, start: int = 0) -> list[str]:
        """Samples ``start`` … ``start + k - 1``: the turns in a cycle (the settings are ignored)."""
        check_sample_request(k, start)
        prefix = continuation_prefix(messages)
        picked = [self.turns[index % len(self.turns)] for index in range(start, start + k)]
        return [turn if turn.startswith(prefix) else prefix + turn for turn in picked]


class ReplayEpisode:
    """One episode's position in the replayed turns."""

    def __init__(self, turns: list[str], source: str) -> None:
        self._turns = turns
        self._source = source
        self._next = 0

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        """The next turn, continuing any assistant opening and cut at the stop strings."""
        if self._next >= len(self._turns):
            raise PolicyError(f"{self._source} has {len(self._turns)} turn(s); the episode asked for turn "
                              f"{self._next + 1} (end the last turn without a <bash> command)")
        turn = self._turns[self._next]
        self._next += 1
        prefix = continuation_prefix(messages)
        full = turn if turn.startswith(prefix) else prefix + turn
        return cut_at_stop(full, stop)
