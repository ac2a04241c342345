"""Confidence intervals for accuracies.

Every accuracy in an evaluation report carries a 95% interval. Proportions of items (a subset, a
dataset, pooled totals) use the Wilson score interval, which stays inside [0, 1] and behaves well
for small n and accuracies near 0 or 1. Weighted means of several proportions (RewardBench
sections, means over datasets) use a normal approximation of the weighted mean's variance.
RM-Bench scores are means over items of each item's share of correct style comparisons; they use
the Wilson interval with that mean in place of a proportion. A share in [0, 1] with mean p has
variance at most p(1 - p), so this interval is conservative (at least as wide as needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054
WILSON_METHOD = "Wilson score interval (95%)"
WEIGHTED_METHOD = "normal approximation of a weighted mean of proportions (95%)"
SHARE_METHOD = "Wilson score interval over items, each item's share of correct comparisons as its outcome (95%, conservative)"


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes out of ``total`` trials; (nan, nan) if total is 0."""
    if total < 0 or correct < 0 or correct > total:
        raise ValueError(f"invalid counts: {correct} correct out of {total}")
    if total == 0:
        return (math.nan, math.nan)
    return _wilson(correct / total, total, z)


def share_interval(mean: float, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson-type interval for the mean of ``total`` per-item shares in [0, 1] (e.g. RM-Bench's
    fraction of correct style comparisons per item); conservative, see the module docstring."""
    if total < 0 or not -1e-9 <= mean <= 1.0 + 1e-9:
        raise ValueError(f"invalid share: mean {mean} over {total} items")
    if total == 0:
        return (math.nan, math.nan)
    return _wilson(min(1.0, max(0.0, mean)), total, z)


def _wilson(p_hat: float, total: int, z: float) -> tuple[float, float]:
    z2 = z * z
    denominator = 1.0 + z2 / total
    centre = (p_hat + z2 / (2 * total)) / denominator
    half_width = z * math.sqrt(p_hat * (1 - p_hat) / total + z2 / (4 * total * total)) / denominator
    return (max(0.0, centre - half_width), min(1.0, centre + half_width))


def weighted_mean_interval(
    accuracies: Sequence[float], counts: Sequence[int], weights: Sequence[float], z: float = Z_95
) -> tuple[float, float, float]:
    """Weighted mean of per-group accuracies and its interval.

    ``counts`` are the real numbers of items behind each accuracy (they set the variance);
    ``weights`` are the weights of the mean (they may differ from counts, as for RewardBench's
    math-prm). Returns (mean, low, high), clipped to [0, 1].
    """
    if not (len(accuracies) == len(counts) == len(weights)) or not accuracies:
        raise ValueError("accuracies, counts and weights must be non-empty and of equal length")
    total_weight = float(sum(weights))
    if total_weight <= 0:
        raise ValueError("weights must sum to a positive number")
    mean = sum(w * a for w, a in zip(weights, accuracies)) / total_weight
    variance = 0.0
    for accuracy, count, weight in zip(accuracies, counts, weights):
        if count <= 0:
            raise ValueError("every group needs at least one item")
        variance += (weight / total_weight) ** 2 * accuracy * (1 - accuracy) / count
    half_width = z * math.sqrt(variance)
    return (mean, max(0.0, mean - half_width), min(1.0, mean + half_width))
