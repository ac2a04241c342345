import json
from collections import Counter

import pytest

from rewardlab.data.loaders import DataError
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.formats.hhh import load_hhh_bigbench, load_hhh_hf


def test_bigbench_hhh_real_counts_and_multi_turn_split(shared_data):
    pairs = load_hhh_bigbench(shared_data / "bigbench-hhh-alignment")
    assert len(pairs) == 221
    assert Counter(p.meta["subset"] for p in pairs) == {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}
    multi_turn = [p for p in pairs if len(p.prompt) > 1]
    assert len(multi_turn) == 41  # the README: 41 inputs contain earlier turns
    for pair in multi_turn:
        roles = [m["role"] for m in pair.prompt]
        assert roles[0] == "user" and roles[-1] == "user"
        assert all(a != b for a, b in zip(roles, roles[1:]))  # alternating turns
        assert not any("Assistant:" in m["content"] or "Human:" in m["content"] for m in pair.prompt)
    # chosen is the response with target score 1
    task = json.loads((shared_data / "bigbench-hhh-alignment" / "harmless" / "task.json").read_text())
    first = task["examples"][0]
    best = max(first["target_scores"], key=first["target_scores"].get)
    harmless = [p for p in pairs if p.meta["subset"] == "harmless"]
    assert harmless[0].chosen == best and harmless[0].prompt == ({"role": "user", "content": first["input"]},)


def test_bigbench_folder_is_detected(shared_data):
    assert detect_eval_format(str(shared_data / "bigbench-hhh-alignment")) == "hhh-bigbench"
    dataset = load_eval_dataset(f"hhh-bigbench:{shared_data / 'bigbench-hhh-alignment' / 'honest' / 'task.json'}")
    assert dataset.name == "hhh" and len(dataset.items) == 61 and {i.subset for i in dataset.items} == {"honest"}


def _hf_records():
    # Layout of HuggingFaceH4/hhh_alignment (dataset card): input + targets{choices, labels}.
    return [
        {"input": "How do I bake bread?", "targets": {"choices": ["Mix flour, water, yeast...", "No."], "labels": [1, 0]}},
        {
            "input": "Tell me a joke.\n\nAssistant:  Why did the chicken cross the road?\n\nHuman:  Why?",
            "targets": {"choices": ["I don't know.", "To get to the other side!"], "labels": [0, 1]},
        },
    ]


def test_hf_layout_fixture(tmp_path):
    folder = tmp_path / "hhh_alignment"
    (folder / "harmless").mkdir(parents=True)
    (folder / "helpful").mkdir()
    (folder / "harmless" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in _hf_records()[:1]) + "\n")
    (folder / "helpful" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in _hf_records()[1:]) + "\n")
    pairs = load_hhh_hf(folder)
    assert [p.meta["subset"] for p in pairs] == ["harmless", "helpful"]
    assert pairs[1].chosen == "To get to the other side!" and pairs[1].rejected == "I don't know."
    assert pairs[1].prompt == (
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Why?"},
    )
    assert detect_eval_format(str(folder)) == "hhh-hf"
    assert len(load_eval_dataset(str(folder)).items) == 2


def test_bad_record_names_file_and_record(tmp_path):
    task = tmp_path / "harmless" / "task.json"
    task.parent.mkdir()
    examples = [
        {"input": "fine", "target_scores": {"a": 1, "b": 0}},
        {"input": "broken", "target_scores": {"a": 1, "b": 1}},
    ]
    task.write_text(json.dumps({"name": "x", "examples": examples}))
    with pytest.raises(DataError) as error:
        load_hhh_bigbench(task)
    assert f"{task}[examples][1]" in str(error.value)
    assert "different scores" in str(error.value)

    missing_field = tmp_path / "hhh.jsonl"
    missing_field.write_text(json.dumps({"input": "x", "targets": {"choices": ["a", "b"]}}) + "\n")
    with pytest.raises(DataError, match=rf"{missing_field}:1.*'labels'"):
        load_hhh_hf(missing_field)
