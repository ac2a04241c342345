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

Policies that draw many replies to one prompt (best-of-N studies) also implement
``sample(messages, k, settings, *, start=0)`` (`SamplingPolicy`): ``k`` independent replies under
`SamplingSettings`, where reply ``j`` of a call is sample number ``start + j`` of that prompt, so a
run that stops after some samples can resume with the next index and draw the same ones.

Policies that serve many episodes at once also implement ``generate_many(requests)``
(`BatchPolicy`): one `GenerationRequest` per episode waiting for a reply (its messages, stop
strings and its own seed), answered in order with `Generation` (the message and why it ended).
A local model decodes them as one batch, sharing the prefill of their common prompt prefix; a
server policy sends them concurrently. Per-episode views (``for_episode``) of such a policy
expose ``request(messages, stop)``, which numbers the episode's calls exactly as ``generate`` does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from rewardlab.data.pair import Message
from rewardlab.errors import ConfigError, RewardlabError


class PolicyError(RewardlabError, RuntimeError):
    """A policy could not produce a reply (bad spec, unreachable server, exhausted replay…)."""


class ContextLimitError(PolicyError):
    """The transcript no longer fits the model's context: the episode's own length, not a broken policy."""


def text_or_raise(generation: "Generation") -> str:
    """A generation's text for the plain `Policy.generate` contract; a context overflow raises `ContextLimitError`."""
    if generation.finish_reason == CONTEXT_LIMIT:
        raise ContextLimitError("the transcript no longer fits the model's context")
    return generation.text


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


@dataclass(frozen=True)
class SamplingSettings:
    """How replies are sampled for best-of-N studies; `key` is part of every sample cache key.

    ``temperature == 0`` is greedy decoding. ``top_p`` keeps the smallest set of most likely tokens
    whose probability reaches it (1.0 keeps all). ``seed`` fixes the draws: sample ``j`` of a prompt
    depends only on (seed, prompt, j).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be 0 (greedy) or positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    def key(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (floats as floats, so 1 and 1.0 give the same key)."""
        values = asdict(self)
        return {"temperature": float(values["temperature"]), "top_p": float(values["top_p"]),
                "max_new_tokens": int(values["max_new_tokens"]), "seed": int(values["seed"])}


@runtime_checkable
class SamplingPolicy(Protocol):
    """A policy that draws ``k`` replies to one prompt in one go (see the module docstring)."""

    def sample(self, messages: list[Message], k: int, settings: SamplingSettings, *, start: int = 0) -> list[str]:
        """Samples ``start`` … ``start + k - 1`` of the prompt, each the complete assistant message."""


@dataclass(frozen=True)
class GenerationRequest:
    """One reply wanted by one episode: the `Policy.generate` arguments plus the seed of this call."""

    messages: list[Message]
    stop: list[str]
    seed: int


CONTEXT_LIMIT = "context_limit"
FINISH_REASONS = ("stop", "eos", "length", CONTEXT_LIMIT)
"""Why a reply ended: a stop string, the model's end of turn, the token limit, or no reply at all because
the transcript no longer fits the model's context (the text is then only the assistant opening)."""


@dataclass(frozen=True)
class Generation:
    """The assistant message answering a `GenerationRequest`, and why it ended (`FINISH_REASONS`, or
    None when the backend does not say)."""

    text: str
    finish_reason: str | None = None


@runtime_checkable
class BatchPolicy(Protocol):
    """A policy that answers many episodes' requests in one call (see the module docstring)."""

    def generate_many(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One `Generation` per request, in order."""


def sample_seed(settings: SamplingSettings, prompt: str, index: int, *, bits: int = 63) -> int:
    """The seed of sample ``index`` of ``prompt`` (a stable hash, not Python's salted ``hash``)."""
    material = json.dumps([settings.seed, prompt, index], ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") >> (64 - bits)


def check_sample_request(k: int, start: int) -> None:
    """Refuse a sample request that asks for no samples or negative indices."""
    if k < 1:
        raise ConfigError(f"k (samples per prompt) must be at least 1, got {k}")
    if start < 0:
        raise ConfigError(f"start (first sample index) must be 0 or more, got {start}")


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
