"""Bar plot of accuracy by subset, one bar per model, with 95% interval error bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from rewardlab.evaluate.metrics import DATASET, SUBSET, Row  # noqa: E402
from rewardlab.evaluate.runner import EvalResult  # noqa: E402
from rewardlab.files import finish_figure  # noqa: E402


def plotted_rows(rows: list[Row]) -> list[Row]:
    """Subset rows, plus the whole-dataset row of datasets that have no subsets."""
    with_subsets = {r.dataset for r in rows if r.level == SUBSET}
    return [r for r in rows if r.level == SUBSET or (r.level == DATASET and r.dataset not in with_subsets)]


def plot_accuracy(result: EvalResult, path: str | Path) -> Path:
    """Write a grouped bar chart PNG to ``path`` (atomically) and return the path."""
    labels: list[tuple[str, str]] = []
    for model in result.models:
        for row in plotted_rows(model.rows):
            if (row.dataset, row.label) not in labels:
                labels.append((row.dataset, row.label))
    width = 0.8 / max(1, len(result.models))
    figure, axes = plt.subplots(figsize=(max(6.0, 0.55 * len(labels) * max(1, len(result.models)) + 2), 4.8))
    for index, model in enumerate(result.models):
        by_label = {(r.dataset, r.label): r for r in plotted_rows(model.rows)}
        xs, heights, lower, upper = [], [], [], []
        for position, key in enumerate(labels):
            row = by_label.get(key)
            if row is None:
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            heights.append(row.accuracy)
            lower.append(0.0 if row.low is None else row.accuracy - row.low)
            upper.append(0.0 if row.high is None else row.high - row.accuracy)
        axes.bar(xs, heights, width, yerr=[lower, upper], capsize=3, label=model.name)
    axes.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels([dataset if label in ("all", dataset) else f"{dataset}\n{label}" for dataset, label in labels],
                         rotation=45, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy (95% interval)")
    axes.set_title("Reward model accuracy by subset")
    axes.legend(fontsize=8)
    return finish_figure(figure, Path(path))
