"""The RL over-optimization report: CSV, PNG and Markdown of gold and proxy against KL, per recipe.

Every held-out evaluation uses the same prompts and sample seeds, so a step's gain over step 0 is a paired
difference: its interval is the 95% normal interval of the per-prompt mean differences (prompts are the
independent units; a prompt's samples are not). The plot follows the best-of-N one: x is KL to the initial
policy (the sampled sequence estimate, nats), gold gain solid with its band, proxy gain dashed on its own
right-hand axis with its 0 level with gold's, one colour per recipe, and Gao's RL form fitted per recipe
(dotted).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import ConfigError
from rewardlab.files import finish_figure, write_text_atomic
from rewardlab.overopt.estimator import GaoRLFit, fit_gao_rl
from rewardlab.overopt.report import align_zero, draw_curves, json_ready, panel_figure
from rewardlab.overopt.report import gold_extent as bon_gold_extent
from rewardlab.overopt.rl import GENERATIONS_FILE, RLRun, read_log_lines

CSV_NAME, PLOT_NAME, MARKDOWN_NAME, JSON_NAME = "rl_curves.csv", "rl_curves.png", "rl_report.md", "rl_report.json"
DEFAULT_TITLE = "RL over-optimization: proxy vs gold"
Z95 = 1.959963984540054
FIT_NOTE = (
    "Gao RL fit: gold gain over step 0 = d(α − β·log d) with d = √KL, least squares through the origin over the "
    "evaluations with KL > 0; the peak is at d* = exp(α/β − 1) (KL* = d*², gain β·d*), and β <= 0 means no peak."
)
CSV_COLUMNS = ("recipe", "step", "kl", "kl_se", "kl_k3_per_token", "gold", "gold_se", "gold_gain", "gold_gain_low", "gold_gain_high",
               "proxy", "proxy_se", "proxy_gain", "proxy_gain_low", "proxy_gain_high", "length_tokens", "truncated",
               "trl_kl_per_token", "train_proxy", "train_gold")


@dataclass
class RLCurve:
    """One recipe's held-out curve: per evaluation step, KL, gold and proxy (with paired gains over step 0)."""

    recipe: str
    rows: list[dict[str, Any]]
    features: dict[int, dict[str, float]]
    fit: GaoRLFit | None
    fit_error: str = ""

    @property
    def steps(self) -> list[int]:
        return [int(r["step"]) for r in self.rows]

    def column(self, name: str) -> np.ndarray:
        return np.array([r[name] for r in self.rows], dtype=float)


def _paired_gains(folder: Path, key: str) -> dict[int, tuple[float, float, float]]:
    """Per step: mean gain of ``key`` over step 0 and its 95% interval, with prompts as the independent units."""
    rows = read_log_lines(folder / GENERATIONS_FILE)
    base = {(r["prompt_id"], r["sample"]): r[key] for r in rows if r["step"] == 0}
    by_step: dict[int, dict[str, list[float]]] = {}
    for r in rows:
        start = base.get((r["prompt_id"], r["sample"]))
        if start is not None:
            by_step.setdefault(int(r["step"]), {}).setdefault(r["prompt_id"], []).append(r[key] - start)
    gains = {}
    for step, prompts in by_step.items():
        means = np.array([np.mean(v) for v in prompts.values()])
        se = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else 0.0
        gains[step] = (float(means.mean()), float(means.mean() - Z95 * se), float(means.mean() + Z95 * se))
    return gains


def _trl_metrics(train_log: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    metrics: dict[int, dict[str, float]] = {}
    for entry in train_log:
        if "step" in entry and "kl" in entry:
            metrics[int(entry["step"])] = {"trl_kl_per_token": float(entry.get("kl", math.nan)),
                                           "train_proxy": float(entry.get("rewards/proxy/mean", math.nan)),
                                           "train_gold": float(entry.get("rewards/gold/mean", math.nan))}
    return metrics


def rl_curve(run: RLRun) -> RLCurve:
    """The curve of one run from its evaluation records, generations and TRL log."""
    gold_gains, proxy_gains = _paired_gains(run.folder, "gold"), _paired_gains(run.folder, "proxy")
    trl = _trl_metrics(run.train_log)
    rows, features = [], {}
    for record in sorted(run.evals, key=lambda r: r["step"]):
        step = int(record["step"])
        gold_gain = gold_gains.get(step, (math.nan,) * 3)
        proxy_gain = proxy_gains.get(step, (math.nan,) * 3)
        extra = trl.get(step, {"trl_kl_per_token": 0.0 if step == 0 else math.nan, "train_proxy": math.nan,
                               "train_gold": math.nan})
        rows.append({"recipe": run.label, "step": step, "kl": record["kl"], "kl_se": record["kl_se"],
                     "kl_k3_per_token": record.get("kl_k3_per_token", math.nan),
                     "gold": record["gold"], "gold_se": record["gold_se"], "gold_gain": gold_gain[0],
                     "gold_gain_low": gold_gain[1], "gold_gain_high": gold_gain[2], "proxy": record["proxy"],
                     "proxy_se": record["proxy_se"], "proxy_gain": proxy_gain[0], "proxy_gain_low": proxy_gain[1],
                     "proxy_gain_high": proxy_gain[2], "length_tokens": record["length_tokens"],
                     "truncated": record["truncated"], **extra})
        features[step] = dict(record.get("features") or {})
    fit, error = None, ""
    try:
        fit = fit_gao_rl([r["kl"] for r in rows], [r["gold_gain"] for r in rows])
    except ConfigError as problem:
        error = str(problem)
    return RLCurve(run.label, rows, features, fit, error)


def to_csv(curves: Mapping[str, RLCurve], *, condition: str | None = None) -> str:
    """Every evaluation point of every recipe (a leading ``condition`` column when one is given)."""
    buffer = io.StringIO()
    columns = (("condition",) if condition is not None else ()) + CSV_COLUMNS + tuple(
        f"share_{name}" for name in _feature_names(curves))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for curve in curves.values():
        for row in curve.rows:
            shares = {f"share_{k}": v for k, v in curve.features.get(row["step"], {}).items()}
            values = {**row, **shares, **({"condition": condition} if condition is not None else {})}
            writer.writerow({k: ("" if isinstance(values.get(k), float) and math.isnan(values[k]) else values.get(k, ""))
                             for k in columns})
    return buffer.getvalue()


def _feature_names(curves: Mapping[str, RLCurve]) -> list[str]:
    names: list[str] = []
    for curve in curves.values():
        for shares in curve.features.values():
            names += [k for k in shares if k not in names]
    return names


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _peak(curve: RLCurve) -> dict[str, Any]:
    """The evaluation with the highest gold gain, and the fall from it to the last evaluation."""
    gains = curve.column("gold_gain")
    best = int(np.nanargmax(gains)) if np.isfinite(gains).any() else 0
    last = curve.rows[-1]
    return {"step": curve.rows[best]["step"], "kl": curve.rows[best]["kl"], "gain": float(gains[best]),
            "fall": float(gains[best] - last["gold_gain"])}


def summary(curve: RLCurve) -> dict[str, Any]:
    """The numbers a reader wants per recipe (start, peak, end, fit, gaming signals)."""
    first, last = curve.rows[0], curve.rows[-1]
    fit = curve.fit.to_dict() if curve.fit is not None else None
    return {"recipe": curve.recipe, "steps": last["step"], "kl_end": last["kl"], "gold_start": first["gold"],
            "gold_end": last["gold"], "gold_gain_end": [last["gold_gain"], last["gold_gain_low"], last["gold_gain_high"]],
            "proxy_gain_end": [last["proxy_gain"], last["proxy_gain_low"], last["proxy_gain_high"]],
            "peak": _peak(curve), "fit": fit, "fit_error": curve.fit_error,
            "length_start": first["length_tokens"], "length_end": last["length_tokens"],
            "features_start": curve.features.get(first["step"], {}), "features_end": curve.features.get(last["step"], {})}


def _interval(values: Sequence[float]) -> str:
    gain, low, high = values
    return f"{gain:+.3f} [{low:+.3f}, {high:+.3f}]"


def _fit_text(curve: RLCurve) -> str:
    fit = curve.fit
    if fit is None:
        return f"no fit ({curve.fit_error})"
    if not fit.has_peak:
        return f"α = {fit.alpha:.3g}, β = {fit.beta:.3g}, R² = {_num(fit.r2, 2)}; {fit.reason}"
    where = "inside the data" if fit.peak_within_data else f"beyond the data (an extrapolation past KL {fit.max_kl:.3g})"
    return (f"α = {fit.alpha:.3g}, β = {fit.beta:.3g}, R² = {_num(fit.r2, 2)}; peak at KL {fit.peak_kl:.3g} nats, "
            f"gain {fit.peak_gold:+.3g}, {where}")


def to_markdown(curves: Mapping[str, RLCurve], *, title: str = DEFAULT_TITLE, notes: Sequence[str] = (),
                plot_name: str = PLOT_NAME, heading: str = "#") -> str:
    """The Markdown summary: a table per recipe and what each shows (gold gains are paired over step 0)."""
    lines = [f"{heading} {title}", "", *[part for note in notes for part in (note, "")], f"![RL curves]({plot_name})", "",
             "| recipe | steps | KL at end (nats) | gold start → end | gold gain at end [95%] | proxy gain at end [95%] "
             "| best gold gain (step, KL) | fall from best to end | tokens start → end |",
             "|---|---:|---:|---|---|---|---|---:|---|"]
    for curve in curves.values():
        s = summary(curve)
        peak = s["peak"]
        lines.append(f"| {curve.recipe} | {s['steps']} | {s['kl_end']:.3g} | {s['gold_start']:.3f} → {s['gold_end']:.3f} "
                     f"| {_interval(s['gold_gain_end'])} | {_interval(s['proxy_gain_end'])} "
                     f"| {peak['gain']:+.3f} (step {peak['step']}, KL {peak['kl']:.3g}) | {peak['fall']:.3f} "
                     f"| {s['length_start']:.1f} → {s['length_end']:.1f} |")
    lines.append("")
    for curve in curves.values():
        s = summary(curve)
        shares = ", ".join(f"{k} {s['features_start'].get(k, 0):.0%} → {v:.0%}" for k, v in s["features_end"].items())
        lines += [f"{heading}# {curve.recipe}", "", f"- Gao RL fit: {_fit_text(curve)}.",
                  f"- Spurious features in held-out responses (step 0 → last): {shares or 'none measured'}.", ""]
    lines += [FIT_NOTE, "",
              "KL is the mean over held-out samples of log π(y|x) − log π_init(y|x) (the sampled sequence estimate). "
              "TRL's estimator, the per-token mean of exp(r) − r − 1 with r = log π_init − log π, is in the CSV twice: "
              "on the same held-out samples (`kl_k3_per_token`) and as TRL logged it on its training batches "
              "(`trl_kl_per_token`).", ""]
    return "\n".join(lines)


def draw_rl(gold_axis: Any, curves: Mapping[str, RLCurve], *, title: str,
            gold_limits: tuple[float, float] | None = None) -> None:
    """Draw the RL curves on ``gold_axis`` (gold gain solid with band, fit dotted) and a right axis (proxy dashed)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    proxy_axis = gold_axis.twinx()
    extents = {"gold": list(gold_limits or (0.0, 0.0)), "proxy": [0.0, 0.0]}
    handles, largest = [], 1e-6
    for index, curve in enumerate(curves.values()):
        colour = colours[index % len(colours)]
        kl = curve.column("kl")
        largest = max(largest, float(np.nanmax(kl)))
        for kind, axis, style in (("gold", gold_axis, "-"), ("proxy", proxy_axis, "--")):
            values, low, high = (curve.column(f"{kind}_gain{s}") for s in ("", "_low", "_high"))
            axis.plot(kl, values, style, color=colour, marker="o" if kind == "gold" else None, markersize=3,
                      linewidth=1.8 if kind == "gold" else 1.3)
            axis.fill_between(kl, low, high, color=colour, alpha=0.16 if kind == "gold" else 0.07, linewidth=0)
            finite = np.concatenate([values, low, high])
            finite = finite[np.isfinite(finite)]
            if finite.size:
                extents[kind] = [min(extents[kind][0], float(finite.min())), max(extents[kind][1], float(finite.max()))]
        if curve.fit is not None:
            grid = np.linspace(0.0, max(float(np.nanmax(kl)), 1e-6), 120)
            gold_axis.plot(grid, curve.fit.predict(grid), ":", color=colour, linewidth=1.0)
        handles.append(Line2D([], [], color=colour, linewidth=6, alpha=0.6, label=curve.recipe))
    handles += [Line2D([], [], color="black", linestyle="-", label="gold (gain over step 0)"),
                Line2D([], [], color="black", linestyle="--", label="proxy (gain over step 0)"),
                Line2D([], [], color="black", linestyle=":", label="Gao RL fit of gold")]
    gold_axis.set_ylabel("gold score gain over step 0 (solid)")
    proxy_axis.set_ylabel("proxy score gain over step 0 (dashed)")
    align_zero([gold_axis, proxy_axis], [tuple(extents["gold"]), tuple(extents["proxy"])])
    gold_axis.axhline(0.0, color="grey", linewidth=0.8)
    gold_axis.set_xlim(min(0.0, *(float(np.nanmin(c.column("kl"))) for c in curves.values())), largest * 1.03)
    gold_axis.set_xlabel("KL(π ‖ π_init), sampled sequence estimate (nats)")
    gold_axis.set_title(title, fontsize=11)
    gold_axis.legend(handles=handles, fontsize=8, loc="best")


def gold_extent(curves: Mapping[str, RLCurve]) -> tuple[float, float]:
    values = np.concatenate([c.column(n) for c in curves.values() for n in ("gold_gain", "gold_gain_low", "gold_gain_high")]
                            + [np.zeros(1)])
    values = values[np.isfinite(values)]
    return float(values.min()), float(values.max())


def plot_rl(panels: Mapping[str, Mapping[str, RLCurve]], path: str | Path, *, title: str = DEFAULT_TITLE) -> Path:
    """One panel per condition (title → curves), on one gold scale; written atomically."""
    return panel_figure(panels, path, title=title if len(panels) > 1 else None, width=7.6, extent=gold_extent,
                        draw=lambda axis, curves, name, limits: draw_rl(axis, curves, title=name, gold_limits=limits))


def plot_bon_and_rl(panels: Mapping[str, tuple[Mapping[str, Any], Mapping[str, RLCurve]]], path: str | Path, *,
                    title: str = "Best-of-N (left) and RL (right) against the same proxies") -> Path:
    """Per condition (title → (best-of-N curves, RL curves)) a row of two panels, every panel on one gold scale."""
    if not panels:
        raise ConfigError("nothing to plot: no conditions")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extents = [e for bon, rl in panels.values() for e in (bon_gold_extent(bon), gold_extent(rl))]
    shared = (min(low for low, _ in extents), max(high for _, high in extents))
    figure, axes = plt.subplots(len(panels), 2, figsize=(15.5, 5.2 * len(panels)), squeeze=False)
    for row, (name, (bon, rl)) in zip(axes, panels.items()):
        draw_curves(row[0], bon, title=f"best-of-N, {name}", proxy_axis="right", gold_limits=shared)
        draw_rl(row[1], rl, title=f"RL, {name}", gold_limits=shared)
    figure.suptitle(title, fontsize=12)
    return finish_figure(figure, Path(path))


def write_rl_report(curves: Mapping[str, RLCurve], out_dir: str | Path, *, title: str = DEFAULT_TITLE,
                    notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write the CSV, PNG, Markdown and JSON of ``curves`` (recipe → curve) into ``out_dir``; returns the paths."""
    folder = Path(out_dir)
    paths = {"csv": folder / CSV_NAME, "plot": folder / PLOT_NAME, "markdown": folder / MARKDOWN_NAME,
             "json": folder / JSON_NAME}
    write_text_atomic(paths["csv"], to_csv(curves))
    plot_rl({title: curves}, paths["plot"], title=title)
    write_text_atomic(paths["markdown"], to_markdown(curves, title=title, notes=notes))
    payload = {"notes": list(notes), "recipes": {label: summary(curve) for label, curve in curves.items()},
               "fit_note": FIT_NOTE}
    write_text_atomic(paths["json"], json.dumps(json_ready(payload), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return paths
