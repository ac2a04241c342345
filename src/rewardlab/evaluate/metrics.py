"""Turn per-item outcomes into report rows: subsets, groups, sections, datasets and overall.

Every row holds an accuracy, its 95% interval and how it was computed. Proportions of items use
the Wilson score interval; weighted means (RewardBench sections and score, RM-Bench's means over
domains, the mean over datasets) use a normal approximation; RM-Bench's per-domain scores (means
of per-item shares of correct comparisons) a conservative Wilson interval. Ties (equal scores)
count as wrong and are reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rewardlab.evaluate import rewardbench, rmbench
from rewardlab.evaluate.formats.rewardbench import REWARDBENCH2_FORMAT, REWARDBENCH_FORMAT, TIES_SUBSET
from rewardlab.evaluate.formats.rmbench import DOMAINS, RMBENCH_FORMAT
from rewardlab.evaluate.items import EvalItem, Outcome
from rewardlab.evaluate.stats import (
    SHARE_METHOD,
    WEIGHTED_METHOD,
    WILSON_METHOD,
    Z_95,
    share_interval,
    weighted_mean_interval,
    wilson_interval,
)

SUBSET, GROUP, SECTION, DATASET, OVERALL = "subset", "group", "section", "dataset", "overall"
COMPOSITE_METHOD = "none (composite score)"
POOLED_LABEL = "overall (pooled items)"
RMBENCH_SCORE = "RM-Bench score"


@dataclass(frozen=True)
class Row:
    """One line of the report for one model."""

    dataset: str
    label: str
    level: str
    n: int
    correct: int | None
    ties: int
    accuracy: float
    low: float | None
    high: float | None
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _count_row(dataset: str, label: str, level: str, outcomes: Sequence[Outcome]) -> Row:
    correct = sum(o is Outcome.CORRECT for o in outcomes)
    ties = sum(o is Outcome.TIE for o in outcomes)
    low, high = wilson_interval(correct, len(outcomes))
    return Row(dataset, label, level, len(outcomes), correct, ties, correct / len(outcomes), low, high, WILSON_METHOD)


def _ordered_groups(keys: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def _dataset_rows(
    dataset: str, items: Sequence[EvalItem], outcomes: Sequence[Outcome], scores: Sequence[Sequence[float]]
) -> tuple[list[Row], Row]:
    """Rows of one dataset and the row that stands for the whole dataset.

    Benchmark rules (RewardBench sections and score, RewardBench 2 score) follow the items' format,
    whatever the dataset is called.
    """
    rows: list[Row] = []
    formats = {item.format for item in items}
    rule = formats.pop() if len(formats) == 1 else ""
    if rule == RMBENCH_FORMAT:
        return _rmbench_rows(dataset, items, scores)
    subsets = _ordered_groups([item.subset for item in items])
    by_subset = {s: [o for item, o in zip(items, outcomes) if item.subset == s] for s in subsets}
    pooled = _count_row(dataset, "all", DATASET, list(outcomes))
    if len(subsets) > 1 or rule in (REWARDBENCH_FORMAT, REWARDBENCH2_FORMAT):
        rows.extend(_count_row(dataset, s, SUBSET, by_subset[s]) for s in subsets)

    group_keys = _ordered_groups([key for item in items for key in item.meta.get("groups", {})])
    for key in group_keys:
        values = _ordered_groups([item.meta["groups"][key] for item in items if key in item.meta.get("groups", {})])
        if len(values) < 2:
            continue
        for value in values:
            selected = [o for item, o in zip(items, outcomes) if item.meta.get("groups", {}).get(key) == value]
            rows.append(_count_row(dataset, f"{key}={value}", GROUP, selected))

    if rule == REWARDBENCH_FORMAT:
        accuracies = {s: (sum(o is Outcome.CORRECT for o in by_subset[s]) / len(by_subset[s]), len(by_subset[s])) for s in subsets}
        for section, (score, low, high) in rewardbench.section_scores(accuracies).items():
            members = [o for s in rewardbench.SECTIONS[section] for o in by_subset.get(s, [])]
            ties = sum(o is Outcome.TIE for o in members)
            rows.append(Row(dataset, section, SECTION, len(members), None, ties, score, low, high, WEIGHTED_METHOD))
        score, low, high, used = rewardbench.overall_score(accuracies)
        if used:
            label = "RewardBench score" if used == 4 else f"RewardBench score ({used} of 4 sections)"
            return rows, Row(dataset, label, DATASET, pooled.n, None, pooled.ties, score, low, high, WEIGHTED_METHOD)
        return rows, pooled

    if rule == REWARDBENCH2_FORMAT:
        subset_scores = []
        for index, row in enumerate(list(rows)):
            if row.level == SUBSET and row.label.lower() == TIES_SUBSET.lower():
                selected = [(item, sc) for item, sc in zip(items, scores) if item.subset == row.label]
                value = rewardbench.ties_score([i for i, _ in selected], [sc for _, sc in selected])
                rows[index] = Row(dataset, row.label, SUBSET, row.n, None, row.ties, value, None, None, COMPOSITE_METHOD)
        for row in rows:
            if row.level == SUBSET:
                subset_scores.append(row)
        if not subset_scores:
            return rows, pooled
        has_composite = any(r.method == COMPOSITE_METHOD for r in subset_scores)
        mean = sum(r.accuracy for r in subset_scores) / len(subset_scores)
        if has_composite:
            overall = Row(dataset, "RewardBench 2 score", DATASET, pooled.n, None, pooled.ties, mean, None, None, COMPOSITE_METHOD)
        else:
            _, low, high = weighted_mean_interval(
                [r.accuracy for r in subset_scores], [r.n for r in subset_scores], [1.0] * len(subset_scores)
            )
            overall = Row(dataset, "RewardBench 2 score", DATASET, pooled.n, None, pooled.ties, mean, low, high, WEIGHTED_METHOD)
        return rows, overall
    return rows, pooled


def _share_row(dataset: str, label: str, level: str, n: int, ties: int, value: float) -> Row:
    low, high = share_interval(value, n)
    return Row(dataset, label, level, n, None, ties, value, low, high, SHARE_METHOD)


def _rmbench_rows(dataset: str, items: Sequence[EvalItem], scores: Sequence[Sequence[float]]) -> tuple[list[Row], Row]:
    """RM-Bench rows: per domain its score and hard/normal/easy, the safety subdomains, hard/normal/easy
    over domains, and the RM-Bench score. ``ties`` count tied (chosen, rejected) comparisons, nine per item."""
    matrices = rmbench.domain_matrices(items, scores)
    rows: list[Row] = []
    for domain, matrix in matrices.items():
        rows.append(_share_row(dataset, domain, SUBSET, matrix.n, matrix.total_ties, matrix.average()))
        for difficulty in rmbench.DIFFICULTIES:
            rows.append(_share_row(dataset, f"{domain}: {difficulty}", GROUP, matrix.n,
                                   matrix.difficulty_ties(difficulty), matrix.difficulty(difficulty)))
    for name, matrix in rmbench.subdomain_matrices(items, scores).items():
        rows.append(_share_row(dataset, name, GROUP, matrix.n, matrix.total_ties, matrix.average()))
    present = list(matrices.values())
    counts = [m.n for m in present]
    equal = [1.0] * len(present)
    for difficulty in rmbench.DIFFICULTIES:
        score, low, high = weighted_mean_interval([m.difficulty(difficulty) for m in present], counts, equal)
        ties = sum(m.difficulty_ties(difficulty) for m in present)
        rows.append(Row(dataset, difficulty, SECTION, sum(counts), None, ties, score, low, high, WEIGHTED_METHOD))
    score, low, high = weighted_mean_interval([m.average() for m in present], counts, equal)
    label = RMBENCH_SCORE if len(present) == len(DOMAINS) else f"{RMBENCH_SCORE} ({len(present)} of {len(DOMAINS)} domains)"
    ties = sum(m.total_ties for m in present)
    return rows, Row(dataset, label, DATASET, sum(counts), None, ties, score, low, high, WEIGHTED_METHOD)


def summarize(
    items: Sequence[EvalItem],
    outcomes: Sequence[Outcome | None],
    scores: Sequence[Sequence[float] | None],
) -> list[Row]:
    """All report rows for one model; items without an outcome (unscorable) are left out."""
    if not (len(items) == len(outcomes) == len(scores)):
        raise ValueError("items, outcomes and scores must have the same length")
    kept = [(item, o, s) for item, o, s in zip(items, outcomes, scores) if o is not None and s is not None]
    rows: list[Row] = []
    dataset_rows: list[Row] = []
    for dataset in _ordered_groups([item.dataset for item, _, _ in kept]):
        selected = [(item, o, s) for item, o, s in kept if item.dataset == dataset]
        detail, whole = _dataset_rows(dataset, [x[0] for x in selected], [x[1] for x in selected], [x[2] for x in selected])
        rows.extend(detail)
        rows.append(whole)
        dataset_rows.append(whole)
    if len(dataset_rows) > 1:
        rows.append(_count_row("all", POOLED_LABEL, OVERALL, [o for _, o, _ in kept]))
        if all(not math.isnan(r.accuracy) for r in dataset_rows):
            if any(r.low is None for r in dataset_rows):
                mean = sum(r.accuracy for r in dataset_rows) / len(dataset_rows)
                rows.append(Row("all", "overall (mean of datasets)", OVERALL, len(kept), None, 0, mean, None, None, COMPOSITE_METHOD))
            else:
                mean, low, high = _mean_of_datasets(dataset_rows)
                ties = sum(r.ties for r in dataset_rows)
                rows.append(Row("all", "overall (mean of datasets)", OVERALL, len(kept), None, ties, mean, low, high, WEIGHTED_METHOD))
    return rows


def _mean_of_datasets(rows: Sequence[Row]) -> tuple[float, float, float]:
    """Equal-weight mean of dataset scores; the variance of each comes from its own interval."""
    mean = sum(r.accuracy for r in rows) / len(rows)
    variance = sum(((r.high - r.low) / (2 * Z_95)) ** 2 for r in rows) / len(rows) ** 2
    half = Z_95 * math.sqrt(variance)
    return mean, max(0.0, mean - half), min(1.0, mean + half)
