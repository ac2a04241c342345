"""The best-of-N report files: CSV rows and columns, a readable PNG, the Markdown summary and strict JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from rewardlab.errors import ConfigError
from rewardlab.overopt.estimator import BonCurve, bon_curve, observed_peak, spaced_ns
from rewardlab.overopt.report import CSV_COLUMNS, plot_curves, summarize, to_markdown, write_report


def _curves(bootstrap: int = 200) -> dict[str, BonCurve]:
    """Two proxies on the same samples: one pays for a spurious feature gold penalises (it peaks), one barely."""
    rng = np.random.default_rng(0)
    quality, feature = rng.normal(size=(60, 32)), rng.normal(size=(60, 32))
    gold = quality - 0.3 * np.maximum(feature, 0) ** 2
    ns = spaced_ns(32, 12)
    return {
        "bt": bon_curve(quality + 1.5 * feature, gold, ns, bootstrap=bootstrap),
        "grm": bon_curve(quality + 0.2 * feature, gold, ns, bootstrap=bootstrap),
    }


def test_report_files(tmp_path: Path) -> None:
    curves = _curves()
    paths = write_report(curves, tmp_path / "out", notes=["Command: `rewardlab bon …`"], baseline="bt")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths.values())

    with open(paths["csv"], newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert len(rows) == sum(len(c.ns) for c in curves.values())
    for recipe, curve in curves.items():
        mine = [row for row in rows if row["recipe"] == recipe]
        assert [int(row["n"]) for row in mine] == curve.ns.tolist()
        np.testing.assert_allclose([float(row["gold_mean"]) for row in mine], curve.gold_mean, rtol=1e-15)
        np.testing.assert_allclose([float(row["proxy_high"]) for row in mine], curve.proxy_high, rtol=1e-15)
        assert float(mine[0]["gold_shifted"]) == 0.0 and float(mine[0]["kl"]) == 0.0

    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(paths["plot"])
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0.01

    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert markdown.startswith("# ") and "Command: `rewardlab bon …`" in markdown
    for recipe, curve in curves.items():
        peak = observed_peak(curve)
        assert f"### {recipe}" in markdown
        assert f"- Peak (data): N={peak.n}, KL {peak.kl:.3g} nats" in markdown
        assert f"- Drop from the peak to N={peak.last_n}:" in markdown
    assert markdown.count("- Peak (Gao fit): ") == 2 and markdown.count("- Fit: α = ") == 2
    assert "## Gold difference from bt" in markdown and "| grm | 32 |" in markdown
    assert f"![best-of-N curves]({paths['plot'].name})" in markdown

    data = json.loads(paths["json"].read_text(encoding="utf-8"), parse_constant=lambda name: pytest.fail(name))
    assert set(data["recipes"]) == {"bt", "grm"} and data["baseline"] == "bt"
    assert data["recipes"]["bt"]["observed_peak"]["n"] == observed_peak(curves["bt"]).n


def test_report_without_bootstrap_or_fit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gold = rng.normal(size=(10, 8))
    curves = {"oracle": bon_curve(gold, gold, [1, 8], bootstrap=0)}  # one N above 1: Gao's form cannot be fitted
    paths = write_report(curves, tmp_path)
    with open(paths["csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["gold_low"] == "" and rows[1]["gold_mean"] != ""
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "- Peak (data): N=8" in markdown and "no fit (" in markdown
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["recipes"]["oracle"]["gao_fit"] is None and data["recipes"]["oracle"]["curve"]["rows"][1]["gold_low"] is None


def test_rising_curve_reports_no_fitted_peak() -> None:
    rng = np.random.default_rng(2)
    gold = rng.normal(size=(80, 32))
    summaries = summarize({"oracle": bon_curve(gold, gold, spaced_ns(32, 10), bootstrap=50)})
    assert not summaries["oracle"].fit.has_peak
    assert "- Peak (Gao fit): no peak within the fitted form" in to_markdown(summaries)


def test_plot_options(tmp_path: Path) -> None:
    shared = plot_curves(_curves(bootstrap=20), tmp_path / "shared.png", proxy_axis="shared")
    assert matplotlib.image.imread(shared).shape[2] in (3, 4)
    with pytest.raises(ConfigError, match="proxy_axis"):
        plot_curves(_curves(bootstrap=20), tmp_path / "x.png", proxy_axis="left")
    with pytest.raises(ConfigError, match="baseline"):
        write_report(_curves(bootstrap=20), tmp_path / "y", baseline="nope")
