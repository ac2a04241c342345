"""The core commands end to end through the real entry point, on the tiny random model."""

import json
import subprocess
import sys

import pytest

from rewardlab.cli import main
from rewardlab.scoring import RewardScorer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "rm"
    code = main([
        "train", "--model", "tiny-random", "--data", "synthetic:id?n=16&seed=0", "--output", str(out),
        "--max-steps", "2", "--batch-size", "2", "--head", "linear", "--max-length", "256",
    ])
    assert code == 0
    return out


def test_train_writes_model_and_metrics(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 2
    assert metrics["config"]["head"] == "linear"


def test_score_prompt_response_prints_the_scorer_value(trained, capsys):
    assert main(["score", str(trained), "--prompt", "What is 2 + 2?", "--response", "4"]) == 0
    printed = float(capsys.readouterr().out.strip())
    expected = RewardScorer.from_pretrained(trained).score_conversations([[{"role": "user", "content": "What is 2 + 2?"}]], ["4"])[0]
    assert printed == pytest.approx(expected, abs=1e-5)


def test_score_data_writes_one_line_per_pair(trained, tmp_path, capsys):
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(trained), "--data", "synthetic:ood?n=6&seed=3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    assert all(r["chosen_wins"] == (r["chosen_reward"] > r["rejected_reward"]) for r in rows)
    assert all(r["truncation"] is None for r in rows)
    out = capsys.readouterr().out
    assert "scored 6 of 6 pairs" in out and "0 pairs dropped" in out and "0 cut" in out


def test_score_prompt_without_response_is_an_error(trained, capsys):
    assert main(["score", str(trained), "--prompt", "hi"]) == 2
    assert "--response" in capsys.readouterr().err


def test_export_linear_head_and_refuse_mlp(trained, tmp_path, capsys):
    assert main(["export", str(trained), "--to", "seq-cls", str(tmp_path / "seqcls")]) == 0
    assert (tmp_path / "seqcls" / "config.json").exists()
    mlp = tmp_path / "mlp"
    main([
        "train", "--model", "tiny-random", "--data", "synthetic:id?n=8&seed=0", "--output", str(mlp),
        "--max-steps", "1", "--batch-size", "2", "--head", "mlp", "--max-length", "256",
    ])
    capsys.readouterr()
    assert main(["export", str(mlp), "--to", "seq-cls", str(tmp_path / "no")]) == 2
    assert "mlp" in capsys.readouterr().err.lower()


def test_demo_quick_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", "demo", "--quick", "--output", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BT baseline" in result.stdout and "GRM" in result.stdout
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    for name in ("bt", "grm"):
        for split in ("id", "ood"):
            cell = report["results"][name][split]["all"]
            assert cell["ci_low"] <= cell["accuracy"] <= cell["ci_high"]
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 1000
    # GRM trains on BT's pairs, so it reuses every frozen-layer output BT computed
    bt, grm = (json.loads((tmp_path / "demo" / name / "metrics.json").read_text())["frozen_layer_cache"]
               for name in ("bt", "grm"))
    assert bt["misses"] > 0 and grm["misses"] == 0 and grm["hits"] == bt["hits"] + bt["misses"]


def test_train_frozen_cache_flag(tmp_path):
    metrics = {}
    for gb in ("0", "0.5"):
        out = tmp_path / f"rm-{gb}"
        code = main([
            "train", "--model", "tiny-random", "--data", "synthetic:id?n=8&seed=0", "--output", str(out),
            "--max-steps", "4", "--batch-size", "4", "--max-length", "256", "--trainable-top-layers", "1",
            "--frozen-cache-gb", gb,
        ])
        assert code == 0
        metrics[gb] = json.loads((out / "metrics.json").read_text())
    assert metrics["0"]["frozen_layer_cache"] is None and metrics["0"]["config"]["frozen_cache_gb"] == 0
    assert metrics["0.5"]["frozen_layer_cache"]["hits"] == 8  # the second epoch over the 8 pairs
