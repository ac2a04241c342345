import math

import pytest

from rewardlab.evaluate.stats import weighted_mean_interval, wilson_interval


def test_wilson_matches_closed_forms():
    # 0 of n: the upper bound is z^2 / (n + z^2).
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-6)
    # Symmetric around one half, textbook value for 5/10.
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(1 - 1.959964**2 / (10 + 1.959964**2), abs=1e-6)


def test_wilson_edge_cases():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_weighted_mean_interval_uses_weights_for_the_mean_and_counts_for_the_width():
    mean, low, high = weighted_mean_interval([1.0, 0.5], [10, 100], [3, 1])
    assert mean == pytest.approx(0.875)
    # only the second group has variance: (1/4)^2 * 0.25 / 100
    half = 1.959963984540054 * math.sqrt((1 / 4) ** 2 * 0.25 / 100)
    assert (low, high) == (pytest.approx(0.875 - half), pytest.approx(0.875 + half))
