"""`rewardlab bon run` end to end on tiny models: samples, gold, proxies, curves, report, resume."""

from __future__ import annotations

import csv
import json

import pytest

from rewardlab.cli import main
from rewardlab.overopt.config import BonConfig
from rewardlab.overopt.study import run_bon

def _config(tmp_path, **overrides) -> BonConfig:
    values = dict(policy="replay:guesser", out=str(tmp_path / "bon"), proxies=["bt", "grm-sft"],
                  proxy_model="tiny-random", eval_prompts=6, train_prompts=6, families=["arithmetic"], k=8, train_k=6,
                  pairs_per_prompt=4, proxy_steps=3, proxy_batch_size=4, proxy_trainable_top_layers=1,
                  proxy_max_length=128, bootstrap=50, progress=False)
    values.update(overrides)
    return BonConfig(**values)


def test_study_writes_curves_and_a_rerun_reuses_everything(tmp_path, one_torch_thread, arithmetic_guesser):
    policy = arithmetic_guesser()
    result = run_bon(_config(tmp_path), policy=policy, echo=lambda line: None)
    out = tmp_path / "bon"
    assert set(result.curves) == {"bt", "grm-sft"}
    for curve in result.curves.values():
        assert curve.prompts == 6 and curve.k == 8 and curve.ns[0] == 1 and curve.ns[-1] == 8
        # the proxy's own score of its best-of-N choice cannot fall as N grows
        assert all(later >= earlier - 1e-9 for earlier, later in zip(curve.proxy_mean, curve.proxy_mean[1:]))
        assert 0.0 <= curve.gold_mean.min() and curve.gold_mean.max() <= 1.0
    rows = list(csv.DictReader((out / "bon_curves.csv").open()))
    assert {row["recipe"] for row in rows} == {"bt", "grm-sft"} and len(rows) == 2 * len(result.curves["bt"].ns)
    report = (out / "bon_report.md").read_text()
    assert "Command:" in report and "Wall time" in report and "bt" in report
    assert (out / "bon_curves.png").stat().st_size > 1000
    assert result.pairs.pairs and all(pair.meta["chosen_gold"] > pair.meta["rejected_gold"] for pair in result.pairs.pairs)

    calls = policy.calls
    again = run_bon(_config(tmp_path), policy=policy, echo=lambda line: None)
    assert policy.calls == calls  # every sample came from the store
    assert json.loads((out / "study.json").read_text())["identity"]["k"] == 8
    for name, curve in again.curves.items():
        assert curve.gold_mean.tolist() == result.curves[name].gold_mean.tolist()


def test_label_noise_flips_training_labels_and_other_settings_need_another_folder(tmp_path, one_torch_thread,
                                                                                  arithmetic_guesser):
    noisy = run_bon(_config(tmp_path, proxies=["bt"], label_noise=0.25), policy=arithmetic_guesser(),
                    echo=lambda line: None)
    flipped = [pair for pair in noisy.pairs.pairs if pair.meta.get("label_flipped")]
    assert len(flipped) == len(noisy.pairs.flipped) == round(0.25 * len(noisy.pairs.pairs)) > 0
    lines = (tmp_path / "bon" / "proxies" / "bt" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    written = {(record["chosen"][-1]["content"], record["rejected"][-1]["content"]) for record in map(json.loads, lines)}
    assert all((pair.chosen, pair.rejected) in written for pair in flipped)  # the proxy trains on the flipped labels
    with pytest.raises(Exception, match="other settings"):
        run_bon(_config(tmp_path, proxies=["bt"], label_noise=0.0), policy=arithmetic_guesser(), echo=lambda line: None)


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["bon", "run", "--out", str(tmp_path / "x"), "--proxy", "nope", "--no-progress"]) == 2
    assert "unknown proxy recipe 'nope'" in capsys.readouterr().err
    assert main(["bon", "run", "--out", str(tmp_path / "x"), "--families", "algebra", "--no-progress"]) == 2
    assert "unknown task families algebra" in capsys.readouterr().err
