"""The map's outputs: `map.md` (what helped, hurt, or cannot be told apart), `map.json`, `map.png`, `drift.png`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rewardlab.files import finish_figure, write_json_atomic, write_text_atomic
from rewardlab.machine import provenance
from rewardlab.repro.evaluation import EvalPlan
from rewardlab.repro.grm_map.analysis import HELPS, HURTS, OOD_MEAN, UNCLEAR, MapAnalysis, analyze_map, load_results
from rewardlab.repro.grm_map.config import BASELINE, MapConfig, describe_depth
from rewardlab.repro.stats import INTERVAL_NOTE, Estimate

MARKDOWN, JSON, MAP_PLOT, DRIFT_PLOT = "map.md", "map.json", "map.png", "drift.png"


def _pct(e: Estimate) -> str:
    return "n/a" if math.isnan(e.value) else f"{100 * e.value:.1f}"


def _diff(e: Estimate) -> str:
    if math.isnan(e.value):
        return "n/a"
    return f"{100 * e.value:+.1f} [{100 * e.low:+.1f}, {100 * e.high:+.1f}]"


def _wall(record: dict[str, Any]) -> tuple[float, int]:
    invocations = record.get("invocations", [])
    return sum(i.get("wall_s", 0.0) for i in invocations), len(invocations)


def summary_lines(analysis: MapAnalysis) -> list[str]:
    """Plain statements of where GRM helped, hurt, or could not be told from BT (OOD mean and in distribution)."""
    lines = []
    for column in (OOD_MEAN, analysis.columns[0]):
        found: dict[str, list[str]] = {HELPS: [], HURTS: [], UNCLEAR: []}
        for cell in analysis.cells:
            for v in cell.variants:
                if v.variant != BASELINE and column in v.verdicts:
                    found[v.verdicts[column]].append(f"{v.variant} at {cell.label} ({_diff(v.difference[column])})")
        total = sum(len(x) for x in found.values())
        if not total:
            continue
        where = "out of distribution (OOD mean)" if column == OOD_MEAN else f"in distribution ({column})"
        lines.append(f"- **{where}:** GRM − BT is above 0 with 95% confidence in {len(found[HELPS])} of {total} "
                     f"comparisons, below 0 in {len(found[HURTS])}, and cannot be told apart in {len(found[UNCLEAR])}.")
        for kind in (HELPS, HURTS):
            for entry in found[kind]:
                lines.append(f"  - {kind}: {entry}")
    return lines


def _drift_lines(analysis: MapAnalysis) -> list[str]:
    rows = ["| cell | variant | NLL change (nat/token) | CKA, response states | CKA, last token |", "|---|---|---:|---:|---:|"]
    for cell in analysis.cells:
        for v in cell.variants:
            rows.append(f"| {cell.label} | {v.variant} | {v.drift['nll_change']:+.4f} | {v.drift['cka_response']:.4f} | "
                        f"{v.drift['cka_last']:.4f} |")
    return rows


def _accuracy_lines(analysis: MapAnalysis) -> list[str]:
    columns = analysis.columns
    header = "| cell | variant | seeds | " + " | ".join(columns) + " | OOD verdict |"
    rows = [header, "|" + "---|" * (len(columns) + 4)]
    for cell in analysis.cells:
        for v in cell.variants:
            if v.difference is None:
                values = [f"{_pct(v.accuracy[c])}" for c in columns]
            else:
                values = [f"{_pct(v.accuracy[c])} ({_diff(v.difference[c])})" for c in columns]
            rows.append(f"| {cell.label} | {v.variant} | {len(v.seeds)} | " + " | ".join(values)
                        + f" | {v.verdicts.get(OOD_MEAN, '')} |")
    return rows


def _plot_map(analysis: MapAnalysis, path: Path, footer: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = analysis.columns
    variants = sorted({v.variant for c in analysis.cells for v in c.variants if v.variant != BASELINE})
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns) + 1, 4.2), sharey=True, squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, column in zip(axes[0], columns):
        for k, variant in enumerate(variants):
            xs, ys, lows, highs = [], [], [], []
            for i, cell in enumerate(analysis.cells):
                for v in cell.variants:
                    if v.variant == variant and v.difference is not None and not math.isnan(v.difference[column].value):
                        d = v.difference[column]
                        xs.append(i - 0.4 + width * (k + 0.5))
                        ys.append(100 * d.value)
                        lows.append(100 * (d.value - d.low))
                        highs.append(100 * (d.high - d.value))
            ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=3, label=variant)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(column)
        ax.set_xticks(range(len(analysis.cells)))
        ax.set_xticklabels([c.label.replace(", ", "\n") for c in analysis.cells], fontsize=7)
    axes[0][0].set_ylabel("GRM − BT accuracy (points, 95% interval)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("Where GRM's regularizer pays: GRM − BT per cell (depth, training pairs, epochs)")
    finish_figure(fig, path, footer=footer)


def _plot_drift(analysis: MapAnalysis, path: Path, footer: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted({v.variant for c in analysis.cells for v in c.variants}, key=lambda v: (v != BASELINE, v))
    fig, (nll_ax, cka_ax, last_ax, gap_ax) = plt.subplots(1, 4, figsize=(21, 4.6))
    positions = range(len(analysis.cells))

    def series(variant: str, value) -> list[float]:
        return [next((value(v.drift) for v in c.variants if v.variant == variant), math.nan) for c in analysis.cells]

    for variant in variants:
        nll_ax.plot(positions, series(variant, lambda d: d["nll_change"]), "o-", label=variant)
        cka_ax.plot(positions, series(variant, lambda d: 1 - d["cka_response"]), "o-", label=variant)
        last_ax.plot(positions, series(variant, lambda d: 1 - d["cka_last"]), "o-", label=variant)
    for ax, title in ((nll_ax, "held-out chosen NLL − base (nat/token)"),
                      (cka_ax, "1 − CKA with the base: states the LM head reads"),
                      (last_ax, "1 − CKA with the base: last-token state (reward head)")):
        ax.set_xticks(list(positions))
        ax.set_xticklabels([c.label.replace(", ", "\n") for c in analysis.cells], fontsize=7)
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.8)
    nll_ax.legend(fontsize=7)
    for variant in variants[1:]:
        xs, ys, lows, highs = [], [], [], []
        for cell in analysis.cells:
            bt = next((v for v in cell.variants if v.variant == BASELINE), None)
            own = next((v for v in cell.variants if v.variant == variant), None)
            if bt is None or own is None or OOD_MEAN not in own.difference:
                continue
            d = own.difference[OOD_MEAN]
            xs.append(bt.drift["nll_change"])
            ys.append(100 * d.value)
            lows.append(100 * (d.value - d.low))
            highs.append(100 * (d.high - d.value))
        gap_ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=3, label=variant)
    gap_ax.axhline(0, color="black", linewidth=0.8)
    gap_ax.set_xlabel("BT's drift: held-out chosen NLL − base (nat/token)")
    gap_ax.set_ylabel("GRM − BT, OOD mean (points)")
    gap_ax.set_title("accuracy gap against BT's drift")
    gap_ax.legend(fontsize=7)
    finish_figure(fig, path, footer=footer)


def write_map(config: MapConfig, plan: EvalPlan, out_dir: Path, record: dict[str, Any]) -> dict[str, Path]:
    """Rebuild the map from the results on disk (a partial grid gives a partial map, saying so)."""
    results = load_results(out_dir, config)
    analysis = analyze_map(config, plan, results)
    wall, invocations = _wall(record)
    machine = record["invocations"][-1]["machine"] if record.get("invocations") else {}
    paths = {"markdown": out_dir / MARKDOWN, "json": out_dir / JSON}
    sizes = ", ".join(f"{d.name} {len(d.items)}" for d in plan.out_of_distribution)
    lines = [
        "# Where does GRM's regularizer pay? A measured map",
        "",
        f"Command: `{config.to_command()}`",
        "",
        f"Measured {analysis.measured} of {analysis.planned} models of the grid; wall time {wall / 60:.1f} min over "
        f"{invocations} invocation(s) of this folder.",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "## Setup",
        "",
        f"- Base model `{config.model}`; depths: " + "; ".join(f"{d} = {describe_depth(d)}" for d in config.depths) + ".",
        f"- Training pairs: the first {', '.join(map(str, config.pairs))} of one seeded pool of `{config.train_data}` "
        f"(each side at most {config.max_length} tokens); every model of a (depth, pairs, seed) group sees the same "
        "pairs in the same order.",
        f"- Lengths {', '.join(map(str, config.sorted_epochs))} epochs are snapshots of one run per model: "
        f"{config.batch_size} pairs per step, lr {config.lr:g} constant after a warm-up of a tenth of the first epoch.",
        f"- Variants: BT (linear head) and {', '.join(config.methods)} at α ∈ {{{', '.join(f'{a:g}' for a in config.alphas)}}}, "
        f"β={config.beta:g}; seeds {', '.join(map(str, config.seeds))}.",
        f"- Evaluation: {len(plan.in_distribution.items)} held-out pairs of the training source "
        f"({plan.in_distribution.name}) and the full OOD sets ({sizes}), scored at up to {config.eval_max_length} "
        "tokens (longer prompts cut from the left; pairs whose response alone does not fit are unscored for every "
        f"model: {', '.join(f'{k} {v}' for k, v in analysis.unscored.items() if v) or 'none'}).",
        "- Drift: against the base model on the held-out chosen conversations: NLL per response token under the "
        "model's own LM head (change from the base), and linear CKA of the final hidden states (the states that "
        "predict response tokens, and the last-token state the reward head reads).",
        "",
        "## What the map shows",
        "",
        *summary_lines(analysis),
        "",
        "## Accuracy (%): mean over seeds; GRM rows give GRM − BT in points [95% interval]",
        "",
        *_accuracy_lines(analysis),
        "",
        INTERVAL_NOTE.format(samples=config.bootstrap_samples),
        "",
        "## Drift from the base model (mean over seeds)",
        "",
        *_drift_lines(analysis),
        "",
        f"Plots: [{MAP_PLOT}]({MAP_PLOT}) (GRM − BT per cell and dataset), [{DRIFT_PLOT}]({DRIFT_PLOT}) (drift per cell, "
        "and the OOD gap against BT's drift).",
        "",
    ]
    write_text_atomic(paths["markdown"], "\n".join(lines))
    write_json_atomic(paths["json"], {
        "config": config.to_dict(), "command": config.to_command(), "measured": analysis.measured,
        "planned": analysis.planned, "columns": analysis.columns, "unscored": analysis.unscored,
        "cells": [c.to_dict() for c in analysis.cells], "wall_s": wall, "invocations": invocations,
        "base_nll_per_token": record.get("base_nll_per_token"), "machine": machine,
    })
    if analysis.cells:
        paths["map_plot"] = out_dir / MAP_PLOT
        paths["drift_plot"] = out_dir / DRIFT_PLOT
        footer = (f"{config.to_command()} | {provenance(machine)} | {analysis.measured} of {analysis.planned} "
                  f"models, wall time {wall / 60:.1f} min")
        _plot_map(analysis, paths["map_plot"], footer)
        _plot_drift(analysis, paths["drift_plot"], footer)
    return paths

