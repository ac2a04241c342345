"""Benchmarks by hub name: the names pick their format and split, and a local folder laid out like the hub
repository goes through the same `datasets.load_dataset` call (no network)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardlab.data.loaders import DataError
from rewardlab.evaluate.formats import detect_eval_format, load_eval_dataset
from rewardlab.evaluate.suites import SUITES
from tests.evaluate.test_eval_rmbench import rmbench_record

# The README front matter of the hub repository allenai/reward-bench: two splits, parquet files under data/.
REWARDBENCH_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: filtered
    path: data/filtered-*
---
"""


def _v1_row(subset: str, index: int) -> dict:
    return {"prompt": f"{subset} question {index}", "chosen": "good", "chosen_model": "m1", "rejected": "bad",
            "rejected_model": "m2", "subset": subset, "id": index}


def _hub_folder(root, card: str, splits: dict[str, list[dict]]):
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text(card)
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


@pytest.mark.parametrize("name, fmt, hub", [
    ("allenai/reward-bench", "rewardbench", "allenai/reward-bench"),
    ("allenai/reward-bench-2", "rewardbench-2", "allenai/reward-bench-2"),
    ("THU-KEG/RM-Bench", "rm-bench", "THU-KEG/RM-Bench"),
    ("thu-keg/rm-bench?split=train", "rm-bench", "THU-KEG/RM-Bench"),
])
def test_hub_names_pick_their_format_and_suites_use_them(name, fmt, hub):
    assert detect_eval_format(name) == fmt
    assert [(s.format, s.path, s.needs_files) for s in SUITES[fmt]] == [(fmt, hub, False)]


def test_rewardbench_folder_like_the_hub_reads_the_filtered_split(tmp_path):
    folder = _hub_folder(tmp_path / "reward-bench", REWARDBENCH_CARD, {
        "filtered": [_v1_row("hep-go", 0), _v1_row("llmbar-natural", 1), _v1_row("llmbar-natural", 2)],
        "train": [_v1_row("unfiltered", 3)],
    })
    assert detect_eval_format(str(folder)) == "rewardbench"
    dataset = load_eval_dataset(str(folder))
    assert dataset.name == "rewardbench" and [i.subset for i in dataset.items] == ["hep-go", "llmbar-natural", "llmbar-natural"]
    assert dataset.items[0].meta["source"] == f"{folder}[filtered][0]"
    train = load_eval_dataset(f"rewardbench:{folder}?split=train")
    assert [i.subset for i in train.items] == ["unfiltered"]
    with pytest.raises(DataError, match=r"has no split 'validation'; available: .*filtered"):
        load_eval_dataset(f"rewardbench:{folder}?split=validation")


def test_rewardbench2_folder_reads_the_test_split_with_list_columns(tmp_path):
    rows = [
        {"id": "1", "prompt": "p1", "chosen": ["c"], "rejected": ["r1", "r2", "r3"], "num_correct": 1, "subset": "Math"},
        {"id": "ref:0", "prompt": "p2", "chosen": ["c"], "rejected": ["r1"], "num_correct": 1, "subset": "Ties"},
        {"id": "tied:0", "prompt": "p2", "chosen": ["c1", "c2"], "rejected": ["r1"], "num_correct": 2, "subset": "Ties"},
    ]
    folder = _hub_folder(tmp_path / "reward-bench-2", "", {"test": rows})
    dataset = load_eval_dataset(f"rewardbench-2:{folder}")
    assert dataset.format == "rewardbench-2" and [len(i.candidates()) for i in dataset.items] == [4, 2, 3]
    assert dataset.items[2].meta["ties_kind"] == "tied" and dataset.items[2].also_correct == ("c2",)


def test_rmbench_folder_like_the_hub_reads_its_json_file(tmp_path):
    folder = tmp_path / "RM-Bench"
    folder.mkdir()
    (folder / "total_dataset.json").write_text(json.dumps([rmbench_record(0, "chat"), rmbench_record(1, "safety-response")]))
    dataset = load_eval_dataset(f"rm-bench:{folder}")
    assert dataset.name == "rm-bench" and [i.meta["domain"] for i in dataset.items] == ["chat", "safety"]
    assert dataset.items[1].meta["source"] == f"{folder}[train][1]"
    assert dataset.items[1].rejected[2] == "wrong 1 **long**"


def test_a_file_refuses_a_split(tmp_path):
    path = tmp_path / "rm.json"
    path.write_text(json.dumps([rmbench_record(0, "chat")]))
    with pytest.raises(DataError, match="a file has no splits"):
        load_eval_dataset(f"rm-bench:{path}?split=test")
