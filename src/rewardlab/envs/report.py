"""Outcome rates per environment with exact (Clopper–Pearson) 95% intervals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.envs.environments import ENVIRONMENTS
from rewardlab.envs.records import load_episodes
from rewardlab.envs.stats import clopper_pearson, rule_of_three

GAMED = "gamed"


@dataclass(frozen=True)
class OutcomeRate:
    """``count`` of ``n`` episodes, the rate and its exact 95% interval."""

    count: int
    n: int
    rate: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "n": self.n, "rate": self.rate, "ci_low": self.ci_low, "ci_high": self.ci_high}


def _rate(count: int, total: int) -> OutcomeRate:
    low, high = clopper_pearson(count, total)
    return OutcomeRate(count, total, count / total, low, high)


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, OutcomeRate]]:
    """``{env: {outcome: OutcomeRate}}`` for every label of each environment, plus ``gamed``."""
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_env[str(record["env"])].append(record)
    table: dict[str, dict[str, OutcomeRate]] = {}
    for env_name in sorted(by_env, key=lambda name: (list(ENVIRONMENTS).index(name) if name in ENVIRONMENTS else 99, name)):
        episodes = by_env[env_name]
        known = ENVIRONMENTS.get(env_name)
        labels = list(known.outcomes) if known else []
        labels += sorted({str(record["outcome"]) for record in episodes} - set(labels))
        total = len(episodes)
        rows = {label: _rate(sum(1 for r in episodes if r["outcome"] == label), total) for label in labels}
        if known:
            gamed = sum(1 for r in episodes if r["outcome"] in known.gaming_outcomes)
        else:
            gamed = sum(1 for r in episodes if r.get("gamed"))
        rows[GAMED] = _rate(gamed, total)
        table[env_name] = rows
    return table


def report_json(table: dict[str, dict[str, OutcomeRate]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``--json`` form: ``{env: {outcome: {"count", "n", "rate", "ci_low", "ci_high"}}}``."""
    return {env: {outcome: rate.to_json() for outcome, rate in rows.items()} for env, rows in table.items()}


def format_report(table: dict[str, dict[str, OutcomeRate]], *, bad_lines: int = 0, policies: list[str] | None = None) -> str:
    """A plain-text table; zero counts carry the rule-of-three upper bound next to the exact one."""
    lines: list[str] = []
    if policies:
        lines.append(f"policy: {', '.join(policies)}")
    zero_seen = False
    for env, rows in table.items():
        n = next(iter(rows.values())).n
        lines.append(f"\n{env}  (n = {n})")
        lines.append(f"  {'outcome':<22}{'count':>7}{'rate':>9}   95% CI (Clopper-Pearson)")
        for outcome, rate in rows.items():
            name = f"{outcome} (any gaming)" if outcome == GAMED else outcome
            note = ""
            if rate.count == 0:
                zero_seen = True
                note = f"   rule of three: <= {rule_of_three(rate.n):.4f}"
            lines.append(f"  {name:<22}{rate.count:>7}{rate.rate:>9.4f}   [{rate.ci_low:.4f}, {rate.ci_high:.4f}]{note}")
    if zero_seen:
        lines.append("\nZero counts: with 0 events in n episodes the true rate is below about 3/n with 95% "
                     "confidence (rule of three); the exact interval is shown alongside. Rare behaviours such "
                     "as reward tampering need thousands of episodes before a zero means much.")
    if bad_lines:
        lines.append(f"\nSkipped {bad_lines} unreadable line(s) in episodes.jsonl.")
    return "\n".join(lines).lstrip("\n")


def report_folder(folder: Path) -> tuple[dict[str, dict[str, OutcomeRate]], int, list[str]]:
    """Summarise a run folder: (table, unreadable line count, policies seen)."""
    loaded = load_episodes(Path(folder))
    policies = sorted({str(record.get("policy")) for record in loaded.records})
    return summarize(loaded.records), loaded.bad_lines, policies
