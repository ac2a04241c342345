import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardlab.data.loaders import DataError, LoadReport
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.formats.mtbench import load_mtbench_judgments
from rewardlab.evaluate.items import Outcome, judge


def _conversation(model: str) -> list[dict]:
    return [
        {"role": "user", "content": "Compose a travel blog post about Hawaii."},
        {"role": "assistant", "content": f"{model}: Aloha! Hawaii is..."},
        {"role": "user", "content": "Rewrite it starting every sentence with A."},
        {"role": "assistant", "content": f"{model}: A trip to Hawaii..."},
    ]


def _judgment(winner: str, turn: int, judge_name: str = "author_2") -> dict:
    # Column layout of lmsys/mt_bench_human_judgments.
    return {
        "question_id": 81,
        "model_a": "gpt-4",
        "model_b": "alpaca-13b",
        "winner": winner,
        "judge": judge_name,
        "conversation_a": _conversation("gpt-4"),
        "conversation_b": _conversation("alpaca-13b"),
        "turn": turn,
    }


@pytest.fixture()
def judgments(tmp_path):
    folder = tmp_path / "mt_bench_human_judgments" / "data"
    folder.mkdir(parents=True)
    human = [_judgment("model_a", 1), _judgment("model_b", 2), _judgment("tie", 1), _judgment("tie (bothbad)", 2)]
    pq.write_table(pa.Table.from_pylist(human), folder / "human-00000-of-00001.parquet")
    gpt4 = [_judgment("model_b", 1, "gpt4_pair"), _judgment("tie", 2, "gpt4_pair")]
    (folder / "gpt4_pair-00000-of-00001.jsonl").write_text("\n".join(json.dumps(r) for r in gpt4) + "\n")
    return folder


def test_ties_are_dropped_and_counted_not_turned_into_wins(judgments):
    report = LoadReport()
    pairs = load_mtbench_judgments(judgments, report=report)
    assert len(pairs) == 3
    assert dict(report.skipped) == {"MT-Bench tie (tie)": 2, "MT-Bench tie (tie (bothbad))": 1}
    assert [p.meta["subset"] for p in pairs] == ["gpt4_pair", "human", "human"]
    assert all(p.chosen != p.rejected for p in pairs)


def test_turn_one_and_turn_two_score_the_judged_answer(judgments):
    pairs = load_mtbench_judgments(judgments, splits=("human",))
    turn1, turn2 = pairs
    assert turn1.meta["turn"] == 1 and turn1.prompt == (_conversation("gpt-4")[0],)
    assert turn1.chosen == "gpt-4: Aloha! Hawaii is..." and turn1.rejected == "alpaca-13b: Aloha! Hawaii is..."
    # turn 2, model_b won: each answer follows its own model's first answer
    assert turn2.chosen == "alpaca-13b: A trip to Hawaii..."
    assert turn2.prompt == tuple(_conversation("alpaca-13b")[:3])
    assert turn2.meta["rejected_prompt"] == tuple(_conversation("gpt-4")[:3])
    assert len(load_mtbench_judgments(judgments, turns=(1,))) == 2


def test_eval_dataset_gives_per_side_histories(judgments):
    assert detect_eval_format(str(judgments)) == "mt-bench"
    dataset = load_eval_dataset(str(judgments))
    assert dataset.name == "mt-bench" and len(dataset.items) == 3
    assert dict(dataset.report.skipped) == {"MT-Bench tie (tie)": 2, "MT-Bench tie (tie (bothbad))": 1}
    turn2 = next(i for i in dataset.items if i.meta["turn"] == 2)
    (chosen_prompt, _), (rejected_prompt, _) = turn2.candidates()
    assert chosen_prompt != rejected_prompt and chosen_prompt[2] == rejected_prompt[2]
    assert judge(turn2, [1.0, 0.0]) is Outcome.CORRECT


def test_unknown_winner_names_file_and_line(tmp_path):
    path = tmp_path / "human.jsonl"
    path.write_text(json.dumps(_judgment("model_a", 1)) + "\n" + json.dumps(_judgment("model_c", 1)) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2.*'winner'"):
        load_mtbench_judgments(path)
    broken = _judgment("model_a", 2)
    broken["conversation_b"] = broken["conversation_b"][:2]
    path.write_text(json.dumps(broken) + "\n")
    with pytest.raises(DataError, match=rf"{path}:1.*conversation_b"):
        load_mtbench_judgments(path)
