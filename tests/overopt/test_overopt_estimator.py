"""The best-of-N estimator against brute force over all N-subsets (with ties), KL_BoN, bootstrap, Gao's fit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rewardlab.errors import ConfigError
from rewardlab.overopt.estimator import (
    bon_curve,
    bon_expectation,
    bon_expectations,
    compare_gold,
    fit_curve,
    fit_gao_bon,
    kl_bon,
    n_for_kl,
    observed_peak,
    order_weights,
    selection_probabilities,
    spaced_ns,
)


def brute_force(proxy: np.ndarray, values: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    """Expected value and per-sample pick probabilities over every n-subset; a tied best is picked uniformly."""
    k = len(proxy)
    probabilities = np.zeros(k)
    subsets = list(itertools.combinations(range(k), n))
    for subset in subsets:
        best = max(proxy[j] for j in subset)
        tied = [j for j in subset if proxy[j] == best]
        for j in tied:
            probabilities[j] += 1.0 / len(tied)
    probabilities /= len(subsets)
    return float(probabilities @ values), probabilities


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 10])
@pytest.mark.parametrize("levels", [2, 3, 5])
def test_estimator_equals_brute_force_with_ties(k: int, levels: int) -> None:
    rng = np.random.default_rng(1000 * k + levels)
    proxy = rng.integers(0, levels, size=(4, k)).astype(float)  # a small range: many ties
    values = rng.normal(size=(4, k))
    ties_seen = False
    for n in range(1, k + 1):
        vectorised = bon_expectations(proxy, values, [n])[:, 0]
        for row in range(proxy.shape[0]):
            ties_seen |= len(set(proxy[row])) < k
            expected, probabilities = brute_force(proxy[row], values[row], n)
            assert bon_expectation(proxy[row], values[row], n) == pytest.approx(expected, abs=1e-12, rel=0)
            assert vectorised[row] == pytest.approx(expected, abs=1e-12, rel=0)
            np.testing.assert_allclose(selection_probabilities(proxy[row], n), probabilities, atol=1e-12, rtol=0)
    assert ties_seen or k == 1


def test_the_tie_rule_is_not_plain_sorting() -> None:
    # proxy ties for the best: the pick is either of the tied samples, so the value is their mean, not one of them
    proxy, values = np.array([0.0, 1.0, 1.0]), np.array([5.0, 0.0, 3.0])
    assert bon_expectation(proxy, values, 3) == pytest.approx(1.5)
    assert bon_expectation(np.zeros(6), np.arange(6.0), 4) == pytest.approx(2.5)  # all tied: the mean, for any N


def test_order_weights_are_the_binomial_ratios_and_stay_finite_for_large_k() -> None:
    for n in range(1, 13):
        expected = [math.comb(i - 1, n - 1) / math.comb(12, n) for i in range(1, 13)]
        np.testing.assert_allclose(order_weights(12, n), expected, rtol=1e-13, atol=0)
    k = 4000
    for n in (1, 2, 64, 2000, 3999, 4000):
        weights = order_weights(k, n)
        assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert weights[-1] == pytest.approx(n / k, rel=1e-15)
    i, n = 3000, 2000  # C(2999, 1999)/C(4000, 2000) via lgamma, for a weight far from the top
    log_weight = (math.lgamma(i) - math.lgamma(n) - math.lgamma(i - n + 1)
                  - (math.lgamma(k + 1) - math.lgamma(n + 1) - math.lgamma(k - n + 1)))
    assert order_weights(k, n)[i - 1] == pytest.approx(math.exp(log_weight), rel=1e-9)


def test_large_k_limits_and_monotone_proxy() -> None:
    rng = np.random.default_rng(3)
    proxy, gold = rng.normal(size=(3, 2500)), rng.normal(size=(3, 2500))
    ends = bon_expectations(proxy, gold, [1, 2500])
    np.testing.assert_allclose(ends[:, 0], gold.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(ends[:, 1], gold[np.arange(3), proxy.argmax(axis=1)], atol=1e-12)
    own = bon_expectations(proxy, proxy, range(1, 2501, 97))
    assert np.all(np.diff(own, axis=1) > 0)  # the proxy of its own best-of-N pick rises with N


def test_invalid_inputs_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="1 <= N <= K = 3"):
        bon_expectation([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 4)
    with pytest.raises(ConfigError, match="1 <= N"):
        bon_expectation([1.0, 2.0], [1.0, 2.0], 0)
    with pytest.raises(ConfigError, match="must match"):
        bon_expectation([1.0, 2.0], [1.0, 2.0, 3.0], 1)
    with pytest.raises(ConfigError, match="finite"):
        bon_curve([[1.0, math.nan]], [[1.0, 2.0]], [1])


def test_kl_bon_values_and_inverse() -> None:
    assert kl_bon(1) == 0.0
    assert kl_bon(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_bon(405) == pytest.approx(math.log(405) - 404 / 405)  # the GRM paper's largest N, ~5 nats
    np.testing.assert_allclose(kl_bon(np.array([1, 4, 16])), [0.0, math.log(4) - 0.75, math.log(16) - 15 / 16])
    assert n_for_kl(0.0) == pytest.approx(1.0)
    np.testing.assert_allclose(n_for_kl(kl_bon(np.array([1.5, 7.0, 64.0, 1e5]))), [1.5, 7.0, 64.0, 1e5], rtol=1e-9)
    with pytest.raises(ConfigError):
        kl_bon(0)
    ns = spaced_ns(256, 20)
    assert ns[0] == 1 and ns[-1] == 256 and ns == sorted(set(ns))
    gaps = np.diff(np.sqrt(kl_bon(np.array(ns[len(ns) // 2:]))))  # evenly spaced in √KL where N is large
    assert gaps.max() < 2.5 * gaps.min()


def _synthetic_curve(alpha: float, beta: float, noise: float, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    kl = kl_bon(np.array(spaced_ns(2000, 40), dtype=float))
    d = np.sqrt(kl)
    gold = offset + d * (alpha - beta * d) + np.random.default_rng(7).normal(scale=noise, size=d.shape)
    gold[0] = offset  # N = 1: the start every curve is measured from
    return kl, gold


def test_gao_fit_recovers_alpha_beta_and_the_peak() -> None:
    kl, gold = _synthetic_curve(alpha=0.8, beta=0.2, noise=0.005, offset=0.3)
    fit = fit_gao_bon(kl, gold)  # shifted by the N=1 value
    assert fit.alpha == pytest.approx(0.8, abs=0.02) and fit.beta == pytest.approx(0.2, abs=0.01)
    assert fit.has_peak and fit.peak_within_data
    assert fit.peak_d == pytest.approx(2.0, abs=0.1) and fit.peak_kl == pytest.approx(4.0, abs=0.4)
    assert fit.peak_gold == pytest.approx(0.8, abs=0.02) and fit.offset == pytest.approx(0.3)
    assert fit.peak_n == pytest.approx(n_for_kl(fit.peak_kl))
    assert fit.r2 > 0.99
    assert fit.predict(fit.peak_kl) == pytest.approx(fit.peak_gold)


def test_gao_fit_without_a_peak_says_so() -> None:
    kl, gold = _synthetic_curve(alpha=0.5, beta=-0.05, noise=0.001)
    rising = fit_gao_bon(kl, gold)
    assert not rising.has_peak and rising.beta < 0
    assert rising.peak_kl is None and rising.peak_gold is None and rising.peak_d is None and rising.peak_n is None
    assert "no peak within the fitted form" in rising.reason
    falling = fit_gao_bon(*_synthetic_curve(alpha=-0.3, beta=0.1, noise=0.001))
    assert not falling.has_peak and "falls from N=1" in falling.reason
    with pytest.raises(ConfigError, match="N=1"):
        fit_gao_bon(kl[1:], gold[1:])
    far = fit_gao_bon(kl[1:], gold[1:] + 0.0, shift=False)
    assert far.offset == 0.0 and not far.has_peak


def _sample_scores(prompts: int, k: int, seed: int, spurious: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Proxy = quality + a spurious feature; gold = quality − a penalty for a large feature: gold peaks, then falls."""
    rng = np.random.default_rng(seed)
    quality, feature = rng.normal(size=(prompts, k)), rng.normal(size=(prompts, k))
    return quality + spurious * feature, quality - 0.3 * np.maximum(feature, 0) ** 2


def test_bon_curve_means_intervals_and_determinism() -> None:
    proxy, gold = _sample_scores(120, 32, seed=0)
    ns = [1, 2, 4, 8, 16, 32]
    curve = bon_curve(proxy, gold, ns, bootstrap=400, seed=5)
    np.testing.assert_allclose(curve.gold_mean, bon_expectations(proxy, gold, ns).mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(curve.kl, kl_bon(np.array(ns)))
    for kind in ("proxy", "gold", "proxy_shifted", "gold_shifted"):
        mean, low, high = (getattr(curve, f"{kind}{suffix}") for suffix in ("" if "shifted" in kind else "_mean",
                                                                             "_low", "_high"))
        assert np.all(low <= mean + 1e-12) and np.all(mean <= high + 1e-12)
    assert curve.gold_shifted[0] == 0 and curve.gold_shifted_low[0] == 0 and curve.gold_shifted_high[0] == 0
    assert curve.gold_start.value == pytest.approx(gold.mean())
    assert [row["n"] for row in curve.rows()] == ns and set(curve.rows()[0]) == set(curve.ROW_FIELDS)
    again, other = bon_curve(proxy, gold, ns, bootstrap=400, seed=5), bon_curve(proxy, gold, ns, bootstrap=400, seed=6)
    np.testing.assert_array_equal(again.gold_low, curve.gold_low)
    np.testing.assert_array_equal(again.proxy_high, curve.proxy_high)
    assert not np.array_equal(other.gold_low, curve.gold_low)


def test_intervals_shrink_with_more_prompts() -> None:
    ns = [1, 4, 16]
    widths = {}
    for prompts in (50, 800):
        curve = bon_curve(*_sample_scores(prompts, 16, seed=prompts), ns, bootstrap=500, seed=0)
        widths[prompts] = (curve.gold_high - curve.gold_low).mean()
    assert widths[800] < 0.5 * widths[50]  # ~1/√16 = 0.25 expected


def test_observed_peak_and_drop() -> None:
    proxy, gold = _sample_scores(400, 64, seed=1, spurious=1.5)
    ns = spaced_ns(64, 16)
    curve = bon_curve(proxy, gold, ns, bootstrap=300)
    peak = observed_peak(curve)
    means = bon_expectations(proxy, gold, ns).mean(axis=0)
    assert peak.n == ns[int(np.argmax(means))] and 1 < peak.n < 64  # this gold rises, then falls
    assert peak.drop.value == pytest.approx(means.max() - means[-1]) and peak.drop.value > 0
    assert peak.drop.low <= peak.drop.value <= peak.drop.high
    assert peak.last_n == 64 and peak.gain.value == pytest.approx(means.max() - gold.mean())
    fit = fit_curve(curve)
    assert fit.has_peak and fit.offset == pytest.approx(gold.mean())
    assert 0.25 * peak.kl < fit.peak_kl < 4 * peak.kl  # the fitted and the observed peak roughly agree


def test_paired_comparison() -> None:
    rng = np.random.default_rng(2)
    gold = rng.normal(size=(200, 16))
    good = bon_curve(gold + 0.5 * rng.normal(size=gold.shape), gold, [1, 4, 16], bootstrap=300, seed=1)
    blind = bon_curve(rng.normal(size=gold.shape), gold, [1, 4, 16], bootstrap=300, seed=1)
    difference = compare_gold(good, blind)
    assert difference.difference[0] == pytest.approx(0.0, abs=1e-12)  # N = 1: the same samples, the same gold
    assert difference.low[-1] > 0  # a proxy that sees gold beats a blind one at N = 16
    np.testing.assert_allclose(difference.difference, good.gold_mean - blind.gold_mean, atol=1e-12)
    np.testing.assert_allclose(difference.shifted_difference, difference.difference, atol=1e-12)
    same = compare_gold(good, good)
    assert np.all(same.low == 0) and np.all(same.high == 0)
    with pytest.raises(ConfigError, match="same prompts"):
        compare_gold(good, bon_curve(gold[:100], gold[:100], [1, 4, 16]))
