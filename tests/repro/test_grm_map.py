"""`rewardlab repro grm-map`: the grid, its training settings, and a tiny run end to end with resume."""

import json
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError
from rewardlab.repro.grm_map import MapConfig, run_grm_map
from rewardlab.repro.grm_map.analysis import HELPS, HURTS, UNCLEAR, verdict
from rewardlab.repro.stats import Estimate

TINY = dict(model="tiny-random", train_data="synthetic", depths=("top-1",), pairs=(8,), epochs=(1, 2),
            alphas=(0.1,), seeds=(0,), heldout_pairs=8, batch_size=4, suites=("synthetic-ood",), threads=1)


def test_grid_expands_every_axis_in_cache_friendly_order():
    config = MapConfig(depths=("top-4", "full"), pairs=(16, 8), epochs=(4, 1), alphas=(0.1, 0.01),
                       methods=("grm-sft", "grm-dpo-noref"), seeds=(0, 1), batch_size=4)
    trainings = config.trainings()
    assert len(trainings) == 2 * 2 * 2 * (1 + 2 * 2)
    assert len({t.name for t in trainings}) == len(trainings)
    assert [t.depth for t in trainings[:20]] == ["top-4"] * 20  # one depth at a time: the frozen cache stays bound
    group = trainings[:5]  # depth top-4, 16 pairs, seed 0: BT first, then each method at each α
    assert [(t.method, t.alpha) for t in group] == [
        ("bt", None), ("grm-sft-linear", 0.1), ("grm-sft-linear", 0.01), ("grm-dpo-noref", 0.1), ("grm-dpo-noref", 0.01)]
    assert {(t.pairs, t.seed) for t in group} == {(16, 0)}
    assert group[1].variant == "grm-sft-linear@0.1" and group[1].name == "top-4-p16-grm-sft-linear-a0.1-s0"
    assert len(config.measurements()) == 2 * len(trainings)
    assert config.sorted_epochs == (1, 4)


def test_train_config_makes_snapshots_of_one_constant_lr_run(tmp_path):
    config = MapConfig(depths=("top-4", "lora", "full"), pairs=(64,), epochs=(1, 2, 4), batch_size=8)
    by_depth = {t.depth: t for t in config.trainings() if t.method == "grm-sft-linear" and t.alpha == 0.01}
    train = config.train_config(by_depth["top-4"], tmp_path / "train.jsonl", tmp_path / "run")
    assert (train.max_steps, train.snapshot_steps) == (32, [8, 16])  # 8 steps per epoch, the last epoch is the model
    assert train.lr_scheduler_type == "constant_with_warmup" and int(train.warmup_ratio * train.max_steps) == 1
    assert (train.reg, train.alpha, train.head, train.trainable_top_layers, train.lora) == ("sft", 0.01, "linear", 4, False)
    lora = config.train_config(by_depth["lora"], tmp_path / "t", tmp_path / "r")
    full = config.train_config(by_depth["full"], tmp_path / "t", tmp_path / "r")
    assert (lora.lora, lora.trainable_top_layers, full.lora, full.trainable_top_layers) == (True, None, False, None)
    bt = config.train_config(config.trainings()[0], tmp_path / "t", tmp_path / "r")
    assert (bt.loss, bt.reg) == ("bt", "none")
    longer = MapConfig(pairs=(320,), epochs=(1, 4), batch_size=8)
    assert int(longer.train_config(longer.trainings()[0], tmp_path / "t", tmp_path / "r").warmup_ratio * 160) == 4


@pytest.mark.parametrize("options, message", [
    ({"depths": ("top-0",)}, "unknown depth"),
    ({"depths": ("middle",)}, "unknown depth"),
    ({"pairs": (4,)}, "at least --batch-size"),
    ({"alphas": (1.0,)}, "strictly between 0 and 1"),
    ({"methods": ("bt",)}, "unknown method"),
    ({"seeds": (0, 0)}, "listed twice"),
    ({"epochs": ()}, "needs at least one value"),
])
def test_bad_grids_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        MapConfig(**options)


def test_verdict_reads_the_interval():
    assert verdict(Estimate(0.02, 0.001, 0.04, 10, ())) == HELPS
    assert verdict(Estimate(-0.02, -0.04, -0.001, 10, ())) == HURTS
    assert verdict(Estimate(0.02, -0.01, 0.04, 10, ())) == UNCLEAR


def _results(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))}


def test_tiny_map_end_to_end_resumes_and_extends(tmp_path):
    out = tmp_path / "map"
    first = run_grm_map(MapConfig(out=str(out), **TINY), echo=lambda s: None, progress=False)
    assert sorted(first.trained_now) == ["top-1-p8-bt-s0", "top-1-p8-grm-sft-linear-a0.1-s0"]
    assert len(first.measured_now) == 4
    results = _results(out)
    assert set(results) == {f"top-1-p8-{v}-s0-e{e}" for v in ("bt", "grm-sft-linear-a0.1") for e in (1, 2)}
    for result in results.values():
        drift = result["drift"]
        assert 0 < drift["cka_response"] <= 1 + 1e-9 and 0 < drift["cka_last"] <= 1 + 1e-9
        assert set(result["outcomes"]) == {"in-distribution", "synthetic-ood"}
        assert [h["step"] for h in result["train_history"]][-1] == result["step"] == 2 * result["epoch"]
    # The weights are gone once measured, the small files stay.
    run_dir = out / "runs" / "top-1-p8-bt-s0"
    assert not list(run_dir.rglob("*.safetensors")) and (run_dir / "metrics.json").is_file()

    summary = json.loads((out / "map.json").read_text())
    assert summary["measured"] == summary["planned"] == 4
    assert [(c["depth"], c["pairs"], c["epochs"], c["steps"]) for c in summary["cells"]] == [("top-1", 8, 1, 2), ("top-1", 8, 2, 4)]
    grm = summary["cells"][0]["variants"][1]
    assert grm["variant"] == "grm-sft-linear@0.1" and grm["verdicts"]["OOD mean"] in (HELPS, HURTS, UNCLEAR)
    diff = grm["difference_vs_bt"]["in-distribution"]
    bt_acc = summary["cells"][0]["variants"][0]["accuracy"]["in-distribution"]["value"]
    assert diff["value"] == pytest.approx(grm["accuracy"]["in-distribution"]["value"] - bt_acc)
    text = (out / "map.md").read_text()
    assert "Command: `rewardlab repro grm-map" in text and "## What the map shows" in text and "CKA" in text
    assert (out / "map.png").stat().st_size > 0 and (out / "drift.png").stat().st_size > 0

    again = run_grm_map(MapConfig(out=str(out), **TINY), echo=lambda s: None, progress=False)
    assert again.trained_now == [] and again.measured_now == []
    assert _results(out) == results

    wider = run_grm_map(MapConfig(out=str(out), **{**TINY, "seeds": (0, 1)}), echo=lambda s: None, progress=False)
    assert sorted(wider.trained_now) == ["top-1-p8-bt-s1", "top-1-p8-grm-sft-linear-a0.1-s1"]
    assert {k: v for k, v in _results(out).items() if k.endswith(("s0-e1", "s0-e2"))} == results
    assert json.loads((out / "map.json").read_text())["cells"][0]["variants"][0]["seeds"] == [0, 1]
    assert len(json.loads((out / "run.json").read_text())["invocations"]) == 3


def test_a_lost_result_is_measured_again_identically(tmp_path):
    out = tmp_path / "map"
    config = MapConfig(out=str(out), keep_models=True, **TINY)
    run_grm_map(config, echo=lambda s: None, progress=False)
    before = _results(out)
    lost = out / "results" / "top-1-p8-grm-sft-linear-a0.1-s0-e1.json"
    lost.unlink()
    again = run_grm_map(config, echo=lambda s: None, progress=False)
    assert again.trained_now == [] and again.measured_now == ["top-1-p8-grm-sft-linear-a0.1-s0-e1"]
    after = _results(out)
    assert after[lost.stem]["outcomes"] == before[lost.stem]["outcomes"]
    assert after[lost.stem]["drift"] == pytest.approx(before[lost.stem]["drift"])


def test_a_lost_result_without_weights_is_trained_and_measured_again(tmp_path):
    out = tmp_path / "map"
    run_grm_map(MapConfig(out=str(out), **TINY), echo=lambda s: None, progress=False)
    before = _results(out)
    (out / "results" / "top-1-p8-bt-s0-e2.json").unlink()
    messages: list[str] = []
    again = run_grm_map(MapConfig(out=str(out), **TINY), echo=messages.append, progress=False)
    assert any("weights of an unmeasured epoch were removed; training it again" in m for m in messages)
    assert again.trained_now == ["top-1-p8-bt-s0"] and again.measured_now == ["top-1-p8-bt-s0-e2"]
    after = _results(out)
    assert after["top-1-p8-bt-s0-e2"]["outcomes"] == before["top-1-p8-bt-s0-e2"]["outcomes"]
    assert after["top-1-p8-bt-s0-e1"] == before["top-1-p8-bt-s0-e1"]  # measured once, kept


def test_a_rerun_with_other_model_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "map"
    (out).mkdir()
    (out / "run.json").write_text(json.dumps({"identity": {**MapConfig(**TINY).identity(), "lr": 0.5}, "invocations": []}))
    code = main(["repro", "grm-map", "--out", str(out), "--model", "tiny-random", "--train-data", "synthetic"])
    assert code != 0
    err = capsys.readouterr().err
    assert "other settings" in err and "lr: 0.5 -> 0.0001" in err and "Traceback" not in err


def test_cli_rejects_a_bad_depth_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["repro", "grm-map", "--depths", "sideways"])
    err = capsys.readouterr().err
    assert "sideways" in err and "Traceback" not in err


def test_cli_runs_a_one_cell_map(tmp_path, capsys):
    out = tmp_path / "cli-map"
    code = main(["repro", "grm-map", "--out", str(out), "--model", "tiny-random", "--train-data", "synthetic",
                 "--depths", "top-1", "--pairs", "8", "--epochs", "1", "--alphas", "0.1", "--seeds", "0",
                 "--heldout-pairs", "8", "--batch-size", "4", "--suites", "synthetic-ood", "--threads", "1",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "map.json").read_text())
    assert summary["measured"] == 2 and summary["command"].startswith("rewardlab repro grm-map --out")
    assert "--depths top-1 --pairs 8 --epochs 1 --alphas 0.1 --methods grm-sft-linear --seeds 0" in summary["command"]
