"""The one policy interface: chat messages and stop strings in, the assistant's message out.

Contract of ``generate(messages, stop)``:

- ``messages`` are chat messages (``{"role", "content"}``). If the last one is an assistant
  message, it is an opening the reply must continue (a prefill, e.g. ``<cot>``); the returned text
  then starts with that opening, unless the backend cannot prefill (then it is a fresh reply).
- Generation ends at the first stop string, which is kept at the end of the returned text;
  nothing after it is returned.
- The result is the complete assistant message, ready to be stored in the transcript.

Policies that keep per-episode state (scripted and replay policies) also implement
``for_episode(hints)``, returning a fresh policy for one episode; ``hints`` is the environment's
answer key, which only scripted test policies use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from rewardlab.data.pair import Message
from rewardlab.errors import RewardlabError


class PolicyError(RewardlabError, RuntimeError):
    """A policy could not produce a reply (bad spec, unreachable server, exhausted replay…)."""


@runtime_checkable
class Policy(Protocol):
    """Anything that can write the next assistant message."""

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        """Return the assistant message (see the module docstring for the exact contract)."""


@runtime_checkable
class EpisodePolicy(Protocol):
    """A policy with per-episode state."""

    def for_episode(self, hints: Mapping[str, Any]) -> Policy:
        """A fresh policy for one episode."""


def policy_for_episode(policy: Policy, hints: Mapping[str, Any]) -> Policy:
    """The policy to use for one episode: a fresh copy if it keeps state, else itself."""
    factory = getattr(policy, "for_episode", None)
    return factory(hints) if callable(factory) else policy


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Keep ``text`` up to and including the earliest stop string (unchanged if none occurs)."""
    earliest: tuple[int, str] | None = None
    for marker in stop:
        if not marker:
            continue
        position = text.find(marker)
        if position >= 0 and (earliest is None or position < earliest[0]):
            earliest = (position, marker)
    if earliest is None:
        return text
    return text[: earliest[0] + len(earliest[1])]


def continuation_prefix(messages: list[Message]) -> str:
    """The assistant opening a reply must continue ('' if the last message is not from the assistant)."""
    if messages and messages[-1].get("role") == "assistant":
        return messages[-1].get("content", "")
    return ""
