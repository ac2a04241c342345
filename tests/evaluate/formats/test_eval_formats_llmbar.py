import json
from collections import Counter

import pytest

from rewardlab.data.loaders import DataError
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.formats.llmbar import load_llmbar


def test_llmbar_natural_real_file(shared_data):
    path = shared_data / "llmbar" / "Natural" / "dataset.json"
    pairs = load_llmbar(path)
    assert len(pairs) == 100
    raw = json.loads(path.read_text())
    for pair, record in zip(pairs, raw):
        assert pair.chosen == record[f"output_{record['label']}"]
        assert pair.rejected == record[f"output_{3 - record['label']}"]
        assert pair.prompt == ({"role": "user", "content": record["input"]},)
    assert detect_eval_format(str(path)) == "llmbar"


def test_llmbar_processed_mt_bench_real_file(shared_data):
    path = shared_data / "llmbar" / "Processed" / "MT-Bench" / "dataset.json"
    pairs = load_llmbar(path)
    assert len(pairs) == 200
    assert Counter(p.meta["label"] for p in pairs) == {1: 101, 2: 99}
    assert len({p.prompt[0]["content"] for p in pairs}) == 75
    dataset = load_eval_dataset(f"mt-bench-human=llmbar:{path}")
    assert dataset.name == "mt-bench-human" and len(dataset.items) == 200


def test_bad_label_names_file_and_record(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps([
        {"input": "q", "output_1": "a", "output_2": "b", "label": 2},
        {"input": "q", "output_1": "a", "output_2": "b", "label": 3},
    ]))
    with pytest.raises(DataError, match=rf"{path}\[1\].*'label' must be 1 or 2"):
        load_llmbar(path)
    path.write_text(json.dumps([{"input": "q", "output_2": "b", "label": 1}]))
    with pytest.raises(DataError, match=rf"{path}\[0\].*missing field 'output_1'"):
        load_llmbar(path)
