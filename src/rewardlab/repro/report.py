"""The `rewardlab repro grm` report: Markdown tables, a JSON copy and a bar plot, written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.files import finish_figure, write_text_atomic
from rewardlab.repro.analysis import OOD_MEAN, Analysis, model_name
from rewardlab.repro.config import ReproConfig
from rewardlab.repro.evaluation import ID_DATASET, EvalPlan
from rewardlab.repro.methods import BASELINE, METHODS, Method
from rewardlab.repro.stats import INTERVAL_NOTE, Estimate

REPORT_MD, REPORT_JSON, PLOT_PNG = "report.md", "report.json", "accuracy.png"


@dataclass
class ReportContext:
    """What the report says besides the numbers: how the run was made and what it cost."""

    config: ReproConfig
    methods: list[Method]
    plan: EvalPlan
    split: dict[str, Any]
    environment: dict[str, str]
    timings: dict[str, dict[str, float]]
    session_wall_s: float
    total_wall_s: float
    sessions: int
    # model name ("base" for the untrained model) -> {"nll_per_token", "tokens"}: see `repro/lm_check.py`
    lm_nll: dict[str, dict[str, Any]] = field(default_factory=dict)


def _pct(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _cell(estimate: Estimate | None) -> str:
    if estimate is None or math.isnan(estimate.value):
        return "—"
    return f"{_pct(estimate.value)} [{_pct(estimate.low)}, {_pct(estimate.high)}]"


def _diff_cell(estimate: Estimate | None) -> str:
    if estimate is None or math.isnan(estimate.value):
        return "—"
    sign = lambda v: f"{100 * v:+.1f}"  # noqa: E731
    return f"{sign(estimate.value)} [{sign(estimate.low)}, {sign(estimate.high)}]"


def column_title(column: str, plan: EvalPlan, analysis: Analysis) -> str:
    if column == OOD_MEAN:
        return "OOD mean"
    n = next(len(d.items) for d in plan.datasets if d.name == column) - analysis.unscored.get(column, 0)
    title = "ID: held-out" if column == ID_DATASET else column
    return f"{title} (n={n})"


def _verdict(analysis: Analysis) -> list[str]:
    """One computed sentence per GRM method: is its difference from BT distinguishable from zero?"""
    lines = []
    for name, diffs in analysis.differences.items():
        if not name.startswith("grm"):
            continue
        for column in (ID_DATASET, OOD_MEAN):
            d = diffs.get(column)
            if d is None or math.isnan(d.value):
                continue
            where = "in distribution" if column == ID_DATASET else "out of distribution (mean)"
            if d.low > 0:
                text = "better than BT; the 95% interval of the difference excludes 0"
            elif d.high < 0:
                text = "worse than BT; the 95% interval of the difference excludes 0"
            else:
                text = "not distinguishable from BT at this scale; the 95% interval of the difference includes 0"
            lines.append(f"- {METHODS[name].label}, {where}: {100 * d.value:+.1f} points, {text}.")
    return lines


def to_markdown(analysis: Analysis, context: ReportContext) -> str:
    config, plan, split = context.config, context.plan, context.split
    titles = [column_title(c, plan, analysis) for c in analysis.columns]
    lines = [
        "# GRM reproduction in miniature (Yang et al. 2024, Table 1)",
        "",
        f"Command: `{config.to_command()}`",
        "",
        f"Wall time: {context.session_wall_s / 60:.1f} min for this invocation; {context.total_wall_s / 60:.1f} min over "
        f"{context.sessions} invocation(s) of this output folder (resumed runs reuse finished trainings and evaluations).",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in context.environment.items()),
        "",
        "## Setup",
        "",
        f"- Base model `{config.model}`; {config.backbone_description()}; every method trains from the same base.",
        f"- Training data: {split['train']} pairs from `{split['source']}` (loaded {split['loaded']}, dropped "
        f"{_dropped(split)}), each side at most {config.max_length} tokens; {split['heldout']} further pairs of the "
        f"same source are held out as the in-distribution test set (seeded split, data seed {config.data_seed}).",
    ]
    if split.get("hh_rlhf_test_split"):
        lines.append(
            "- Note: this hh-rlhf file is the **test** split of Anthropic's harmless-base data; the only copy available "
            "offline. Training and held-out pairs are disjoint, but both come from that test split."
        )
    lines += [
        f"- Every model: {config.steps} optimizer steps of {config.batch_size} pairs, lr {config.lr:g} (cosine, 10% "
        f"warm-up), seeds {', '.join(map(str, config.seeds))} (seed sets head initialisation, dropout and batch order; "
        "the data split is the same for all). α={:g}, β={:g}, label smoothing ε={:g}.".format(config.alpha, config.beta, config.label_smoothing),
        f"- Scoring: up to {config.eval_max_length} tokens, longer prompts cut from the left; pairs whose response alone "
        "does not fit are unscored for every model and left out (see Data).",
        "",
        "## Accuracy (%), mean over seeds [95% interval]",
        "",
        INTERVAL_NOTE.format(samples=config.bootstrap_samples),
        "",
        "| method | head | loss | " + " | ".join(titles) + " |",
        "|---|---|---|" + "---:|" * len(titles),
    ]
    for method in context.methods:
        loss = method.describe(config.alpha, config.beta, config.label_smoothing)
        if method.name in analysis.not_applicable:
            note = analysis.not_applicable[method.name]
            lines.append(f"| {method.label} | {method.head} | {loss} | " + " | ".join(note for _ in titles) + " |")
            continue
        cells = [_cell(analysis.estimates[method.name].get(c)) for c in analysis.columns]
        lines.append(f"| {method.label} | {method.head} | {loss} | " + " | ".join(cells) + " |")

    if analysis.differences:
        lines += [
            "",
            "## Difference from BT (percentage points) [95% paired interval]",
            "",
            "| method | " + " | ".join(titles) + " |",
            "|---|" + "---:|" * len(titles),
        ]
        for method in context.methods:
            if method.name in analysis.differences:
                cells = [_diff_cell(analysis.differences[method.name].get(c)) for c in analysis.columns]
                lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
        verdict = _verdict(analysis)
        if verdict:
            lines += ["", *verdict]
    elif BASELINE not in analysis.estimates:
        lines += ["", "No differences from BT: the BT baseline was not part of this run."]

    lines += ["", "## Per seed (%)", "", "| method | seed | " + " | ".join(titles) + " |", "|---|---:|" + "---:|" * len(titles)]
    for method in context.methods:
        if method.name not in analysis.estimates:
            continue
        for index, seed in enumerate(analysis.seeds):
            cells = [_pct(analysis.estimates[method.name][c].per_seed[index]) if c in analysis.estimates[method.name] else "—"
                     for c in analysis.columns]
            lines.append(f"| {method.label} | {seed} | " + " | ".join(cells) + " |")

    lines += _lm_check_lines(analysis, context)

    if analysis.subset_columns:
        trained = [m for m in context.methods if m.name in analysis.subsets]
        lines += ["", "## Subsets (%), mean over seeds [95% interval]", "",
                  "| subset | " + " | ".join(m.label for m in trained) + " |", "|---|" + "---:|" * len(trained)]
        for key in analysis.subset_columns:
            n = next(iter(analysis.subsets.values()))[key].n
            lines.append(f"| {key} (n={n}) | " + " | ".join(_cell(analysis.subsets[m.name][key]) for m in trained) + " |")

    lines += ["", "## Data", "", "| dataset | role | pairs | unscored (too long) | source |", "|---|---|---:|---:|---|"]
    for dataset in plan.datasets:
        role = "in-distribution" if dataset.name == ID_DATASET else "out-of-distribution"
        full = plan.full_sizes.get(dataset.name, len(dataset.items))
        size = f"{len(dataset.items)}" if full == len(dataset.items) else f"{len(dataset.items)} (random sample of {full})"
        lines.append(f"| {dataset.name} | {role} | {size} | {analysis.unscored.get(dataset.name, 0)} | `{dataset.spec}` |")
    for name, reason in plan.excluded.items():
        lines.append(f"| {name} | left out: {reason} | — | — | — |")
    if any(plan.full_sizes.get(d.name, len(d.items)) > len(d.items) for d in plan.datasets):
        lines += ["", f"Larger suite datasets are a seeded random sample of {config.eval_limit} pairs (`--eval-limit`, "
                      f"seed {config.data_seed}), the same for every model."]

    lines += ["", "## Time per model (seconds, summed over invocations)", "", "| model | training | evaluation |", "|---|---:|---:|"]
    for name, timing in context.timings.items():
        lines.append(f"| {name} | {timing.get('train_s', 0):.0f} | {timing.get('eval_s', 0):.0f} |")
    lines += ["", f"![accuracy by dataset]({PLOT_PNG})", ""]
    return "\n".join(lines)


def _lm_check_lines(analysis: Analysis, context: ReportContext) -> list[str]:
    """The language-model check table: NLL of the held-out chosen responses per method and seed."""
    base = context.lm_nll.get("base")
    if base is None:
        return []
    lines = ["", "## Language-model check: NLL of the held-out chosen responses (nat/token)", "",
             f"Mean negative log-likelihood per token of the {base['tokens']} chosen-response tokens of the held-out "
             f"pairs under each model's own language-model head; the base model's is {base['nll_per_token']:.4f}. "
             "GRM's regularizer is meant to stop reward training from degrading the language model; if BT leaves "
             "this value where the base model had it, there was nothing to protect at this scale.", "",
             "| method | " + " | ".join(f"seed {seed}" for seed in analysis.seeds) + " | mean | change from base |",
             "|---|" + "---:|" * (len(analysis.seeds) + 2)]
    for method in context.methods:
        values = [context.lm_nll.get(model_name(method.name, seed), {}).get("nll_per_token") for seed in analysis.seeds]
        if any(value is None for value in values):
            continue
        mean = sum(values) / len(values)
        lines.append(f"| {method.label} | " + " | ".join(f"{value:.4f}" for value in values)
                     + f" | {mean:.4f} | {mean - base['nll_per_token']:+.4f} |")
    return lines


def _dropped(split: dict[str, Any]) -> str:
    parts = {**split.get("skipped_by_loader", {}), **split.get("dropped", {})}
    if not parts:
        return "none"
    return ", ".join(f"{count} {reason}" for reason, count in sorted(parts.items()))


def to_json(analysis: Analysis, context: ReportContext) -> dict[str, Any]:
    return {
        "command": context.config.to_command(),
        "config": context.config.to_dict(),
        "environment": context.environment,
        "wall_time_s": {"this_invocation": round(context.session_wall_s, 1), "all_invocations": round(context.total_wall_s, 1)},
        "invocations": context.sessions,
        "split": context.split,
        "datasets": {
            d.name: {
                "items": len(d.items),
                "sampled_from": context.plan.full_sizes.get(d.name, len(d.items)),
                "unscored": analysis.unscored.get(d.name, 0),
                "source": d.spec,
            }
            for d in context.plan.datasets
        },
        "excluded_datasets": context.plan.excluded,
        "intervals": INTERVAL_NOTE.format(samples=context.config.bootstrap_samples),
        "seeds": list(analysis.seeds),
        "not_applicable": analysis.not_applicable,
        "accuracy": {m: {c: e.to_dict() for c, e in cols.items()} for m, cols in analysis.estimates.items()},
        "difference_from_bt": {m: {c: e.to_dict() for c, e in cols.items()} for m, cols in analysis.differences.items()},
        "subsets": {m: {c: e.to_dict() for c, e in cols.items()} for m, cols in analysis.subsets.items()},
        "timings_s": context.timings,
        "lm_nll_heldout_chosen": {name: {"nll_per_token": v["nll_per_token"], "tokens": v["tokens"]}
                                  for name, v in context.lm_nll.items()},
    }


def plot(analysis: Analysis, methods: Sequence[Method], plan: EvalPlan, path: Path) -> Path:
    """Grouped bars: one group per column (ID, each OOD dataset, OOD mean), one bar per trained method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [m for m in methods if m.name in analysis.estimates]
    columns = analysis.columns
    width = 0.8 / max(1, len(trained))
    figure, axes = plt.subplots(figsize=(max(7.0, 1.6 * len(columns) + 2), 4.6))
    for index, method in enumerate(trained):
        xs, heights, lower, upper = [], [], [], []
        for position, column in enumerate(columns):
            estimate = analysis.estimates[method.name].get(column)
            if estimate is None or math.isnan(estimate.value):
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            heights.append(100 * estimate.value)
            lower.append(100 * (estimate.value - estimate.low))
            upper.append(100 * (estimate.high - estimate.value))
        axes.bar(xs, heights, width, yerr=[lower, upper], capsize=3, label=method.label)
    axes.axhline(50, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xticks(range(len(columns)))
    axes.set_xticklabels([column_title(c, plan, analysis).replace(" (", "\n(") for c in columns], fontsize=8)
    axes.set_ylim(0, 100)
    axes.set_ylabel(f"accuracy %, mean of {len(analysis.seeds)} seed(s), 95% interval")
    axes.set_title("GRM vs BT baselines, in and out of distribution")
    axes.legend(fontsize=7, loc="lower right")
    return finish_figure(figure, path)


def write_report(analysis: Analysis, context: ReportContext, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.json and accuracy.png into ``out_dir``."""
    paths = {"markdown": out_dir / REPORT_MD, "json": out_dir / REPORT_JSON, "plot": out_dir / PLOT_PNG}
    write_text_atomic(paths["markdown"], to_markdown(analysis, context))
    write_text_atomic(paths["json"], json.dumps(to_json(analysis, context), indent=2, ensure_ascii=False) + "\n")
    plot(analysis, context.methods, context.plan, paths["plot"])
    return paths
