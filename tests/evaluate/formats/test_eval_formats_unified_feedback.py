import json

import pytest

from rewardlab.data.loaders import DataError
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.items import judge
from rewardlab.evaluate.metrics import summarize


def _record(source: str, rating_a: float, rating_b: float, index: int) -> dict:
    # Column layout of llm-blender/Unified-Feedback ("all" config)
    question = {"role": "user", "content": f"Question {index} from {source}?"}
    return {
        "id": f"{source}-{index}",
        "conv_A": [question, {"role": "assistant", "content": f"answer A{index}"}],
        "conv_B": [question, {"role": "assistant", "content": f"answer B{index}"}],
        "conv_A_rating": rating_a,
        "conv_B_rating": rating_b,
        "num_turns": 1,
        "source": source,
    }


def test_equal_ratings_are_dropped_and_sources_break_down(tmp_path):
    records = [
        _record("hh-rlhf", 1.0, 0.0, 0),
        _record("hh-rlhf", 0.0, 1.0, 1),
        _record("hh-rlhf", 1.0, 1.0, 2),
        _record("ultrafeedback", 7.5, 3.0, 3),
        _record("ultrafeedback", 4.0, 4.0, 4),
    ]
    path = tmp_path / "uf_val.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert detect_eval_format(str(path)) == "unified-feedback"
    dataset = load_eval_dataset(str(path))
    assert len(dataset.items) == 3
    assert dict(dataset.report.skipped) == {"Unified-Feedback equal ratings": 2}
    assert [i.chosen for i in dataset.items] == ["answer A0", "answer B1", "answer A3"]
    assert [i.subset for i in dataset.items] == ["hh-rlhf", "hh-rlhf", "ultrafeedback"]
    scores = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    rows = {(r.level, r.label): r for r in summarize(dataset.items, [judge(i, s) for i, s in zip(dataset.items, scores)], scores)}
    assert rows[("subset", "hh-rlhf")].n == 2 and rows[("subset", "hh-rlhf")].correct == 1
    assert rows[("subset", "ultrafeedback")].accuracy == 1.0
    assert rows[("dataset", "all")].correct == 2


def test_bad_rating_names_file_and_line(tmp_path):
    record = _record("sharegpt", 1.0, 0.0, 0)
    record["conv_B_rating"] = "high"
    path = tmp_path / "uf.jsonl"
    path.write_text(json.dumps(_record("sharegpt", 1.0, 0.0, 1)) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2.*'conv_B_rating' must be a number"):
        load_eval_dataset(f"unified-feedback:{path}")
