"""Exact Clopper–Pearson intervals without scipy, checked against closed forms and known values."""

from __future__ import annotations

import math

import pytest

from rewardlab.envs.stats import beta_quantile, clopper_pearson, regularized_beta, rule_of_three


def test_zero_and_all_counts_match_closed_forms():
    for n in (1, 7, 10, 100, 5000):
        low, high = clopper_pearson(0, n)
        assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
        low, high = clopper_pearson(n, n)
        assert high == 1.0 and low == pytest.approx(0.025 ** (1 / n), rel=1e-9)


def test_known_interior_values():
    assert clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson(1, 20) == pytest.approx((0.001265, 0.248733), abs=1e-6)
    low, high = clopper_pearson(45, 32768)
    assert low < 45 / 32768 < high and 0.0009 < low < 0.0011 and 0.0017 < high < 0.0019


def test_regularized_beta_matches_symmetry_and_uniform_case():
    assert regularized_beta(0.3, 1, 1) == pytest.approx(0.3)
    for x, a, b in ((0.2, 2.5, 7.0), (0.9, 30, 4), (0.5, 3, 3)):
        assert regularized_beta(x, a, b) == pytest.approx(1 - regularized_beta(1 - x, b, a), abs=1e-12)
    assert regularized_beta(beta_quantile(0.975, 3, 8), 3, 8) == pytest.approx(0.975, abs=1e-9)


def test_interval_contains_the_rate_and_rejects_bad_counts():
    for count, total in ((1, 3), (17, 50), (999, 1000)):
        low, high = clopper_pearson(count, total)
        assert 0 <= low <= count / total <= high <= 1
    with pytest.raises(ValueError):
        clopper_pearson(4, 3)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


def test_rule_of_three():
    assert rule_of_three(300) == pytest.approx(0.01)
    assert rule_of_three(2) == 1.0
    assert math.isclose(rule_of_three(100_000), 3e-5)
