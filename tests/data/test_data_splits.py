"""Choosing a split from the data spec: ``PATH?split=test`` and ``hub-name?split=test``."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from rewardlab.data.loaders import DataError, LoadReport, load_pairs, parse_spec


def rows(tag: str, n: int) -> list[dict]:
    return [{"prompt": f"{tag} question {i}?", "chosen": "good", "rejected": "bad"} for i in range(n)]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def prompts(pairs) -> list[str]:
    return [p.prompt[-1]["content"] for p in pairs]


@pytest.fixture(scope="module")
def dataset_dict(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("splits") / "dict"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows("train", 3)), "test": datasets.Dataset.from_list(rows("test", 2))}
    ).save_to_disk(str(folder))
    return folder


def test_saved_dataset_dict_split_from_the_spec(dataset_dict):
    report = LoadReport()
    test = load_pairs(f"{dataset_dict}?split=test", report=report)
    assert prompts(test) == ["test question 0?", "test question 1?"]
    assert test[1].source == f"{dataset_dict}[test][1]"
    assert report.kept == 2 and report.source == f"{dataset_dict}?split=test"
    assert prompts(load_pairs(str(dataset_dict))) == [f"train question {i}?" for i in range(3)]
    assert prompts(load_pairs(f"{dataset_dict}?split=test", split="test")) == prompts(test)


def test_unknown_or_conflicting_split_names_the_available_ones(dataset_dict):
    with pytest.raises(DataError, match=r"has no split 'validation'; available: train, test; choose one with \?split="):
        load_pairs(f"{dataset_dict}?split=validation")
    with pytest.raises(DataError, match="spec names split 'test' but split='train' was passed"):
        load_pairs(f"{dataset_dict}?split=test", split="train")
    with pytest.raises(DataError, match="split= needs a split name"):
        load_pairs(f"{dataset_dict}?split=")
    with pytest.raises(DataError, match="local folders take only the option split=, not data_dir"):
        load_pairs(f"{dataset_dict}?split=test&data_dir=x")


def test_dataset_dict_without_train_split_is_refused_with_its_splits(tmp_path):
    several = tmp_path / "several"
    datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(rows("test", 1)), "validation": datasets.Dataset.from_list(rows("val", 1))}
    ).save_to_disk(str(several))
    with pytest.raises(DataError, match=rf"^{several}: has no 'train' split \(splits: test, validation\); choose one"):
        load_pairs(str(several))
    assert prompts(load_pairs(f"{several}?split=validation")) == ["val question 0?"]
    only_test = tmp_path / "only-test"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows("test", 1))}).save_to_disk(str(only_test))
    with pytest.raises(DataError, match=r"has no 'train' split \(splits: test\)"):
        load_pairs(str(only_test))


def test_folder_of_data_files_split_from_the_spec(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows("train", 2))
    write_jsonl(folder / "test.jsonl", rows("test", 3))
    test = load_pairs(f"{folder}?split=test")
    assert prompts(test) == [f"test question {i}?" for i in range(3)]
    assert test[2].source == f"{folder / 'test.jsonl'}:3"
    assert prompts(load_pairs(str(folder))) == ["train question 0?", "train question 1?"]
    with pytest.raises(DataError, match="has no split 'dev'; available: train, test"):
        load_pairs(f"{folder}?split=dev")
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    write_jsonl(only_test / "test.jsonl", rows("test", 1))
    with pytest.raises(DataError, match=r"has no 'train' split \(splits: test\)"):
        load_pairs(str(only_test))


def test_load_dataset_path_takes_the_split(tmp_path):
    # CSV folders are read by datasets.load_dataset, the call a hub name goes through.
    folder = tmp_path / "csv"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.csv").write_text(f"prompt,chosen,rejected\n{split} question?,good,bad\n", encoding="utf-8")
    (pair,) = load_pairs(f"{folder}?split=test")
    assert pair.prompt[-1]["content"] == "test question?" and pair.source == f"{folder}[test][0]"
    with pytest.raises(DataError, match="has no split 'dev'; available: train, test"):
        load_pairs(f"{folder}?split=dev")


def test_hub_spec_split_option():
    assert parse_spec("org/name?split=test&data_dir=harmless-base") == (
        "org/name", {"split": "test", "data_dir": "harmless-base"}
    )
    # Options are checked before anything is fetched.
    with pytest.raises(DataError, match="unknown option\\(s\\) colour; allowed: config, data_dir, revision"):
        load_pairs("org/name?split=test&colour=red")


def test_split_option_on_files_and_synthetic(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", rows("q", 1))
    with pytest.raises(DataError, match="a file has no splits, but split='test' was passed"):
        load_pairs(f"{path}?split=test")
    assert {p.meta["split"] for p in load_pairs("synthetic?n=4&split=ood")} == {"ood"}
