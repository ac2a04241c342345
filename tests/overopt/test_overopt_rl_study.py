"""`run_rl_study` on its own (what `rewardlab rl-overopt run` runs): it trains the study's proxies, then RL."""

from __future__ import annotations

import csv

from rewardlab.overopt.config import BonConfig, RLConfig
from rewardlab.overopt.rl_study import rl_config_for, run_rl_study


def test_the_rl_study_trains_its_proxies_then_optimizes_against_them(tmp_path, one_torch_thread, arithmetic_guesser):
    study = BonConfig(policy="replay:guesser", out=str(tmp_path / "study"), proxy_model="tiny-random", proxies=["bt"],
                      eval_prompts=2, train_prompts=6, train_k=6, pairs_per_prompt=4, proxy_steps=2,
                      proxy_batch_size=4, proxy_trainable_top_layers=1, families=["arithmetic"], progress=False)
    rl = rl_config_for(study, RLConfig(policy="tiny-random", steps=2, batch_size=4, num_generations=2, eval_every=2,
                                       eval_prompts=2, eval_samples=2, max_new_tokens=8, progress=False))
    policy = arithmetic_guesser()
    result = run_rl_study(rl, study, policy=policy, echo=lambda line: None)
    out = tmp_path / "study"
    assert (out / "proxies" / "bt" / "model").is_dir() and (out / "samples" / "train" / "samples.jsonl").is_file()
    assert not (out / "samples" / "eval").exists()  # RL needs no best-of-N evaluation samples
    assert [e["step"] for e in result.runs["bt"].evals] == [0, 2]
    rows = list(csv.DictReader((out / "rl" / "rl_curves.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 2] and {r["recipe"] for r in rows} == {"bt"}
    notes = (out / "rl" / "rl_report.md").read_text()
    assert "GRPOTrainer" in notes and "Wall time" in notes and "trl=" in notes

    calls = policy.calls
    run_rl_study(rl, study, policy=policy, echo=lambda line: None)  # a rerun samples, trains and optimizes nothing
    assert policy.calls == calls
