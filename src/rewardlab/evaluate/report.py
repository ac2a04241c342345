"""Render an evaluation as Markdown and JSON, side by side for several models, and write files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rewardlab.evaluate.formats.rmbench import RMBENCH_FORMAT, STYLES
from rewardlab.evaluate.metrics import DATASET, OVERALL, POOLED_LABEL, SECTION, Row
from rewardlab.evaluate.rmbench import StyleMatrix, domain_matrices
from rewardlab.evaluate.runner import EvalResult, ModelResult
from rewardlab.evaluate.stats import SHARE_METHOD, WEIGHTED_METHOD, WILSON_METHOD
from rewardlab.files import write_text_atomic
from rewardlab.machine import describe_machine

RULE = (
    "An item is correct iff reward(chosen) > reward(rejected), strictly; for best-of-N items the chosen "
    "answer must score above every rejected one. Ties (equal rewards) count as wrong and are also listed."
)
INTERVALS = (
    f"95% intervals: {WILSON_METHOD} for accuracies over items; {WEIGHTED_METHOD} for weighted scores "
    "(RewardBench sections and score, the mean over datasets)."
)
RMBENCH_INTERVALS = (
    f"RM-Bench: {SHARE_METHOD} for each domain's score and hard/normal/easy; {WEIGHTED_METHOD} for hard, "
    "normal, easy and the RM-Bench score over domains. Its ties count tied comparisons (nine per item)."
)
RMBENCH_MATRIX_NOTE = (
    "Accuracy of reward(chosen in the row's style) > reward(rejected in the column's style), strictly. "
    "Cells above the diagonal are hard (the chosen answer is plainer), the diagonal normal, below it easy."
)

RowKey = tuple[str, str, str]


def _key(row: Row) -> RowKey:
    return (row.dataset, row.level, row.label)


def _percent(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def format_cell(row: Row | None, reference_n: int | None = None) -> str:
    """``72.4 [66.1, 78.0]``: accuracy and interval in percent."""
    if row is None:
        return "—"
    text = _percent(row.accuracy)
    text += " (composite)" if row.low is None else f" [{_percent(row.low)}, {_percent(row.high)}]"
    if reference_n is not None and row.n != reference_n:
        text += f" (n={row.n})"
    return text


def _ordered_keys(result: EvalResult) -> list[RowKey]:
    keys: dict[RowKey, None] = {}
    for model in result.models:
        for row in model.rows:
            keys.setdefault(_key(row), None)
    return list(keys)


def _label(row: Row) -> str:
    if row.level == DATASET:
        return f"**{row.label}**"
    if row.level == SECTION:
        return f"section: {row.label}"
    if row.level == OVERALL:
        return f"**{row.label}**"
    return row.label


def environment() -> dict[str, str]:
    """Versions and hardware, so a report says where its numbers (and speeds) come from."""
    return describe_machine()


def to_markdown(result: EvalResult) -> str:
    """The full report: accuracy table, ties, data accounting, models and speed."""
    names = [m.name for m in result.models]
    lookup = [{_key(r): r for r in m.rows} for m in result.models]
    has_rmbench = any(d.format == RMBENCH_FORMAT for d in result.datasets)
    lines = ["# Reward model evaluation", "", RULE, "", INTERVALS, ""]
    if has_rmbench:
        lines += [RMBENCH_INTERVALS, ""]
    lines += ["## Accuracy (%)", ""]
    lines.append("| dataset | subset | n | " + " | ".join(names) + " |")
    lines.append("|---|---|---:|" + "---:|" * len(names))
    for key in _ordered_keys(result):
        rows = [table.get(key) for table in lookup]
        first = next(r for r in rows if r is not None)
        cells = [format_cell(r, first.n) for r in rows]
        lines.append(f"| {first.dataset} | {_label(first)} | {first.n} | " + " | ".join(cells) + " |")

    lines += ["", "## Ties (equal rewards, counted as wrong)", ""]
    lines.append("| dataset | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for key in _ordered_keys(result):
        if key[1] != DATASET and key[2] != POOLED_LABEL:
            continue
        rows = [table.get(key) for table in lookup]
        first = next(r for r in rows if r is not None)
        lines.append(f"| {first.dataset} ({first.label}) | " + " | ".join("—" if r is None else str(r.ties) for r in rows) + " |")

    if has_rmbench:
        lines += ["", "## RM-Bench style matrices (%)", "", RMBENCH_MATRIX_NOTE, ""]
        lines.append("| model | dataset | domain | n | chosen style | " + " | ".join(f"vs {s}" for s in STYLES) + " |")
        lines.append("|---|---|---|---:|---|" + "---:|" * len(STYLES))
        for model in result.models:
            for dataset_name, matrices in rmbench_matrices(result, model).items():
                for domain, matrix in matrices.items():
                    for i, style in enumerate(STYLES):
                        cells = " | ".join(_percent(matrix.accuracy(i, j)) for j in range(len(STYLES)))
                        lines.append(f"| {model.name} | {dataset_name} | {domain} | {matrix.n} | {style} | {cells} |")

    lines += ["", "## Data", "", "| dataset | format | source | items | dropped while loading |", "|---|---|---|---:|---|"]
    for dataset in result.datasets:
        dropped = ", ".join(f"{reason}: {count}" for reason, count in sorted(dataset.report.skipped.items())) or "none"
        lines.append(f"| {dataset.name} | {dataset.format} | `{dataset.spec}` | {len(dataset.items)} | {dropped} |")

    lines += [
        "",
        "## Models and scoring speed",
        "",
        "| model | kind | device | dtype | length limit | items scored | dropped (too long) | prompt cut to fit "
        "| conversations | seconds | pairs/s |",
        "|---|---|---|---|---|---:|---|---|---:|---:|---:|",
    ]
    for model in result.models:
        unscored = ", ".join(f"{name}: {count}" for name, count in model.unscored.items()) or "0"
        cut = ", ".join(f"{name}: {count}" for name, count in model.cut.items()) or "0"
        limit = f"{model.info.get('max_length', '')} ({model.info.get('truncation', 'prompt-left')})"
        lines.append(
            f"| {model.name} | {model.info.get('kind', '')} | {model.info.get('device', '')} | {model.info.get('dtype', '')} "
            f"| {limit} | {model.items_scored} | {unscored} | {cut} | {model.conversations} | {model.seconds:.1f} "
            f"| {model.pairs_per_second:.1f} |"
        )
    lines += [
        "",
        "pairs/s counts evaluation items (a best-of-N group counts once) per second of model time. Over-length "
        "items follow each model's saved truncation setting: `drop` leaves them out (dropped), `prompt-left` cuts "
        "the oldest prompt tokens (prompt cut); an item whose response alone is too long is dropped either way.",
        "",
    ]
    env = environment()
    lines.append("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    return "\n".join(lines) + "\n"


def rmbench_matrices(result: EvalResult, model: ModelResult) -> dict[str, dict[str, StyleMatrix]]:
    """Dataset → domain → style matrix of one model, for every RM-Bench dataset (scored items only)."""
    matrices: dict[str, dict[str, StyleMatrix]] = {}
    start = 0
    for dataset in result.datasets:
        end = start + len(dataset.items)
        if dataset.format == RMBENCH_FORMAT:
            kept = [(item, scores) for item, scores in zip(dataset.items, model.item_scores[start:end]) if scores is not None]
            if kept:
                matrices[dataset.name] = domain_matrices([k[0] for k in kept], [k[1] for k in kept])
        start = end
    return matrices


def _matrices_json(result: EvalResult, model: ModelResult) -> dict[str, Any]:
    return {
        dataset: {
            domain: {"n": m.n, "styles": list(STYLES), "accuracy": m.matrix(), "ties": [list(r) for r in m.ties]}
            for domain, m in matrices.items()
        }
        for dataset, matrices in rmbench_matrices(result, model).items()
    }


def to_json(result: EvalResult) -> dict[str, Any]:
    """A JSON-ready dict holding the same content as the Markdown report."""
    has_rmbench = any(d.format == RMBENCH_FORMAT for d in result.datasets)
    return {
        "rule": RULE,
        "intervals": {"items": WILSON_METHOD, "weighted": WEIGHTED_METHOD, "shares": SHARE_METHOD, "level": 0.95},
        "datasets": [
            {
                "name": d.name,
                "format": d.format,
                "source": d.spec,
                "items": len(d.items),
                "skipped": dict(d.report.skipped),
                "skipped_examples": list(d.report.examples),
            }
            for d in result.datasets
        ],
        "models": [
            {
                "name": m.name,
                **m.info,
                "seconds": m.seconds,
                "items_scored": m.items_scored,
                "conversations": m.conversations,
                "pairs_per_second": None if math.isnan(m.pairs_per_second) else m.pairs_per_second,
                "unscored": dict(m.unscored),
                "dropped": dict(m.unscored),
                "cut": dict(m.cut),
                "rows": [_json_row(r) for r in m.rows],
                **({"rm_bench_matrices": _matrices_json(result, m)} if has_rmbench else {}),
            }
            for m in result.models
        ],
        "environment": environment(),
    }


def _json_row(row: Row) -> dict[str, Any]:
    data = row.to_dict()
    for field in ("accuracy", "low", "high"):
        if isinstance(data[field], float) and math.isnan(data[field]):
            data[field] = None
    return data


def write_report(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``accuracy.png`` into ``out_dir`` (each atomically), and
    ``leaderboard.json`` when a RewardBench v1/v2 dataset was evaluated."""
    from rewardlab.evaluate.leaderboard import write_leaderboard
    from rewardlab.evaluate.plot import plot_accuracy

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "report.md", "json": folder / "report.json", "plot": folder / "accuracy.png"}
    write_text_atomic(paths["markdown"], to_markdown(result))
    write_text_atomic(paths["json"], json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n")
    plot_accuracy(result, paths["plot"])
    leaderboard = write_leaderboard(result, folder)
    if leaderboard is not None:
        paths["leaderboard"] = leaderboard
    return paths

