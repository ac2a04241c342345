"""Best-of-N report for a set of proxies ("recipes"): a CSV of the curves, a PNG plot, a Markdown summary and a
JSON copy, each written atomically.

The plot follows the paper: x is KL_BoN (a top axis marks N), gold gain over N=1 solid and proxy gain dashed, one
colour per recipe, 95% interval bands. Proxy and gold scores live on different scales (a proxy's logits, a gold
scorer's correctness), so by default the proxy has its own right-hand axis with its 0 level with gold's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import ConfigError, RewardlabError
from rewardlab.files import finish_figure, write_text_atomic
from rewardlab.overopt.estimator import (
    ESTIMATOR_NOTE,
    BonCurve,
    BonDifference,
    Estimate,
    GaoFit,
    ObservedPeak,
    compare_gold,
    fit_curve,
    kl_bon,
    n_for_kl,
    observed_peak,
)

CSV_NAME, PLOT_NAME, MARKDOWN_NAME, JSON_NAME = "bon_curves.csv", "bon_curves.png", "bon_report.md", "bon_report.json"
CSV_COLUMNS = ("recipe", *BonCurve.ROW_FIELDS)
DEFAULT_TITLE = "Best-of-N over-optimization: proxy vs gold"
FIT_NOTE = (
    "Gao fit: gold gain over N=1 = d(α − βd) with d = √KL_BoN, least squares through the origin, unweighted over "
    "the N values of the curve; R² is about the mean gain. The fitted peak is at d* = α/2β (KL* = d*², gain α²/4β); "
    "with β <= 0 or α <= 0 the form has no peak after N=1. The data's peak is the N with the highest mean gold."
)


@dataclass(frozen=True)
class RecipeSummary:
    """What the report says about one recipe: its curve, the data's peak and Gao's fit (None if it failed)."""

    recipe: str
    curve: BonCurve
    peak: ObservedPeak
    fit: GaoFit | None
    fit_error: str = ""


def summarize(curves: Mapping[str, BonCurve]) -> dict[str, RecipeSummary]:
    """Observed peak and Gao fit of every recipe's curve."""
    if not curves:
        raise ConfigError("the best-of-N report needs at least one recipe's curve")
    summaries = {}
    for recipe, curve in curves.items():
        try:
            fit, error = fit_curve(curve), ""
        except RewardlabError as failure:
            fit, error = None, str(failure)
        summaries[recipe] = RecipeSummary(recipe, curve, observed_peak(curve), fit, error)
    return summaries


def compare_to(curves: Mapping[str, BonCurve], baseline: str) -> dict[str, BonDifference]:
    """Paired gold differences recipe − ``baseline`` for every other recipe."""
    if baseline not in curves:
        raise ConfigError(f"baseline recipe {baseline!r} is not among the recipes: {', '.join(curves)}")
    return {name: compare_gold(curve, curves[baseline]) for name, curve in curves.items() if name != baseline}


# --------------------------------------------------------------------------------------------- CSV and JSON


def _csv_value(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def to_csv(curves: Mapping[str, BonCurve]) -> str:
    """One row per recipe and N with the `CSV_COLUMNS`; missing intervals (no bootstrap) are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for recipe, curve in curves.items():
        for row in curve.rows():
            writer.writerow([recipe, *(_csv_value(row[name]) for name in BonCurve.ROW_FIELDS)])
    return buffer.getvalue()


def panels_to_csv(panels: Mapping[str, Mapping[str, BonCurve]]) -> str:
    """`to_csv` of several studies in one table, with a leading ``condition`` column (the panel's name)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("condition", *CSV_COLUMNS))
    for condition, curves in panels.items():
        for recipe, curve in curves.items():
            for row in curve.rows():
                writer.writerow([condition, recipe, *(_csv_value(row[name]) for name in BonCurve.ROW_FIELDS)])
    return buffer.getvalue()


def json_ready(value: Any) -> Any:
    """``value`` with nan and infinities as None, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def to_json(summaries: Mapping[str, RecipeSummary], differences: Mapping[str, BonDifference] | None = None,
            baseline: str | None = None, notes: Sequence[str] = ()) -> dict[str, Any]:
    first = next(iter(summaries.values())).curve
    return json_ready({
        "notes": list(notes),
        "estimator": ESTIMATOR_NOTE.format(samples=first.bootstrap),
        "fit": FIT_NOTE,
        "recipes": {name: {"curve": s.curve.to_dict(), "observed_peak": s.peak.to_dict(),
                           "gao_fit": None if s.fit is None else s.fit.to_dict(), "fit_error": s.fit_error}
                    for name, s in summaries.items()},
        "baseline": baseline,
        "gold_difference_from_baseline": {name: d.rows() for name, d in (differences or {}).items()},
    })


# --------------------------------------------------------------------------------------------- Markdown


def _num(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3g}"


def _signed(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:+.3g}"


def _with_interval(estimate: Estimate, signed: bool = False) -> str:
    form = _signed if signed else _num
    if math.isnan(estimate.low):
        return form(estimate.value)
    return f"{form(estimate.value)} [{form(estimate.low)}, {form(estimate.high)}]"


def _fit_peak_text(fit: GaoFit | None, error: str) -> str:
    if fit is None:
        return f"no fit ({error})"
    if not fit.has_peak:
        return fit.reason
    if not fit.peak_within_data:
        return (f"beyond the data: the fitted form peaks at KL {fit.peak_kl:.3g} nats, past the largest KL measured "
                f"({fit.max_kl:.3g} nats), an extrapolation rather than an observed peak")
    return (f"KL {fit.peak_kl:.3g} nats (N ≈ {fit.peak_n:.3g}), gold {_num(fit.offset + fit.peak_gold)} "
            f"(gain {_signed(fit.peak_gold)} over N=1), within the measured KL range (up to {fit.max_kl:.3g} nats)")


def _summary_table(summaries: Mapping[str, RecipeSummary]) -> list[str]:
    lines = ["| recipe | prompts × K | gold at N=1 | gold at largest N | peak N (data) | peak KL (data) | "
             "drop peak → largest N | peak KL (fit) | α | β | R² |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summaries.items():
        curve, peak, fit = s.curve, s.peak, s.fit
        fit_kl = ("—" if fit is None or not fit.has_peak else
                  f"{fit.peak_kl:.3g}" if fit.peak_within_data else f"beyond data ({fit.peak_kl:.3g})")
        fit_cells = ["—", "—", "—"] if fit is None else [_num(fit.alpha), _num(fit.beta), f"{fit.r2:.3f}"]
        lines.append(f"| {name} | {curve.prompts} × {curve.k} | {_with_interval(curve.gold_start)} | "
                     f"{_with_interval(peak.last_gold)} (N={peak.last_n}) | {peak.n} | {peak.kl:.3g} | "
                     f"{_with_interval(peak.drop)} | {fit_kl} | " + " | ".join(fit_cells) + " |")
    return lines


def _recipe_lines(s: RecipeSummary) -> list[str]:
    curve, peak, fit = s.curve, s.peak, s.fit
    last = len(curve.ns) - 1
    proxy_last = Estimate(float(curve.proxy_mean[last]), float(curve.proxy_low[last]), float(curve.proxy_high[last]))
    lines = [
        f"### {s.recipe}",
        "",
        f"- {curve.prompts} prompts × {curve.k} samples; N from {int(curve.ns[0])} to {peak.last_n} "
        f"(KL up to {peak.last_kl:.3g} nats).",
        f"- Gold at N=1: {_with_interval(curve.gold_start)}; at N={peak.last_n}: {_with_interval(peak.last_gold)}.",
        f"- Proxy at N=1: {_with_interval(curve.proxy_start)}; at N={peak.last_n}: {_with_interval(proxy_last)}.",
        f"- Peak (data): N={peak.n}, KL {peak.kl:.3g} nats, gold {_with_interval(peak.gold)}, a gain of "
        f"{_with_interval(peak.gain, signed=True)} over N=1.",
        f"- Drop from the peak to N={peak.last_n}: {_with_interval(peak.drop)}"
        + (" (the peak is the largest N: no drop)." if peak.n == peak.last_n else
           " (interval at these two N values, paired over prompts)."),
        f"- Peak (Gao fit): {_fit_peak_text(fit, s.fit_error)}.",
    ]
    if fit is not None:
        lines.append(f"- Fit: α = {_num(fit.alpha)}, β = {_num(fit.beta)}, R² = {fit.r2:.3f} over {fit.points} N values.")
    return lines + [""]


def _difference_lines(differences: Mapping[str, BonDifference], baseline: str) -> list[str]:
    lines = [f"## Gold difference from {baseline} (paired over prompts, 95% interval)", "",
             "| recipe | N | KL | gold − baseline | verdict |", "|---|---:|---:|---:|---|"]
    for name, d in differences.items():
        last = len(d.ns) - 1
        value, low, high = float(d.difference[last]), float(d.low[last]), float(d.high[last])
        if math.isnan(low):
            verdict = "no interval (no bootstrap)"
        elif low > 0:
            verdict = f"higher than {baseline}; the interval excludes 0"
        elif high < 0:
            verdict = f"lower than {baseline}; the interval excludes 0"
        else:
            verdict = f"not distinguishable from {baseline}; the interval includes 0"
        lines.append(f"| {name} | {int(d.ns[last])} | {float(d.kl[last]):.3g} | "
                     f"{_with_interval(Estimate(value, low, high), signed=True)} | {verdict} |")
    return lines + [""]


def to_markdown(summaries: Mapping[str, RecipeSummary], *, title: str = DEFAULT_TITLE, notes: Sequence[str] = (),
                differences: Mapping[str, BonDifference] | None = None, baseline: str | None = None,
                plot_name: str | None = PLOT_NAME) -> str:
    """The summary: notes, a table of every recipe, one section per recipe and, with a baseline, paired differences."""
    first = next(iter(summaries.values())).curve
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += [ESTIMATOR_NOTE.format(samples=first.bootstrap), "", FIT_NOTE, "", "## Summary", "",
              *_summary_table(summaries), ""]
    if plot_name:
        lines += [f"![best-of-N curves]({plot_name})", ""]
    if differences and baseline:
        lines += _difference_lines(differences, baseline)
    lines += ["## Recipes", ""]
    for summary in summaries.values():
        lines += _recipe_lines(summary)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- the plot


def _n_ticks(largest: int) -> list[int]:
    ticks = [n for n in (2**i for i in range(40)) if n <= largest]
    if largest not in ticks and (not ticks or largest / ticks[-1] >= 1.4):
        ticks.append(largest)
    return ticks


def align_zero(axes: Sequence[Any], extents: Sequence[tuple[float, float]]) -> None:
    """Give every axis the y-limits that hold its (low, high) extent and put 0 at the same height on all of them."""
    spans = []
    for low, high in extents:
        up, down = max(high, 0.0), max(-low, 0.0)
        if up + down == 0:
            up = 1.0
        pad = 0.06 * (up + down)
        spans.append((up + pad if up > 0 else 0.0, down + pad if down > 0 else 0.0))
    fraction = min(0.95, max(0.05, max(down / (up + down) for up, down in spans)))
    for axis, (up, down) in zip(axes, spans):
        down = max(down, fraction * up / (1 - fraction))
        up = max(up, (1 - fraction) * down / fraction)
        axis.set_ylim(-down, up)


def _with_origin(curve: BonCurve, values: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, ...]:
    """The shifted series with the N=1 point (KL 0, gain 0) in front when N=1 is not among the curve's N."""
    if int(curve.ns[0]) == 1:
        return curve.kl, values, low, high
    return tuple(np.concatenate(([0.0], series)) for series in (curve.kl, values, low, high))


def _kl_to_n(kl: np.ndarray) -> np.ndarray:
    return np.asarray(n_for_kl(np.clip(np.nan_to_num(np.asarray(kl, dtype=float)), 0.0, 50.0)))


def _n_to_kl(n: np.ndarray) -> np.ndarray:
    return np.asarray(kl_bon(np.clip(np.nan_to_num(np.asarray(n, dtype=float), nan=1.0), 1.0, 1e20)))


def draw_curves(gold_axis: Any, curves: Mapping[str, BonCurve], *, title: str, proxy_axis: str,
                 gold_limits: tuple[float, float] | None = None) -> None:
    """Draw shifted gold (solid) and proxy (dashed) curves with 95% bands on ``gold_axis`` (see `plot_curves`).

    ``gold_limits`` widens the gold extent (panels of one figure share it, so their gold scales compare).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    proxy_axes = gold_axis.twinx() if proxy_axis == "right" else gold_axis
    extents = {"gold": list(gold_limits or (0.0, 0.0)), "proxy": [0.0, 0.0]}
    handles = []
    for index, (recipe, curve) in enumerate(curves.items()):
        colour = colours[index % len(colours)]
        for kind, axis, style in (("gold", gold_axis, "-"), ("proxy", proxy_axes, "--")):
            kl, values, low, high = _with_origin(curve, getattr(curve, f"{kind}_shifted"),
                                                 getattr(curve, f"{kind}_shifted_low"),
                                                 getattr(curve, f"{kind}_shifted_high"))
            axis.plot(kl, values, style, color=colour, linewidth=1.8 if kind == "gold" else 1.3)
            if not np.all(np.isnan(low)):
                axis.fill_between(kl, low, high, color=colour, alpha=0.18 if kind == "gold" else 0.08, linewidth=0)
            finite = np.concatenate([values, low[~np.isnan(low)], high[~np.isnan(high)]])
            key = "gold" if axis is gold_axis else "proxy"
            extents[key] = [min(extents[key][0], float(finite.min())), max(extents[key][1], float(finite.max()))]
        handles.append(Line2D([], [], color=colour, linewidth=6, alpha=0.6, label=recipe))
    handles += [Line2D([], [], color="black", linestyle="-", label="gold (gain over N=1)"),
                Line2D([], [], color="black", linestyle="--", label="proxy (gain over N=1)")]
    if proxy_axes is gold_axis:
        gold_axis.set_ylabel("score gain over N=1 (gold solid, proxy dashed)")
        align_zero([gold_axis], [tuple(extents["gold"])])
    else:
        gold_axis.set_ylabel("gold score gain over N=1 (solid)")
        proxy_axes.set_ylabel("proxy score gain over N=1 (dashed)")
        align_zero([gold_axis, proxy_axes], [tuple(extents["gold"]), tuple(extents["proxy"])])
    gold_axis.axhline(0.0, color="grey", linewidth=0.8)
    largest_kl = max(float(curve.kl[-1]) for curve in curves.values())
    gold_axis.set_xlim(0.0, max(largest_kl, 1e-6) * 1.02)
    gold_axis.set_xlabel("KL_BoN = log N − (N−1)/N (nats)")
    top = gold_axis.secondary_xaxis("top", functions=(_kl_to_n, _n_to_kl))
    top.set_xticks(_n_ticks(max(int(curve.ns[-1]) for curve in curves.values())))
    top.xaxis.set_major_formatter(FuncFormatter(lambda n, _: f"{n:.0f}"))
    top.set_xlabel("N")
    gold_axis.set_title(title, fontsize=11)
    gold_axis.legend(handles=handles, fontsize=8, loc="best")


def gold_extent(curves: Mapping[str, BonCurve]) -> tuple[float, float]:
    values = [np.asarray(getattr(c, name), dtype=float) for c in curves.values()
              for name in ("gold_shifted", "gold_shifted_low", "gold_shifted_high")]
    finite = np.concatenate([v[~np.isnan(v)] for v in values] + [np.zeros(1)])
    return float(finite.min()), float(finite.max())


def _check_axis(proxy_axis: str) -> None:
    if proxy_axis not in ("right", "shared"):
        raise ConfigError(f"proxy_axis must be 'right' or 'shared'; got {proxy_axis!r}")


def plot_curves(curves: Mapping[str, BonCurve], path: str | Path, *, title: str = DEFAULT_TITLE,
                proxy_axis: str = "right") -> Path:
    """Write the shifted gold (solid) and proxy (dashed) curves with 95% bands to ``path`` (PNG, atomically).

    ``proxy_axis``: "right" (own axis, 0 level with gold's) or "shared" (one y-axis for both).
    """
    _check_axis(proxy_axis)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, gold_axis = plt.subplots(figsize=(8.5, 5.2))
    draw_curves(gold_axis, curves, title=title, proxy_axis=proxy_axis)
    return finish_figure(figure, Path(path))


def plot_panels(panels: Mapping[str, Mapping[str, BonCurve]], path: str | Path, *, title: str = DEFAULT_TITLE,
                proxy_axis: str = "right") -> Path:
    """`plot_curves` of several studies side by side (panel title -> curves), on one gold scale."""
    _check_axis(proxy_axis)
    return panel_figure(panels, path, title=title, width=7.2, extent=gold_extent,
                        draw=lambda axis, curves, name, limits: draw_curves(
                            axis, curves, title=name, proxy_axis=proxy_axis, gold_limits=limits))


def panel_figure(panels: Mapping[str, Any], path: str | Path, *, draw: Callable[[Any, Any, str, tuple[float, float]], None],
                 extent: Callable[[Any], tuple[float, float]], title: str | None, width: float = 7.2) -> Path:
    """One row of panels (title -> what ``draw`` draws on an axis) on one gold scale (the union of ``extent``s);
    written atomically. ``title`` None: no figure title."""
    if not panels or not all(panels.values()):
        raise ConfigError("nothing to plot: no panels")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extents = [extent(content) for content in panels.values()]
    shared = (min(low for low, _ in extents), max(high for _, high in extents))
    figure, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 5.2), squeeze=False)
    for axis, (name, content) in zip(axes[0], panels.items()):
        draw(axis, content, name, shared)
    if title is not None:
        figure.suptitle(title, fontsize=12)
    return finish_figure(figure, Path(path))


# --------------------------------------------------------------------------------------------- everything


def write_report(curves: Mapping[str, BonCurve], out_dir: str | Path, *, title: str = DEFAULT_TITLE,
                 notes: Sequence[str] = (), baseline: str | None = None, proxy_axis: str = "right") -> dict[str, Path]:
    """Write the CSV, PNG, Markdown and JSON of ``curves`` (recipe -> curve) into ``out_dir``; returns the paths.

    ``notes`` are Markdown paragraphs put first (command, versions, hardware, wall time); with ``baseline`` the
    report adds each other recipe's paired gold difference from it at the largest N.
    """
    folder = Path(out_dir)
    summaries = summarize(curves)
    differences = compare_to(curves, baseline) if baseline is not None else None
    paths = {"csv": folder / CSV_NAME, "plot": folder / PLOT_NAME, "markdown": folder / MARKDOWN_NAME,
             "json": folder / JSON_NAME}
    write_text_atomic(paths["csv"], to_csv(curves))
    plot_curves(curves, paths["plot"], title=title, proxy_axis=proxy_axis)
    write_text_atomic(paths["markdown"], to_markdown(summaries, title=title, notes=notes, differences=differences,
                                                     baseline=baseline, plot_name=PLOT_NAME))
    payload = to_json(summaries, differences, baseline, notes)
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return paths
