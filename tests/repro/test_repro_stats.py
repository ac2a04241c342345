"""Seed averaging and the paired item bootstrap, on hand-made outcomes."""

import math

import numpy as np
import pytest

from rewardlab.repro.stats import PairedBootstrap, column_estimate, correctness, difference, mean_estimate, seed_matrix


def test_ties_count_as_wrong_and_unscored_stay_unknown():
    assert correctness(["correct", "tie", "wrong", None]) == [1.0, 0.0, 0.0, None]


def test_seed_average_is_the_mean_of_per_seed_accuracies():
    seed0 = correctness(["correct", "correct", "wrong", "correct", None])
    seed1 = correctness(["correct", "wrong", "wrong", "tie", None])
    matrix = seed_matrix([seed0, seed1], keep=[0, 1, 2, 3])
    assert matrix.tolist() == [[1, 1], [1, 0], [0, 0], [1, 0]]
    estimate, draws = column_estimate(matrix, PairedBootstrap({"d": 4}, samples=500), "d")
    assert estimate.per_seed == (0.75, 0.25)
    assert estimate.value == pytest.approx(0.5) == pytest.approx(sum(estimate.per_seed) / 2)
    assert estimate.n == 4 and len(draws) == 500
    assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0


def test_interval_is_degenerate_when_every_item_agrees():
    matrix = np.ones((30, 2))
    estimate, _ = column_estimate(matrix, PairedBootstrap({"d": 30}, samples=200), "d")
    assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0)


def test_interval_width_shrinks_with_more_items_and_matches_the_binomial_scale():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 800):
        matrix = (rng.random((n, 2)) < 0.6).astype(float)
        estimate, _ = column_estimate(matrix, PairedBootstrap({"d": n}, samples=2000, seed=3), "d")
        widths.append(estimate.high - estimate.low)
        # Per-item means of two seeds have variance <= p(1-p)/n; the 95% width is about 4 standard errors or less.
        assert estimate.high - estimate.low <= 4.2 * math.sqrt(0.25 / n)
    assert widths[1] < widths[0] / 2


def test_paired_difference_of_identical_methods_is_exactly_zero():
    rng = np.random.default_rng(0)
    matrix = (rng.random((40, 2)) < 0.5).astype(float)
    bootstrap = PairedBootstrap({"d": 40}, samples=300)
    first = column_estimate(matrix, bootstrap, "d")
    second = column_estimate(matrix.copy(), bootstrap, "d")
    diff = difference(second, first)
    assert (diff.value, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_paired_difference_detects_a_consistent_improvement():
    base = np.zeros((60, 2))
    better = base.copy()
    better[:30] = 1.0  # the method gets 30 more items right under both seeds
    bootstrap = PairedBootstrap({"d": 60}, samples=1000)
    diff = difference(column_estimate(better, bootstrap, "d"), column_estimate(base, bootstrap, "d"))
    assert diff.value == pytest.approx(0.5)
    assert diff.low > 0.3 and diff.high < 0.7
    assert diff.per_seed == (0.5, 0.5)


def test_mean_over_datasets_is_unweighted():
    bootstrap = PairedBootstrap({"small": 4, "large": 100}, samples=400)
    small = column_estimate(np.ones((4, 1)), bootstrap, "small")
    large = column_estimate(np.zeros((100, 1)), bootstrap, "large")
    mean, draws = mean_estimate([small, large])
    assert mean.value == pytest.approx(0.5) and mean.per_seed == (0.5,)
    assert mean.n == 104 and draws.shape == (400,)


def test_empty_column_gives_nan_not_an_error():
    estimate, draws = column_estimate(np.zeros((0, 2)), PairedBootstrap({"d": 0}, samples=10), "d")
    assert math.isnan(estimate.value) and estimate.n == 0 and np.isnan(draws).all()
