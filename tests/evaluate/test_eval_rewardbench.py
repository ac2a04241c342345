import json
import math

import pytest

from rewardlab.data.loaders import DataError
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.items import judge
from rewardlab.evaluate.metrics import COMPOSITE_METHOD, summarize


def _write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _v1_record(subset: str, index: int) -> dict:
    # allenai/reward-bench "filtered" columns
    return {"prompt": f"{subset} question {index}", "chosen": "good answer", "chosen_model": "m1",
            "rejected": "bad answer", "rejected_model": "m2", "subset": subset, "id": index}


def test_rewardbench_v1_section_arithmetic_on_a_hand_made_example(tmp_path):
    plan = {  # subset -> outcomes (True = chosen scored higher)
        "alpacaeval-easy": [True, True],
        "mt-bench-easy": [True, False],
        "llmbar-natural": [True, False],
        "donotanswer": [False],
        "math-prm": [True, True],
        "hep-python": [False, False],
    }
    records = [_v1_record(subset, i) for subset, results in plan.items() for i in range(len(results))]
    path = _write_jsonl(tmp_path / "filtered.jsonl", records)
    assert detect_eval_format(str(path)) == "rewardbench"
    dataset = load_eval_dataset(str(path))
    assert dataset.name == "rewardbench" and len(dataset.items) == 11
    scores = [[1.0, 0.0] if win else [0.0, 1.0] for results in plan.values() for win in results]
    outcomes = [judge(item, s) for item, s in zip(dataset.items, scores)]
    rows = {(r.level, r.label): r for r in summarize(dataset.items, outcomes, scores)}

    chat = (100 * 1.0 + 28 * 0.5) / (100 + 28)
    reasoning = (984 * 1.0 + 164 * 0.0) / (984 + 164)  # math-prm weighted 984, not its 447 pairs
    assert rows[("section", "Chat")].accuracy == pytest.approx(chat)
    assert rows[("section", "Chat Hard")].accuracy == pytest.approx(0.5)
    assert rows[("section", "Safety")].accuracy == pytest.approx(0.0)
    assert rows[("section", "Reasoning")].accuracy == pytest.approx(reasoning)
    overall = rows[("dataset", "RewardBench score")]
    assert overall.accuracy == pytest.approx((chat + 0.5 + 0.0 + reasoning) / 4)
    assert overall.low <= overall.accuracy <= overall.high
    assert rows[("subset", "mt-bench-easy")].correct == 1 and rows[("subset", "mt-bench-easy")].n == 2


def test_rewardbench_v1_with_some_sections_says_so(tmp_path):
    path = _write_jsonl(tmp_path / "rb.jsonl", [_v1_record("llmbar-natural", 0), _v1_record("llmbar-natural", 1)])
    dataset = load_eval_dataset(str(path))
    scores = [[1.0, 0.0], [1.0, 0.0]]
    rows = summarize(dataset.items, [judge(i, s) for i, s in zip(dataset.items, scores)], scores)
    assert rows[-1].label == "RewardBench score (1 of 4 sections)" and rows[-1].accuracy == 1.0


def _v2_record(subset: str, ident: str, chosen: list[str], rejected: list[str]) -> dict:
    # allenai/reward-bench-2 columns
    return {"id": ident, "prompt": f"prompt {ident}", "chosen": chosen, "rejected": rejected,
            "num_correct": len(chosen), "num_rejected": len(rejected),
            "total_completions": len(chosen) + len(rejected), "models": [], "subset": subset}


def test_rewardbench2_best_of_four_and_ties_score(tmp_path):
    records = [
        _v2_record("Math", "1", ["c"], ["r1", "r2", "r3"]),
        _v2_record("Math", "2", ["c"], ["r1", "r2", "r3"]),
        _v2_record("Focus", "3", ["c"], ["r1", "r2", "r3"]),
        _v2_record("Ties", "ref:0", ["c"], ["r1", "r2"]),
        _v2_record("Ties", "tied:0", ["c1", "c2", "c3"], ["r1", "r2"]),
        _v2_record("Ties", "ref:1", ["c"], ["r1"]),
        _v2_record("Ties", "tied:1", ["c1", "c2"], ["r1"]),
    ]
    path = _write_jsonl(tmp_path / "rb2.jsonl", records)
    assert detect_eval_format(str(path)) == "rewardbench-2"
    dataset = load_eval_dataset(str(path))
    assert [len(i.candidates()) for i in dataset.items] == [4, 4, 4, 3, 5, 2, 3]
    scores = [
        [2.0, 1.0, 1.5, 1.9],  # beats all three
        [2.0, 1.0, 2.5, 1.9],  # one rejected is higher
        [2.0, 2.0, 1.0, 1.0],  # tie with the best rejected: wrong
        [5.0, 1.0, 2.0],  # ref:0 margin 3
        [4.0, 3.5, 3.0, 1.0, 2.5],  # tied:0 accurate, spread 1, margin 0.5
        [2.0, 0.0],  # ref:1 margin 2
        [3.0, 2.9, 1.0],  # tied:1 spread 0.1, margin 1.9
    ]
    outcomes = [judge(i, s) for i, s in zip(dataset.items, scores)]
    rows = {(r.level, r.label): r for r in summarize(dataset.items, outcomes, scores)}
    assert rows[("subset", "Math")].accuracy == 0.5
    assert rows[("subset", "Focus")].accuracy == 0.0 and rows[("subset", "Focus")].ties == 1
    margin_term = (math.tanh(0.5 / 1.0 - 1) + math.tanh(1.9 / 0.1 - 1)) / 2
    ties = 0.3 * 1.0 + 0.3 * 1.0 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * margin_term
    assert rows[("subset", "Ties")].accuracy == pytest.approx(ties)
    assert rows[("subset", "Ties")].method == COMPOSITE_METHOD
    assert rows[("dataset", "RewardBench 2 score")].accuracy == pytest.approx((0.5 + 0.0 + ties) / 3)


def test_rewardbench2_ties_record_without_ref_or_tied_id_is_an_error(tmp_path):
    path = _write_jsonl(tmp_path / "rb2.jsonl", [_v2_record("Ties", "17", ["a", "b"], ["c"])])
    with pytest.raises(DataError, match=rf"{path}:1.*ref:N or tied:N"):
        load_eval_dataset(f"rewardbench-2:{path}")


def _rows_without_dataset_label(report: dict) -> list[tuple]:
    return [(r["level"], r["label"], r["n"], r["correct"], r["ties"], r["accuracy"], r["low"], r["high"])
            for r in report["models"][0]["rows"]]


@pytest.mark.parametrize("fmt", ["rewardbench", "rewardbench-2"])
def test_benchmark_scores_follow_the_format_not_the_dataset_label(fmt, tiny_models, tmp_path, capsys):
    from rewardlab.cli import main

    if fmt == "rewardbench":
        records = [_v1_record(subset, i) for subset in ("alpacaeval-easy", "llmbar-natural", "donotanswer", "hep-go")
                   for i in range(2)]
        headline = "RewardBench score"
    else:
        records = [_v2_record("Math", "1", ["c"], ["r1", "r2", "r3"]), _v2_record("Focus", "2", ["c"], ["r1", "r2"]),
                   _v2_record("Ties", "ref:0", ["c"], ["r1"]), _v2_record("Ties", "tied:0", ["c1", "c2"], ["r1"])]
        headline = "RewardBench 2 score"
    path = _write_jsonl(tmp_path / "data.jsonl", records)
    reports = {}
    for label in ("", "rb=", "my-benchmark="):
        code = main(["eval", str(tiny_models["linear"]), "--data", f"{label}{fmt}:{path}", "--json", "--no-progress"])
        assert code == 0
        reports[label] = json.loads(capsys.readouterr().out)
    default = _rows_without_dataset_label(reports[""])
    assert any(level == "dataset" and name == headline for level, name, *_ in default)
    if fmt == "rewardbench":
        assert {name for level, name, *_ in default if level == "section"} == {"Chat", "Chat Hard", "Safety", "Reasoning"}
    for label in ("rb=", "my-benchmark="):
        assert _rows_without_dataset_label(reports[label]) == default
        assert {r["dataset"] for r in reports[label]["models"][0]["rows"]} == {label[:-1]}
