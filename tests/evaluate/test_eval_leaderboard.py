"""leaderboard.json: RewardBench results in the reference scripts' shape, against hand-computed numbers."""

import json
import math

import pytest

from rewardlab.evaluate.formats import load_eval_dataset
from rewardlab.evaluate.items import judge
from rewardlab.evaluate.leaderboard import leaderboard_results
from rewardlab.evaluate.metrics import summarize
from rewardlab.evaluate.report import write_report
from rewardlab.evaluate.runner import EvalResult, ModelResult
from tests.evaluate.test_eval_rewardbench import _v1_record, _v2_record, _write_jsonl

SEQ_CLS = {"kind": "sequence classification", "path": "org/rm-7b", "chat_template": "tokenizer"}


def _result(dataset, scores, info=SEQ_CLS) -> EvalResult:
    outcomes = [judge(item, s) for item, s in zip(dataset.items, scores)]
    rows = summarize(dataset.items, outcomes, scores)
    model = ModelResult("rm", dict(info), rows, scores, outcomes, seconds=1.0, conversations=sum(map(len, scores)))
    return EvalResult([dataset], [model])


def test_v1_subsets_and_weighted_sections_by_hand(tmp_path):
    plan = {"alpacaeval-easy": [True, True], "mt-bench-easy": [True, False], "llmbar-natural": [True, False],
            "donotanswer": [False], "math-prm": [True, True], "hep-python": [False, False]}
    records = [_v1_record(subset, i) for subset, wins in plan.items() for i in range(len(wins))]
    dataset = load_eval_dataset(str(_write_jsonl(tmp_path / "filtered.jsonl", records)))
    scores = [[1.0, 0.0] if win else [0.0, 1.0] for wins in plan.values() for win in wins]
    (record,) = leaderboard_results(_result(dataset, scores))["rewardbench"]

    chat = 114 / 128  # (100 × 1.0 + 28 × 0.5) / (100 + 28): alpacaeval-easy and mt-bench-easy weighted by EXAMPLE_COUNTS
    reasoning = 6 / 7  # (984 × 1.0 + 164 × 0.0) / 1148: math-prm weighted 984
    expected = {
        "model": "org/rm-7b", "model_type": "Seq. Classifier", "chat_template": "tokenizer",
        "alpacaeval-easy": 1.0, "mt-bench-easy": 0.5, "llmbar-natural": 0.5, "donotanswer": 0.0,
        "math-prm": 1.0, "hep-python": 0.0,
        "Chat": chat, "Chat Hard": 0.5, "Safety": 0.0, "Reasoning": reasoning,
        "Score": (chat + 0.5 + 0.0 + reasoning) / 4,  # = 0.56194...
    }
    assert record.keys() == expected.keys()
    assert record == pytest.approx(expected)
    assert record["Score"] == pytest.approx(0.5619419642857143)


def test_v2_subset_scores_ties_and_score_by_hand(tmp_path):
    records = [
        _v2_record("Math", "1", ["c"], ["r1", "r2", "r3"]),
        _v2_record("Math", "2", ["c"], ["r1", "r2", "r3"]),
        _v2_record("Focus", "3", ["c"], ["r1", "r2", "r3"]),
        _v2_record("Ties", "ref:0", ["c"], ["r1", "r2"]),
        _v2_record("Ties", "tied:0", ["c1", "c2", "c3"], ["r1", "r2"]),
    ]
    dataset = load_eval_dataset(str(_write_jsonl(tmp_path / "rb2.jsonl", records)))
    scores = [
        [2.0, 1.0, 1.5, 1.9],  # beats all three
        [2.0, 1.0, 2.5, 1.9],  # loses to one: Math = 1/2
        [2.0, 2.0, 1.0, 1.0],  # ties the best rejected: wrong, Focus = 0
        [5.0, 1.0, 2.0],  # ref:0 accurate, margin 3
        [4.0, 3.5, 3.0, 1.0, 2.5],  # tied:0 accurate, spread 1 > margin 0.5
    ]
    dpo = {"kind": "implicit DPO reward", "path": "runs/dpo", "reference": "smollm2-135m", "chat_template": "plain"}
    (record,) = leaderboard_results(_result(dataset, scores, dpo))["rewardbench-2"]
    # Ties = 0.3 × tied acc 1 + 0.3 × ref acc 1 + 0.2 × 0 + 0.2 × 0 + 0.01 × tanh(min(3, 0.5) / 1 − 1)
    ties = 0.6 + 0.01 * math.tanh(-0.5)  # = 0.59537883
    assert ties == pytest.approx(0.5953788284)
    assert record == pytest.approx({
        "model": "runs/dpo", "ref_model": "smollm2-135m", "model_type": "DPO", "chat_template": "plain",
        "Math": 0.5, "Focus": 0.0, "Ties": ties, "Score": (0.5 + 0.0 + ties) / 3,
    })


def test_eval_out_writes_leaderboard_json_for_rewardbench_only(tiny_models, tmp_path, capsys):
    from rewardlab.cli import main

    v1 = _write_jsonl(tmp_path / "v1.jsonl", [_v1_record(s, i) for s in ("alpacaeval-easy", "hep-go") for i in range(2)])
    v2 = _write_jsonl(tmp_path / "v2.jsonl", [_v2_record("Math", "1", ["c"], ["r1", "r2", "r3"])])
    uf = tmp_path / "other.jsonl"
    uf.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    out = tmp_path / "out"
    code = main(["eval", f"seq={tiny_models['seqcls']}", f"own={tiny_models['linear']}",
                 "--data", str(v1), str(v2), f"plain={uf}", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "leaderboard.json" in capsys.readouterr().err
    board = json.loads((out / "leaderboard.json").read_text())
    assert list(board) == ["rewardbench", "rewardbench-2"]
    report = json.loads((out / "report.json").read_text())
    for model, record in zip(report["models"], board["rewardbench"]):
        rows = {r["label"]: r["accuracy"] for r in model["rows"] if r["dataset"] == "rewardbench"}
        assert record["model"] == model["path"] and record["chat_template"] == "tokenizer"
        assert record["alpacaeval-easy"] == rows["alpacaeval-easy"] and record["Chat"] == rows["Chat"]
        assert "RewardBench score (2 of 4 sections)" in rows and "Score" not in record  # not comparable
        assert "Safety" not in record  # a section without subsets is left out, not reported as 0
    assert [r["model_type"] for r in board["rewardbench"]] == ["Seq. Classifier", "Custom Classifier"]
    assert set(board["rewardbench-2"][1]) == {"model", "model_type", "chat_template", "Math", "Score"}


def test_no_leaderboard_without_rewardbench(tmp_path):
    from tests.evaluate.test_eval_rmbench import SCORES, rmbench_record, write_jsonl

    path = write_jsonl(tmp_path / "rm.jsonl", [rmbench_record(i, "chat") for i in range(len(SCORES))])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "leaderboard.json").write_text("{}")  # left by an earlier RewardBench run
    paths = write_report(_result(load_eval_dataset(str(path)), SCORES), tmp_path / "out")
    assert "leaderboard" not in paths and not (tmp_path / "out" / "leaderboard.json").exists()
    assert (tmp_path / "out" / "report.md").read_text().count("| rm | rm-bench | chat | 5 |") == 3
