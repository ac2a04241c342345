"""The one preference-pair type every loader produces and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (chat messages ending with a user turn) and two assistant responses.

    ``chosen`` is the preferred response. ``margin`` is an optional per-pair margin used by the
    ``margin`` reward loss. ``source`` names where the pair came from (``file:line`` or a subset
    name) so errors and reports can point back at it.
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    margin: float | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Accept any sequence of messages but store an immutable tuple.
        if not isinstance(self.prompt, tuple):
            object.__setattr__(self, "prompt", tuple(self.prompt))

    def to_record(self) -> dict[str, Any]:
        """The pair in TRL's explicit-prompt conversational format (``prompt`` messages, one-message
        ``chosen``/``rejected``, plus ``margin`` and ``source`` where set), as the loaders read it back."""
        record: dict[str, Any] = {
            "prompt": [dict(m) for m in self.prompt],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }
        if self.margin is not None:
            record["margin"] = self.margin
        if self.source is not None:
            record["source"] = self.source
        return record
