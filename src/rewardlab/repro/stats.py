"""Seed-averaged accuracies with paired bootstrap intervals.

How seeds are combined: each item's correctness is averaged over the training seeds (1, 0.5 or 0
with two seeds; ties count as wrong), and a column's accuracy is the mean of these per-item values,
which equals the mean of the per-seed accuracies. Its 95% interval is a percentile bootstrap over
evaluation items: items are resampled with replacement, each keeping its outcome under every seed,
independently within each dataset. The same resamples serve every method, so differences between
methods are paired. The interval covers which items were drawn, not training-seed variation; the
per-seed accuracies are reported beside it for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INTERVAL_NOTE = (
    "Accuracy is the mean over training seeds (per item: the share of seeds whose model ranked chosen strictly above "
    "rejected; ties count as wrong). 95% intervals are percentile bootstraps over evaluation items ({samples} "
    "resamples, each item keeping its outcomes under every seed, resampled within each dataset; the same resamples "
    "for every method, so differences are paired). They cover the choice of items, not training-seed variation, "
    "which the per-seed table shows. OOD mean = unweighted mean of the out-of-distribution datasets."
)


@dataclass(frozen=True)
class Estimate:
    """A seed-averaged accuracy (or difference), its 95% interval and the per-seed values."""

    value: float
    low: float
    high: float
    n: int
    per_seed: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "per_seed": list(self.per_seed)}


def correctness(outcomes: Sequence[str | None]) -> list[float | None]:
    """1.0 for ``correct``, 0.0 for ``tie``/``wrong``, None for unscorable items."""
    return [None if o is None else float(o == "correct") for o in outcomes]


class PairedBootstrap:
    """Bootstrap resamples of item indices, one array per dataset, shared by every method."""

    def __init__(self, sizes: dict[str, int], samples: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.samples = samples
        self.indices = {name: rng.integers(0, n, size=(samples, n)) for name, n in sizes.items() if n > 0}

    def distribution(self, name: str, item_means: np.ndarray) -> np.ndarray:
        """Bootstrap distribution of the mean of ``item_means`` (one value per item of dataset ``name``)."""
        return item_means[self.indices[name]].mean(axis=1)


def _interval(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def seed_matrix(per_seed: Sequence[Sequence[float | None]], keep: Sequence[int]) -> np.ndarray:
    """[items, seeds] correctness restricted to the ``keep`` item indices (scored by every model)."""
    return np.array([[seed_values[i] for seed_values in per_seed] for i in keep], dtype=float).reshape(len(keep), len(per_seed))


def column_estimate(matrix: np.ndarray, bootstrap: PairedBootstrap, name: str) -> tuple[Estimate, np.ndarray]:
    """Estimate for one dataset column, and its bootstrap draws (for means and differences)."""
    if matrix.shape[0] == 0:
        nan = math.nan
        return Estimate(nan, nan, nan, 0, tuple(nan for _ in range(matrix.shape[1]))), np.full(bootstrap.samples, nan)
    item_means = matrix.mean(axis=1)
    draws = bootstrap.distribution(name, item_means)
    low, high = _interval(draws)
    per_seed = tuple(float(v) for v in matrix.mean(axis=0))
    return Estimate(float(item_means.mean()), low, high, matrix.shape[0], per_seed), draws


def mean_estimate(parts: Sequence[tuple[Estimate, np.ndarray]]) -> tuple[Estimate, np.ndarray]:
    """Unweighted mean of several dataset estimates (their bootstraps are independent)."""
    draws = np.mean([d for _, d in parts], axis=0)
    value = float(np.mean([e.value for e, _ in parts]))
    per_seed = tuple(float(v) for v in np.mean([e.per_seed for e, _ in parts], axis=0))
    low, high = _interval(draws)
    return Estimate(value, low, high, sum(e.n for e, _ in parts), per_seed), draws


def difference(
    method: tuple[Estimate, np.ndarray], baseline: tuple[Estimate, np.ndarray]
) -> Estimate:
    """Paired difference method − baseline, with the interval from the shared resamples."""
    (est, draws), (base, base_draws) = method, baseline
    low, high = _interval(draws - base_draws)
    per_seed = tuple(a - b for a, b in zip(est.per_seed, base.per_seed))
    return Estimate(est.value - base.value, low, high, est.n, per_seed)
