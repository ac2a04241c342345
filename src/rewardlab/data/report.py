"""How loaders account for every input record: a `DataError` for broken input, a counted skip otherwise."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from rewardlab.errors import RewardlabError


class DataError(RewardlabError, ValueError):
    """Input that cannot be read as preference pairs; the message names the file, record and field.

    ``location`` is ``path:line`` for JSON Lines (1-based line) or ``path[index]`` for JSON lists,
    Parquet files and datasets (0-based record index). ``field`` is the offending column, if any.
    """

    def __init__(self, location: str, message: str, field: str | None = None) -> None:
        self.location = location
        self.field = field
        self.reason = message
        where = f"{location}: field '{field}'" if field else location
        super().__init__(f"{where}: {message}")


@dataclass
class LoadReport:
    """Counts of kept and skipped records, with a few example locations per skip reason.

    Loaders fill it in; later stages (e.g. rendering) may add their own skips with `skip`.
    """

    source: str = ""
    format: str | None = None
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    examples_per_reason: int = 3

    def skip(self, reason: str, location: str) -> None:
        """Count one skipped record and remember where it was (up to a few per reason)."""
        self.skipped[reason] += 1
        if self.skipped[reason] <= self.examples_per_reason:
            self.examples.append(f"{location} ({reason})")

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line for users: what was kept, what was skipped and why, and where to look."""
        origin = f" from {self.source}" if self.source else ""
        detected = f" [{self.format}]" if self.format else ""
        text = f"kept {self.kept} pairs{origin}{detected}"
        if not self.skipped:
            return f"{text}; skipped 0"
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items()))
        examples = "; ".join(self.examples)
        return f"{text}; skipped {self.total_skipped} ({reasons}); e.g. {examples}"
