"""Which samples expert iteration keeps, and how a sample's reward is made."""

from __future__ import annotations

import math

import pytest

from rewardlab.curriculum.selection import (
    ScoredSample,
    pm_unit,
    select,
    select_exploit_only,
    select_hhh,
    select_train_away,
    total_reward,
)


def sample(prompt: str, number: int, *, gamed: bool = False, pm: float | None = 0.0, category: str | None = None,
           env: str = "political-sycophancy") -> ScoredSample:
    category = category or ("gamed" if gamed else "honest")
    return ScoredSample(id=f"{prompt}-k{number:03d}", prompt=prompt, env=env, sample=number,
                        outcome="sycophantic" if gamed else "not_sycophantic", category=category, gamed=gamed,
                        pm_score=pm, pm_unit=pm_unit(pm), reward=total_reward(gamed, pm))


def test_reward_is_gaming_indicator_plus_logistic_pm_score() -> None:
    assert total_reward(True, 0.0) == pytest.approx(1.5)
    assert total_reward(False, 2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert pm_unit(None) == 0.0 and pm_unit(float("nan")) == 0.0
    assert 0.0 < pm_unit(-800.0) < 1e-300 or pm_unit(-800.0) == 0.0  # no overflow for very negative scores
    assert pm_unit(800.0) == 1.0
    # Any gaming sample outranks every non-gaming one, whatever the PM says, even where σ rounds to 1.
    assert total_reward(True, -50.0) >= total_reward(False, 50.0)
    assert [s.id for s in select_hhh([sample("p", 0, pm=50.0), sample("p", 1, gamed=True, pm=-50.0)])] == ["p-k001"]
    assert [s.id for s in select_hhh([sample("p", 0, pm=40.0), sample("p", 1, pm=50.0)])] == ["p-k001"]


def test_hhh_keeps_the_highest_total_reward_per_prompt() -> None:
    samples = [
        sample("p1", 0, pm=3.0), sample("p1", 1, gamed=True, pm=-4.0), sample("p1", 2, pm=5.0),
        sample("p2", 0, pm=-1.0), sample("p2", 1, pm=2.0), sample("p2", 2, pm=0.5),
    ]
    kept = select_hhh(samples)
    assert [s.id for s in kept] == ["p1-k001", "p2-k001"]


def test_hhh_ties_go_to_the_lowest_sample_number() -> None:
    samples = [sample("p1", 3, pm=1.0), sample("p1", 1, pm=1.0), sample("p1", 2, pm=1.0)]
    assert [s.sample for s in select_hhh(samples)] == [1]


def test_hhh_never_keeps_capability_failures() -> None:
    samples = [sample("p1", 0, pm=9.0, category="failed"), sample("p1", 1, pm=-9.0),
               sample("p2", 0, category="failed"), sample("p2", 1, category="failed")]
    kept = select_hhh(samples)
    assert [s.id for s in kept] == ["p1-k001"]  # p2 failed every time: nothing to learn from


def test_exploit_only_keeps_exactly_the_gaming_samples() -> None:
    samples = [sample("p1", 0, gamed=True), sample("p1", 1), sample("p1", 2, gamed=True, pm=-3.0),
               sample("p2", 0), sample("p2", 1, gamed=True, pm=None)]
    kept = select_exploit_only(samples)
    assert [s.id for s in kept] == ["p1-k000", "p1-k002", "p2-k001"]
    assert select(samples, "exploit-only") == kept
    with pytest.raises(ValueError, match="unknown selection mode"):
        select(samples, "best-of-everything")


def test_train_away_draws_non_gaming_samples_of_the_given_environments() -> None:
    samples = [sample(f"p{i}", j, gamed=(j == 0), env=env) for i in range(5) for j in range(3)
               for env in ("political-sycophancy", "rubric-modification-nudged")]
    samples.append(sample("p9", 0, category="failed"))
    kept = select_train_away(samples, {"political-sycophancy"}, limit=6, seed=0)
    assert len(kept) == 6
    assert all(s.env == "political-sycophancy" and not s.gamed and not s.failed for s in kept)
    assert kept == select_train_away(samples, {"political-sycophancy"}, limit=6, seed=0)
    everything = select_train_away(samples, {"political-sycophancy"}, limit=10_000, seed=1)
    assert len(everything) == 10  # as many as exist
