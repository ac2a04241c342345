"""RL over-optimization on tiny models: a real TRL GRPO run logs gold, proxy and KL, and resumes."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from rewardlab.errors import ConfigError
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.reward_model import RewardModel
from rewardlab.overopt.config import RLConfig
from rewardlab.overopt.estimator import fit_gao_rl
from rewardlab.overopt.gold import SyntheticGold, synthetic_prompts
from rewardlab.overopt.proxies import ProxyScorer
from rewardlab.overopt.rl import CHECKPOINTS, EVALS_FILE, GENERATIONS_FILE, TRAIN_LOG_FILE, run_rl
from rewardlab.overopt.rl_report import rl_curve, write_rl_report


@pytest.fixture(scope="module")
def tiny_proxy(tmp_path_factory: pytest.TempPathFactory) -> ProxyScorer:
    """A tiny-random reward model as the proxy (its scores are arbitrary but deterministic)."""
    folder = tmp_path_factory.mktemp("rl-proxy") / "proxy"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
    save_reward_model(model, tokenizer, folder, {"max_length": 512})
    return ProxyScorer.load(folder, name="tiny", device="cpu")


def _config(tmp_path, **overrides) -> RLConfig:
    values = dict(policy="tiny-random", out=str(tmp_path / "rl"), steps=2, batch_size=4, num_generations=2,
                  eval_every=1, eval_prompts=2, eval_samples=2, max_new_tokens=8, progress=False)
    values.update(overrides)
    return RLConfig(**values)


def _prompts():
    prompts = synthetic_prompts(8, 0, ["arithmetic", "capitals"])
    return prompts[:6], prompts[6:]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_grpo_steps_log_gold_proxy_and_kl(tmp_path, one_torch_thread, tiny_proxy):
    train, held_out = _prompts()
    runs = run_rl(_config(tmp_path), {"tiny": tiny_proxy}, SyntheticGold(), train, held_out, echo=lambda line: None)
    run = runs["tiny"]
    folder = tmp_path / "rl" / "tiny"
    evals = _lines(folder / EVALS_FILE)
    assert [e["step"] for e in evals] == [0, 1, 2]
    for record in evals:
        assert {"proxy", "gold", "kl", "length_tokens", "features", "proxy_se"} <= set(record)
        assert 0.0 <= record["gold"] <= 1.0 and np.isfinite(record["proxy"]) and np.isfinite(record["kl"])
    assert evals[0]["kl"] == 0.0  # the LoRA adapter starts as the identity, so the policy is the initial one
    assert evals[0]["kl_k3_per_token"] == 0.0 and all(e["kl_k3_per_token"] >= 0.0 for e in evals)  # TRL's estimator
    generations = _lines(folder / GENERATIONS_FILE)
    assert len(generations) == 3 * 2 * 2  # every evaluated response is kept
    first = [g for g in generations if g["step"] == 0]
    assert [g["proxy"] for g in first] == pytest.approx(
        tiny_proxy.score([held_out[0]] * 2 + [held_out[1]] * 2, [g["response"] for g in first]))
    # TRL's own log: its KL estimate, and the gold (weight 0) beside the proxy on the training batches
    steps = {entry["step"]: entry for entry in json.loads((folder / TRAIN_LOG_FILE).read_text()) if "kl" in entry}
    assert set(steps) == {1, 2}
    assert all("rewards/proxy/mean" in e and "rewards/gold/mean" in e for e in steps.values())
    assert run.evals == evals

    curve = rl_curve(run)
    assert curve.steps == [0, 1, 2] and curve.rows[0]["gold_gain"] == 0.0
    paths = write_rl_report({"tiny": curve}, tmp_path / "report")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [int(r["step"]) for r in rows] == [0, 1, 2] and "share_flattery" in rows[0]
    assert paths["plot"].stat().st_size > 1000
    text = paths["markdown"].read_text()
    assert "| tiny | 2 |" in text and "Gao RL fit" in text


def test_resume_continues_the_step_count_and_the_log(tmp_path, one_torch_thread, tiny_proxy):
    train, held_out = _prompts()
    gold = SyntheticGold()
    run_rl(_config(tmp_path), {"tiny": tiny_proxy}, gold, train, held_out, echo=lambda line: None)
    folder = tmp_path / "rl" / "tiny"
    before = _lines(folder / EVALS_FILE)

    # a rerun of a finished run trains nothing (TRL's log comes back from the last checkpoint if need be)
    messages = []
    (folder / TRAIN_LOG_FILE).unlink()
    again = run_rl(_config(tmp_path), {"tiny": tiny_proxy}, gold, train, held_out, echo=messages.append)["tiny"]
    assert any("nothing to train" in m for m in messages)
    assert sorted(e["step"] for e in again.train_log if "kl" in e) == [1, 2]

    # more steps continue from the last checkpoint: the step count goes on, earlier records are kept
    messages = []
    run = run_rl(_config(tmp_path, steps=4), {"tiny": tiny_proxy}, gold, train, held_out, echo=messages.append)["tiny"]
    assert any("resuming from step 2" in m for m in messages)
    evals = _lines(folder / EVALS_FILE)
    assert [e["step"] for e in evals] == [0, 1, 2, 3, 4]
    assert evals[:3] == before
    assert sorted(e["step"] for e in run.train_log if "kl" in e) == [1, 2, 3, 4]
    assert (folder / CHECKPOINTS / "checkpoint-4").is_dir()

    # a run killed after its last checkpoint: the records after it are dropped and made again, once
    shutil.rmtree(folder / CHECKPOINTS / "checkpoint-4")
    run_rl(_config(tmp_path, steps=4), {"tiny": tiny_proxy}, gold, train, held_out, echo=lambda line: None)
    assert [e["step"] for e in _lines(folder / EVALS_FILE)] == [0, 1, 2, 3, 4]
    assert len(_lines(folder / GENERATIONS_FILE)) == 5 * 2 * 2


def test_other_settings_in_the_same_folder_are_refused(tmp_path, one_torch_thread, tiny_proxy):
    train, held_out = _prompts()
    run_rl(_config(tmp_path), {"tiny": tiny_proxy}, SyntheticGold(), train, held_out, echo=lambda line: None)
    with pytest.raises(ConfigError, match="other settings .*lr"):
        run_rl(_config(tmp_path, lr=0.5), {"tiny": tiny_proxy}, SyntheticGold(), train, held_out,
               echo=lambda line: None)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        RLConfig(batch_size=6, num_generations=4)
    with pytest.raises(ConfigError, match="trainer"):
        RLConfig(trainer="ppo")
    with pytest.raises(ConfigError, match="num_generations must be at least 2"):
        RLConfig(num_generations=1, batch_size=4)


def test_gao_rl_fit_recovers_the_form():
    kl = np.linspace(0.25, 80, 24)
    d = np.sqrt(kl)
    fit = fit_gao_rl(np.concatenate([[0.0], kl]), np.concatenate([[0.0], d * (0.3 - 0.1 * np.log(d))]))
    assert fit.alpha == pytest.approx(0.3) and fit.beta == pytest.approx(0.1)
    assert fit.has_peak and fit.peak_kl == pytest.approx(np.exp(2 * (0.3 / 0.1 - 1)))
    assert fit.peak_within_data and fit.peak_gold == pytest.approx(0.1 * np.exp(2.0))
    rising = fit_gao_rl(kl, 0.2 * d)
    assert not rising.has_peak and "never falls" in rising.reason
    with pytest.raises(ConfigError, match="two or more"):
        fit_gao_rl([0.0, 1.0], [0.0, 0.1])


def test_rloo_trainer_runs_the_same_study(tmp_path, one_torch_thread, tiny_proxy):
    train, held_out = _prompts()
    run = run_rl(_config(tmp_path, trainer="rloo", steps=1), {"tiny": tiny_proxy}, SyntheticGold(), train, held_out,
                 echo=lambda line: None)["tiny"]
    assert [e["step"] for e in run.evals] == [0, 1]
    assert any("rewards/gold/mean" in entry and "kl" in entry for entry in run.train_log)
