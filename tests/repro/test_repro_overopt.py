"""`rewardlab repro overopt` end to end on tiny models: both label conditions, one report, shared samples."""

from __future__ import annotations

import csv
import json

import pytest

from rewardlab.cli import main
from rewardlab.repro.overopt import OveroptReproConfig, run_repro_overopt


def _config(tmp_path, **overrides) -> OveroptReproConfig:
    values = dict(out=str(tmp_path / "overopt"), policy="replay:guesser", proxy_model="tiny-random",
                  proxies=("bt", "ensemble?k=2&combine=mean&lambda=1"), eval_prompts=6, train_prompts=6, k=8,
                  train_k=6, pairs_per_prompt=4, proxy_steps=3, proxy_batch_size=4, proxy_trainable_top_layers=1,
                  bootstrap=50, progress=False, families=("arithmetic",), extra={"proxy_max_length": 128}, rl_steps=0)
    values.update(overrides)
    return OveroptReproConfig(**values)


def test_both_conditions_share_samples_and_write_one_report(tmp_path, one_torch_thread, arithmetic_guesser):
    policy = arithmetic_guesser()
    result = run_repro_overopt(_config(tmp_path), policy=policy, echo=lambda line: None)
    out = tmp_path / "overopt"
    assert set(result.studies) == {"clean", "noise-25"}
    clean, noisy = result.studies["clean"], result.studies["noise-25"]
    # the same samples and gold for both conditions; the noisy one flipped exactly a quarter of the same pairs
    assert clean.curves["bt"].gold_mean[0] == noisy.curves["bt"].gold_mean[0]
    assert len(noisy.pairs.pairs) == len(clean.pairs.pairs)
    assert len(noisy.pairs.flipped) == round(0.25 * len(clean.pairs.pairs)) > 0
    assert not (out / "clean" / "samples").exists() and (out / "samples" / "eval" / "samples.jsonl").is_file()
    # the noisy condition's scoring reused the frozen layers' outputs computed for the clean one
    assert result.frozen_cache["hits"] > 0

    rows = list(csv.DictReader((out / "overopt_curves.csv").open()))
    assert {(row["condition"], row["recipe"]) for row in rows} == {
        (c, r) for c in ("clean", "noise-25") for r in ("bt", "ensemble?k=2&combine=mean&lambda=1")}
    report = (out / "overopt.md").read_text()
    assert "Command:" in report and "Wall time" in report and "## Verdicts" in report
    assert report.count("| clean |") == 2 and report.count("| noise-25 |") == 2
    assert (out / "overopt_curves.png").stat().st_size > 1000
    assert (out / "clean" / "bon_report.md").is_file() and (out / "noise-25" / "bon_report.md").is_file()

    calls = policy.calls
    again = run_repro_overopt(_config(tmp_path), policy=policy, echo=lambda line: None)
    assert policy.calls == calls  # a rerun draws nothing
    assert again.studies["noise-25"].curves["bt"].gold_mean.tolist() == noisy.curves["bt"].gold_mean.tolist()


def test_frozen_cache_changes_no_score(tmp_path, one_torch_thread, arithmetic_guesser):
    with_cache = run_repro_overopt(_config(tmp_path / "a"), policy=arithmetic_guesser(), echo=lambda line: None)
    without = run_repro_overopt(_config(tmp_path / "b", frozen_cache_gb=0), policy=arithmetic_guesser(),
                                echo=lambda line: None)
    for condition in ("clean", "noise-25"):
        for recipe, curve in with_cache.studies[condition].curves.items():
            other = without.studies[condition].curves[recipe]
            assert curve.proxy_mean.tolist() == pytest.approx(other.proxy_mean.tolist(), abs=1e-4)


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["repro", "overopt", "--out", str(tmp_path / "x"), "--label-noise", "0.9"]) == 2
    assert "label_noise" in capsys.readouterr().err
    assert main(["repro", "overopt", "--out", str(tmp_path / "x"), "--proxy", "nope"]) == 2
    assert "unknown proxy recipe" in capsys.readouterr().err
    with pytest.raises(Exception, match="unknown best-of-N settings"):
        OveroptReproConfig(extra={"nonsense": 1})
    assert not (tmp_path / "x").exists()
    assert json.dumps(OveroptReproConfig().study("clean").identity())  # the defaults form a valid study
    biased = OveroptReproConfig(longer_chosen=0.9)
    assert list(biased.conditions()) == ["clean", "noise-25", "longer-chosen-90"]
    study = biased.study("longer-chosen-90")
    assert study.longer_chosen == 0.9 and study.label_noise == 0.0 and study.samples_dir == biased.study("clean").samples_dir


def test_rl_step_runs_after_best_of_n_and_the_report_shows_both(tmp_path, one_torch_thread, arithmetic_guesser):
    config = _config(tmp_path, rl_steps=2, rl_proxies=("bt",), rl_conditions=("clean",), max_new_tokens=8,
                     rl={"policy": "tiny-random", "eval_every": 1, "eval_prompts": 2, "eval_samples": 2,
                         "batch_size": 4, "num_generations": 2})
    result = run_repro_overopt(config, policy=arithmetic_guesser(), echo=lambda line: None)
    out = tmp_path / "overopt"
    assert list(result.rl) == ["clean"] and list(result.rl["clean"].curves) == ["bt"]
    assert [e["step"] for e in result.rl["clean"].runs["bt"].evals] == [0, 1, 2]
    rows = list(csv.DictReader((out / "overopt_rl.csv").open()))
    assert {(r["condition"], r["recipe"]) for r in rows} == {("clean", "bt")} and len(rows) == 3
    assert (out / "overopt_rl.png").stat().st_size > 1000
    assert (out / "clean" / "rl" / "rl_report.md").is_file() and (out / "clean" / "rl" / "bt" / "generations.jsonl").is_file()
    report = (out / "overopt.md").read_text()
    assert "## Best-of-N and RL side by side" in report and "RL, condition clean" in report
    with pytest.raises(Exception, match="RL proxies grm-sft are not among the best-of-N proxies"):
        _config(tmp_path, rl_steps=2, rl_proxies=("grm-sft",), rl={"policy": "tiny-random"})
    with pytest.raises(Exception, match="not an hf: policy"):
        _config(tmp_path, rl_steps=2, rl_proxies=("bt",))
