"""The unbiased best-of-N estimator, KL_BoN, bootstrap intervals over prompts and Gao et al.'s best-of-N fit.

Estimator. A prompt has K samples with proxy scores p_j and some other score v_j (gold, or the proxy itself).
Best-of-N takes a uniformly random N-subset of the K samples and keeps the one with the highest proxy. Its
expected v, Σ_j P(j is kept)·v_j, is computed exactly over all C(K, N) subsets instead of from one draw (the GRM
reference code keeps the best of the *first* N samples: one draw per prompt, high variance). Without ties, with
the samples sorted by proxy ascending, the i-th (1-based) is kept with probability C(i−1, N−1)/C(K, N)
(Coste et al.); the weights are built from the top one, N/K, by the ratio (i−N)/(i−1), so nothing overflows
for any K and tiny weights underflow harmlessly to 0.

Ties. A tie for a subset's best proxy is broken uniformly at random among the tied members of the subset. A tie
group G of m samples with equal proxy, L samples strictly below it, then gives each member the probability
[C(L+m, N) − C(L, N)] / (m·C(K, N)): the share of subsets whose maximum lies in G, split equally by symmetry
(Σ_t C(m−1, t−1)·C(L, N−t)/t = (1/m)·Σ_t C(m, t)·C(L, N−t), Vandermonde). By the hockey-stick identity that is
the mean of the no-tie weights over G's sorted positions L+1..L+m, so the estimator with ties is the no-tie
formula applied after replacing each sample's v by the mean v of its tie group. Proxy scores tie when they are
equal as floats.

Intervals. Prompts are resampled with replacement (percentile bootstrap, 95%); the sample set of each prompt
is fixed, so the intervals cover the choice of prompts given the K samples. Curves built with the same number
of prompts and the same seed use the very same resamples. `compare_gold` gives paired intervals of the
difference between two proxies on the same prompts.

Gao's form. gold(d) = d(α − βd) with d = √KL_BoN, fitted by least squares to the gold *gain* over N=1 (the
form is 0 at N=1, where KL is 0), unweighted over the N values given: see `spaced_ns` for N values that cover
the KL range evenly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rewardlab.errors import ConfigError

CONFIDENCE = 0.95
ESTIMATOR_NOTE = (
    "Best-of-N scores use the unbiased order-statistics estimator over all K samples of each prompt (the expected "
    "score of the proxy's choice from a uniformly random N-subset; a tie for the best proxy is broken uniformly at "
    "random, which equals averaging the scores within each tie group). Means are over prompts; 95% intervals are "
    "percentile bootstraps over prompts ({samples} resamples, the same resamples for every proxy). Shifted values "
    "are gains over N=1, with intervals of the gain. KL_BoN = log N − (N−1)/N."
)
_CHUNK_ELEMENTS = 1 << 22  # bounds the [N values, K] weight block and the [resamples, prompts] index block


@dataclass(frozen=True)
class Estimate:
    """A mean and its 95% interval (nan bounds when no bootstrap was drawn)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


# --------------------------------------------------------------------------------------------- the estimator


def _check_n(n: int, k: int) -> int:
    if isinstance(n, bool) or int(n) != n or not 1 <= int(n) <= k:
        raise ConfigError(f"best-of-N needs 1 <= N <= K = {k} (the samples per prompt); got N = {n}")
    return int(n)


def _as_scores(array: Any, name: str) -> np.ndarray:
    """A [prompts, K] float matrix (a 1-D array is one prompt), finite and non-empty."""
    matrix = np.asarray(array, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ConfigError(f"{name} scores must be a non-empty [prompts, K] array; got shape {np.shape(array)}")
    if not np.all(np.isfinite(matrix)):
        bad = np.argwhere(~np.isfinite(matrix))[0]
        raise ConfigError(f"{name} scores must be finite; prompt {bad[0]}, sample {bad[1]} is {matrix[tuple(bad)]}")
    return matrix


def _pair(proxy: Any, values: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    p, v = _as_scores(proxy, "proxy"), _as_scores(values, name)
    if p.shape != v.shape:
        raise ConfigError(f"proxy scores have shape {p.shape} but {name} scores have {v.shape}; they must match")
    return p, v


def order_weights(k: int, n: int) -> np.ndarray:
    """w[i−1] = C(i−1, n−1)/C(k, n): probability that the i-th lowest of k distinct proxies is best-of-n's pick."""
    n = _check_n(n, k)
    positions = np.arange(n + 1, k + 1, dtype=float)
    ratios = (positions - n) / (positions - 1)  # w_{i−1}/w_i for i = n+1..k
    from_top = (n / k) * np.concatenate(([1.0], np.cumprod(ratios[::-1])))  # w_k, w_{k−1}, ..., w_n
    weights = np.zeros(k)
    weights[n - 1:] = from_top[::-1]
    return weights


def _tie_groups(proxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of each row by proxy (ascending) and, in that order, a global tie-group id per sample."""
    order = np.argsort(proxy, axis=1, kind="stable")
    ranked = np.take_along_axis(proxy, order, axis=1)
    starts = np.ones(ranked.shape, dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    return order, np.cumsum(starts.ravel()) - 1


def _group_means(groups: np.ndarray, ranked_values: np.ndarray) -> np.ndarray:
    means = np.bincount(groups, weights=ranked_values.ravel()) / np.bincount(groups)
    return means[groups].reshape(ranked_values.shape)


def _ranked_tie_means(proxy: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` sorted by proxy within each row, each replaced by the mean over its proxy tie group."""
    order, groups = _tie_groups(proxy)
    return _group_means(groups, np.take_along_axis(values, order, axis=1))


def _weights_matrix(k: int, ns: Sequence[int]) -> np.ndarray:
    return np.stack([order_weights(k, n) for n in ns]) if len(ns) else np.zeros((0, k))


def _expectations(ranked_means: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """[prompts, len(ns)] best-of-N expectations from tie-averaged, proxy-sorted values."""
    k = ranked_means.shape[1]
    step = max(1, _CHUNK_ELEMENTS // k)
    blocks = [ranked_means @ _weights_matrix(k, ns[i:i + step]).T for i in range(0, len(ns), step)]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((ranked_means.shape[0], 0))


def bon_expectation(proxy: Any, values: Any, n: int) -> float | np.ndarray:
    """Expected ``values`` of the proxy's best-of-``n`` pick over all n-subsets of the K samples (ties: see module).

    ``proxy`` and ``values`` are [K] (one prompt: returns a float) or [prompts, K] (returns one value per prompt).
    """
    p, v = _pair(proxy, values, "values")
    result = _expectations(_ranked_tie_means(p, v), [_check_n(n, p.shape[1])])[:, 0]
    return float(result[0]) if np.ndim(proxy) == 1 else result


def bon_expectations(proxy: Any, values: Any, ns: Sequence[int]) -> np.ndarray:
    """[prompts, len(ns)]: `bon_expectation` for every N in ``ns``, sharing one sort of the proxy."""
    p, v = _pair(proxy, values, "values")
    checked = [_check_n(n, p.shape[1]) for n in ns]
    return _expectations(_ranked_tie_means(p, v), checked)


def selection_probabilities(proxy: Any, n: int) -> np.ndarray:
    """Probability that each sample (in its original position) is best-of-``n``'s pick; each row sums to 1."""
    p = _as_scores(proxy, "proxy")
    order, groups = _tie_groups(p)
    ranked = _group_means(groups, np.broadcast_to(order_weights(p.shape[1], n), p.shape))
    probabilities = np.empty_like(ranked)
    np.put_along_axis(probabilities, order, ranked, axis=1)
    return probabilities[0] if np.ndim(proxy) == 1 else probabilities


# --------------------------------------------------------------------------------------------- KL and N values


def kl_bon(n: int | np.ndarray) -> float | np.ndarray:
    """KL_BoN = log N − (N−1)/N nats, the KL from the policy to its best-of-N distribution (0 at N = 1)."""
    array = np.asarray(n, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array < 1):
        raise ConfigError(f"KL_BoN is defined for N >= 1; got {n}")
    kl = np.log(array) - (array - 1) / array
    return float(kl) if array.ndim == 0 else kl


def n_for_kl(kl: float | np.ndarray) -> float | np.ndarray:
    """The (real) N >= 1 whose KL_BoN is ``kl``: the inverse of `kl_bon` (bisection on log N)."""
    target = np.asarray(kl, dtype=float)
    if not np.all(np.isfinite(target)) or np.any(target < 0):
        raise ConfigError(f"KL_BoN values are finite and >= 0; got {kl}")
    low, high = np.zeros_like(target), target + 2.0  # log N <= KL + 1 at the solution, as KL >= log N − 1
    for _ in range(100):
        middle = (low + high) / 2
        n = np.exp(middle)
        too_small = np.log(n) - (n - 1) / n < target
        low, high = np.where(too_small, middle, low), np.where(too_small, high, middle)
    result = np.exp((low + high) / 2)
    return float(result) if result.ndim == 0 else result


def spaced_ns(k: int, count: int = 24) -> list[int]:
    """About ``count`` N values from 1 to ``k``, evenly spaced in √KL_BoN (the fit's d axis), 1 and k included."""
    if k < 1 or count < 2:
        raise ConfigError(f"spaced_ns needs k >= 1 and count >= 2; got k = {k}, count = {count}")
    d = np.linspace(0.0, math.sqrt(kl_bon(k)), count)
    ns = {1, k} | {min(k, max(1, int(round(n)))) for n in np.atleast_1d(n_for_kl(d**2))}
    return sorted(ns)


def _check_ns(ns: Sequence[int], k: int) -> np.ndarray:
    checked = sorted({_check_n(n, k) for n in ns})
    if not checked:
        raise ConfigError("give at least one N for the best-of-N curve")
    return np.array(checked, dtype=int)


# --------------------------------------------------------------------------------------------- the bootstrap


def bootstrap_counts(prompts: int, samples: int, seed: int) -> np.ndarray:
    """[samples, prompts]: how often each prompt is drawn in each resample (prompts drawn with replacement)."""
    if samples < 0:
        raise ConfigError(f"the number of bootstrap resamples must be >= 0; got {samples}")
    rng = np.random.default_rng(seed)
    counts = np.zeros((samples, prompts), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, prompts))
    for start in range(0, samples, step):
        rows = min(step, samples - start)
        drawn = rng.integers(0, prompts, size=(rows, prompts)) + (np.arange(rows) * prompts)[:, None]
        counts[start:start + rows] = np.bincount(drawn.ravel(), minlength=rows * prompts).reshape(rows, prompts)
    return counts


def _bootstrap_means(counts: np.ndarray, per_prompt: np.ndarray) -> np.ndarray:
    """[samples, columns]: the mean over prompts of ``per_prompt`` [prompts, columns] in each resample."""
    return counts @ per_prompt / per_prompt.shape[0]


def _bounds(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95% bounds of each column of ``draws`` [samples, columns] (nan without resamples)."""
    if draws.shape[0] == 0:
        nan = np.full(draws.shape[1:], math.nan)
        return nan, nan.copy()
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return low, high


def _estimate(per_prompt: np.ndarray, draws: np.ndarray) -> Estimate:
    low, high = _bounds(draws[:, None])
    return Estimate(float(per_prompt.mean()), float(low[0]), float(high[0]))


# --------------------------------------------------------------------------------------------- curves


@dataclass(frozen=True, eq=False)
class BonCurve:
    """Best-of-N proxy and gold means over prompts, per N, with 95% bootstrap intervals.

    Every per-N array has one entry per N in ``ns`` (ascending). ``*_shifted`` are gains over N=1 (the paper's
    curves start at 0); their bounds are intervals of the gain. ``per_prompt_*`` are the [prompts, len(ns)]
    expectations and ``*_draws`` the [bootstrap, len(ns)] resampled means behind the intervals.
    """

    ns: np.ndarray
    kl: np.ndarray
    proxy_mean: np.ndarray
    proxy_low: np.ndarray
    proxy_high: np.ndarray
    gold_mean: np.ndarray
    gold_low: np.ndarray
    gold_high: np.ndarray
    proxy_shifted: np.ndarray
    proxy_shifted_low: np.ndarray
    proxy_shifted_high: np.ndarray
    gold_shifted: np.ndarray
    gold_shifted_low: np.ndarray
    gold_shifted_high: np.ndarray
    proxy_start: Estimate
    gold_start: Estimate
    prompts: int
    k: int
    bootstrap: int
    seed: int
    per_prompt_proxy: np.ndarray
    per_prompt_gold: np.ndarray
    per_prompt_proxy_start: np.ndarray
    per_prompt_gold_start: np.ndarray
    proxy_draws: np.ndarray
    gold_draws: np.ndarray
    prompt_ids: tuple[str, ...] | None = None

    ROW_FIELDS = ("n", "kl", "proxy_mean", "proxy_low", "proxy_high", "gold_mean", "gold_low", "gold_high",
                  "proxy_shifted", "proxy_shifted_low", "proxy_shifted_high",
                  "gold_shifted", "gold_shifted_low", "gold_shifted_high")

    def rows(self) -> list[dict[str, float | int]]:
        """One dict per N with the `ROW_FIELDS` (plain Python numbers, ready for CSV or JSON)."""
        columns = {name: getattr(self, "ns" if name == "n" else name) for name in self.ROW_FIELDS}
        return [{name: (int(values[i]) if name == "n" else float(values[i])) for name, values in columns.items()}
                for i in range(len(self.ns))]

    def to_dict(self) -> dict[str, Any]:
        """The curve as JSON-ready data (rows and sizes; not the per-prompt matrices)."""
        return {"prompts": self.prompts, "k": self.k, "bootstrap": self.bootstrap, "seed": self.seed,
                "proxy_start": self.proxy_start.to_dict(), "gold_start": self.gold_start.to_dict(), "rows": self.rows()}


def bon_curve(
    proxy: Any,
    gold: Any,
    ns: Sequence[int],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    prompt_ids: Sequence[str] | None = None,
) -> BonCurve:
    """Best-of-N curve of one proxy: ``proxy``, ``gold`` are [prompts, K] scores of the same samples.

    For each N in ``ns``: KL_BoN, the mean over prompts of the expected proxy and gold score of the proxy's
    best-of-N pick, and percentile 95% intervals from ``bootstrap`` resamples of the prompts (seeded).
    """
    p, g = _pair(proxy, gold, "gold")
    prompts, k = p.shape
    if prompt_ids is not None and len(prompt_ids) != prompts:
        raise ConfigError(f"{len(prompt_ids)} prompt ids for {prompts} prompts of scores")
    checked = _check_ns(ns, k)
    all_ns = [1, *checked.tolist()]  # N=1 first: the start the shifted values are measured from
    order, groups = _tie_groups(p)
    per_proxy = _expectations(_group_means(groups, np.take_along_axis(p, order, axis=1)), all_ns)
    per_gold = _expectations(_group_means(groups, np.take_along_axis(g, order, axis=1)), all_ns)
    counts = bootstrap_counts(prompts, bootstrap, seed)
    proxy_draws, gold_draws = _bootstrap_means(counts, per_proxy), _bootstrap_means(counts, per_gold)
    proxy_low, proxy_high = _bounds(proxy_draws[:, 1:])
    gold_low, gold_high = _bounds(gold_draws[:, 1:])
    proxy_gain_low, proxy_gain_high = _bounds(proxy_draws[:, 1:] - proxy_draws[:, :1])
    gold_gain_low, gold_gain_high = _bounds(gold_draws[:, 1:] - gold_draws[:, :1])
    proxy_mean, gold_mean = per_proxy.mean(axis=0), per_gold.mean(axis=0)
    return BonCurve(
        ns=checked, kl=np.asarray(kl_bon(checked), dtype=float),
        proxy_mean=proxy_mean[1:], proxy_low=proxy_low, proxy_high=proxy_high,
        gold_mean=gold_mean[1:], gold_low=gold_low, gold_high=gold_high,
        proxy_shifted=proxy_mean[1:] - proxy_mean[0], proxy_shifted_low=proxy_gain_low,
        proxy_shifted_high=proxy_gain_high,
        gold_shifted=gold_mean[1:] - gold_mean[0], gold_shifted_low=gold_gain_low, gold_shifted_high=gold_gain_high,
        proxy_start=_estimate(per_proxy[:, 0], proxy_draws[:, 0]), gold_start=_estimate(per_gold[:, 0], gold_draws[:, 0]),
        prompts=prompts, k=k, bootstrap=bootstrap, seed=seed,
        per_prompt_proxy=per_proxy[:, 1:], per_prompt_gold=per_gold[:, 1:],
        per_prompt_proxy_start=per_proxy[:, 0], per_prompt_gold_start=per_gold[:, 0],
        proxy_draws=proxy_draws[:, 1:], gold_draws=gold_draws[:, 1:],
        prompt_ids=None if prompt_ids is None else tuple(prompt_ids),
    )


@dataclass(frozen=True, eq=False)
class BonDifference:
    """Paired gold difference a − b per N between two proxies on the same prompts, with 95% intervals."""

    ns: np.ndarray
    kl: np.ndarray
    difference: np.ndarray
    low: np.ndarray
    high: np.ndarray
    shifted_difference: np.ndarray  # difference of the gains over N=1 (equal to ``difference`` on shared samples)
    shifted_low: np.ndarray
    shifted_high: np.ndarray
    bootstrap: int
    seed: int

    def rows(self) -> list[dict[str, float | int]]:
        names = ("difference", "low", "high", "shifted_difference", "shifted_low", "shifted_high")
        return [{"n": int(self.ns[i]), "kl": float(self.kl[i]), **{name: float(getattr(self, name)[i]) for name in names}}
                for i in range(len(self.ns))]


def compare_gold(a: BonCurve, b: BonCurve, *, bootstrap: int | None = None, seed: int | None = None) -> BonDifference:
    """Gold of ``a`` minus gold of ``b`` at each N, prompts resampled jointly (paired), e.g. GRM − BT at N = K.

    Both curves must cover the same prompts (same count, and the same ids where both have ids) and the same N.
    ``bootstrap`` and ``seed`` default to ``a``'s.
    """
    if a.prompts != b.prompts or not np.array_equal(a.ns, b.ns):
        raise ConfigError(f"paired comparison needs the same prompts and N values; got {a.prompts} vs {b.prompts} "
                          f"prompts and N {a.ns.tolist()} vs {b.ns.tolist()}")
    if a.prompt_ids is not None and b.prompt_ids is not None and a.prompt_ids != b.prompt_ids:
        raise ConfigError("paired comparison needs the same prompts in the same order; the prompt ids differ")
    samples = a.bootstrap if bootstrap is None else bootstrap
    counts = bootstrap_counts(a.prompts, samples, a.seed if seed is None else seed)
    per_prompt = a.per_prompt_gold - b.per_prompt_gold
    shifted = per_prompt - (a.per_prompt_gold_start - b.per_prompt_gold_start)[:, None]
    low, high = _bounds(_bootstrap_means(counts, per_prompt))
    shifted_low, shifted_high = _bounds(_bootstrap_means(counts, shifted))
    return BonDifference(ns=a.ns.copy(), kl=a.kl.copy(), difference=per_prompt.mean(axis=0), low=low, high=high,
                         shifted_difference=shifted.mean(axis=0), shifted_low=shifted_low, shifted_high=shifted_high,
                         bootstrap=samples, seed=a.seed if seed is None else seed)


@dataclass(frozen=True)
class ObservedPeak:
    """The N with the highest mean gold among a curve's N values, and the drop from there to the largest N.

    ``gain`` is the gold gain over N=1 at the peak; ``drop`` = gold at the peak − gold at the largest N (>= 0),
    its interval from the same resamples at these two fixed N values (it ignores that the peak was picked from
    the data, so it is optimistic about a drop's size).
    """

    n: int
    kl: float
    gold: Estimate
    gain: Estimate
    last_n: int
    last_kl: float
    last_gold: Estimate
    drop: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "kl": self.kl, "gold": self.gold.to_dict(), "gain": self.gain.to_dict(),
                "last_n": self.last_n, "last_kl": self.last_kl, "last_gold": self.last_gold.to_dict(),
                "drop": self.drop.to_dict()}


def observed_peak(curve: BonCurve) -> ObservedPeak:
    """The data's peak (first N of highest mean gold) and the drop from it to the largest N, with intervals."""
    peak, last = int(np.argmax(curve.gold_mean)), len(curve.ns) - 1
    drop_low, drop_high = _bounds((curve.gold_draws[:, peak] - curve.gold_draws[:, last])[:, None])

    def at(index: int) -> Estimate:
        return Estimate(float(curve.gold_mean[index]), float(curve.gold_low[index]), float(curve.gold_high[index]))

    return ObservedPeak(
        n=int(curve.ns[peak]), kl=float(curve.kl[peak]), gold=at(peak),
        gain=Estimate(float(curve.gold_shifted[peak]), float(curve.gold_shifted_low[peak]),
                      float(curve.gold_shifted_high[peak])),
        last_n=int(curve.ns[last]), last_kl=float(curve.kl[last]), last_gold=at(last),
        drop=Estimate(float(curve.gold_mean[peak] - curve.gold_mean[last]), float(drop_low[0]), float(drop_high[0])),
    )


# --------------------------------------------------------------------------------------------- Gao's fit


@dataclass(frozen=True)
class GaoFit:
    """Least-squares fit of gold(d) = d(α − βd), d = √KL_BoN, to the gold gain over N=1.

    The fitted peak (d* = α/2β, KL* = d*², gold* = α²/4β as a gain over N=1, N* its real-valued N) exists only
    when β > 0 and α > 0; otherwise ``has_peak`` is False, the peak fields are None and ``reason`` says why.
    ``offset`` is the gold at N=1 that was subtracted (absolute gold at the peak = offset + peak_gold).
    """

    alpha: float
    beta: float
    peak_d: float | None
    peak_kl: float | None
    peak_gold: float | None
    r2: float
    has_peak: bool
    peak_n: float | None
    peak_within_data: bool | None  # the fitted peak's KL lies within the fitted KL range
    points: int
    max_kl: float
    offset: float
    reason: str = ""

    def predict(self, kl: float | np.ndarray) -> float | np.ndarray:
        """The fitted gold gain over N=1 at ``kl``."""
        d = np.sqrt(np.asarray(kl, dtype=float))
        gain = d * (self.alpha - self.beta * d)
        return float(gain) if gain.ndim == 0 else gain

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "r2": self.r2, "has_peak": self.has_peak,
                "peak_d": self.peak_d, "peak_kl": self.peak_kl, "peak_n": self.peak_n, "peak_gold": self.peak_gold,
                "peak_within_data": self.peak_within_data, "points": self.points, "max_kl": self.max_kl,
                "offset": self.offset, "reason": self.reason}


def fit_gao_bon(kl: Any, gold: Any, *, shift: bool = True) -> GaoFit:
    """Fit Gao et al.'s best-of-N form gold(d) = d(α − βd), d = √KL, by least squares (unweighted over points).

    With ``shift`` (the default) ``gold`` is shifted to start at 0 by subtracting its value at KL = 0 (N = 1),
    which must be among the points; with ``shift=False`` ``gold`` must already be the gain over N=1.
    """
    x, y = np.asarray(kl, dtype=float).ravel(), np.asarray(gold, dtype=float).ravel()
    if x.shape != y.shape or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)) or np.any(x < 0):
        raise ConfigError("the Gao fit needs equally many finite KL values (>= 0) and gold values")
    offset = 0.0
    if shift:
        start = x == 0
        if not start.any():
            raise ConfigError("shifting gold to start at 0 needs the N=1 point (KL 0); include N=1 or pass "
                              "shift=False with gold already measured from N=1")
        offset = float(y[start].mean())
        y = y - offset
    d = np.sqrt(x)
    if len(np.unique(d[d > 0])) < 2:
        raise ConfigError("the Gao fit needs gold at two or more N values above 1")
    design = np.column_stack([d, -d * d])
    (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = float(np.sum((y - design @ np.array([alpha, beta])) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else math.nan)
    alpha, beta = float(alpha), float(beta)
    common = dict(alpha=alpha, beta=beta, r2=r2, points=int(x.size), max_kl=float(x.max()), offset=offset)
    if beta <= 0:
        return GaoFit(**common, peak_d=None, peak_kl=None, peak_gold=None, has_peak=False, peak_n=None,
                      peak_within_data=None, reason="no peak within the fitted form: β <= 0, the fitted gold never falls")
    if alpha <= 0:
        return GaoFit(**common, peak_d=None, peak_kl=None, peak_gold=None, has_peak=False, peak_n=None,
                      peak_within_data=None, reason="no peak within the fitted form: α <= 0, the fitted gold falls from N=1")
    peak_d = alpha / (2 * beta)
    peak_kl = peak_d * peak_d
    return GaoFit(**common, peak_d=peak_d, peak_kl=peak_kl, peak_gold=alpha * alpha / (4 * beta), has_peak=True,
                  peak_n=float(n_for_kl(peak_kl)), peak_within_data=bool(peak_kl <= x.max()))


def fit_curve(curve: BonCurve) -> GaoFit:
    """`fit_gao_bon` on a curve's gold gains over N=1 (``offset`` is the curve's gold at N=1)."""
    return replace(fit_gao_bon(curve.kl, curve.gold_shifted, shift=False), offset=curve.gold_start.value)


@dataclass(frozen=True)
class GaoRLFit:
    """Least-squares fit of Gao et al.'s RL form gold(d) = d(α − β·log d), d = √KL, to the gold gain over step 0.

    The peak is where the derivative α − β(log d + 1) vanishes: d* = exp(α/β − 1), KL* = d*², gain β·d*; it
    exists only when β > 0 (otherwise ``has_peak`` is False and ``reason`` says why).
    """

    alpha: float
    beta: float
    peak_kl: float | None
    peak_gold: float | None
    r2: float
    has_peak: bool
    peak_within_data: bool | None
    points: int
    max_kl: float
    reason: str = ""

    def predict(self, kl: float | np.ndarray) -> float | np.ndarray:
        """The fitted gold gain at ``kl`` (0 at KL 0)."""
        d = np.sqrt(np.asarray(kl, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(d > 0, d * (self.alpha - self.beta * np.log(np.where(d > 0, d, 1.0))), 0.0)
        return float(gain) if gain.ndim == 0 else gain

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "r2": self.r2, "has_peak": self.has_peak,
                "peak_kl": self.peak_kl, "peak_gold": self.peak_gold, "peak_within_data": self.peak_within_data,
                "points": self.points, "max_kl": self.max_kl, "reason": self.reason}


def fit_gao_rl(kl: Any, gain: Any) -> GaoRLFit:
    """Fit gold gain = d(α − β log d), d = √KL, through the origin by least squares (points with KL <= 0 carry
    no information for a form that is 0 there and are left out)."""
    x, y = np.asarray(kl, dtype=float).ravel(), np.asarray(gain, dtype=float).ravel()
    if x.shape != y.shape or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ConfigError("the Gao RL fit needs equally many finite KL and gold values")
    keep = x > 0
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        raise ConfigError("the Gao RL fit needs gold at two or more KL values above 0")
    d = np.sqrt(x)
    design = np.column_stack([d, -d * np.log(d)])
    (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = float(np.sum((y - design @ np.array([alpha, beta])) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else math.nan)
    alpha, beta = float(alpha), float(beta)
    common = dict(alpha=alpha, beta=beta, r2=r2, points=int(x.size), max_kl=float(x.max()))
    if beta <= 0:
        return GaoRLFit(**common, peak_kl=None, peak_gold=None, has_peak=False, peak_within_data=None,
                        reason="no peak within the fitted form: β <= 0, the fitted gold never falls")
    exponent = alpha / beta - 1.0
    if exponent > 350:  # d* beyond any float: the peak is so far out that it is no peak
        return GaoRLFit(**common, peak_kl=None, peak_gold=None, has_peak=False, peak_within_data=False,
                        reason="the fitted peak lies beyond any reachable KL")
    peak_d = math.exp(exponent)
    return GaoRLFit(**common, peak_kl=peak_d * peak_d, peak_gold=beta * peak_d, has_peak=True,
                    peak_within_data=bool(peak_d * peak_d <= x.max()))
