"""Exact binomial (Clopper–Pearson) intervals, computed without scipy.

The interval's ends are quantiles of beta distributions; the regularized incomplete beta
function is evaluated with its continued fraction (modified Lentz method) and inverted by
bisection, which is plenty fast for report tables.
"""

from __future__ import annotations

import math

_EPSILON = 1e-15
_TINY = 1e-300


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    fraction = d
    for m in range(1, 10_000):
        m2 = 2 * m
        numerator = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + numerator / c
        c = c if abs(c) > _TINY else _TINY
        fraction *= d * c
        numerator = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + numerator / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        fraction *= step
        if abs(step - 1.0) < _EPSILON:
            break
    return fraction


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the beta(a, b) distribution function at ``x``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"beta parameters must be positive, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def beta_quantile(probability: float, a: float, b: float) -> float:
    """The ``x`` with I_x(a, b) = ``probability`` (bisection to about 1e-12)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    low, high = 0.0, 1.0
    for _ in range(80):
        middle = (low + high) / 2.0
        if regularized_beta(middle, a, b) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def clopper_pearson(count: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for ``count`` events in ``total`` trials."""
    if total <= 0 or not 0 <= count <= total:
        raise ValueError(f"need 0 <= count <= total and total > 0, got {count}/{total}")
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if count == 0 else beta_quantile(tail, count, total - count + 1)
    high = 1.0 if count == total else beta_quantile(1.0 - tail, count + 1, total - count)
    return low, high


def rule_of_three(total: int) -> float:
    """Approximate 95% upper bound for a rate when 0 events were seen in ``total`` trials."""
    return min(1.0, 3.0 / total)
