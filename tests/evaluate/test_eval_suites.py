from collections import Counter

import pytest

from rewardlab.data.loaders import DataError
from rewardlab.evaluate.metrics import summarize
from rewardlab.evaluate.items import judge
from rewardlab.evaluate.suites import SUITES, default_data_root, load_suite


def test_offline_suite_counts_match_the_data_readme(shared_data):
    datasets = {d.name: d for d in load_suite("offline", data_root=shared_data)}
    assert list(datasets) == [s.name for s in SUITES["offline"]]
    assert Counter(i.subset for i in datasets["hhh"].items) == {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}
    assert len(datasets["llmbar-natural"].items) == 100
    assert len(datasets["mt-bench-human"].items) == 200
    hh = datasets["hh-rlhf-harmless-test"]
    assert len(hh.items) + hh.report.total_skipped == 2312


def test_default_data_root_finds_the_shared_folder(shared_data, monkeypatch):
    monkeypatch.delenv("REWARDLAB_DATA_ROOT", raising=False)
    assert default_data_root().resolve() == shared_data.resolve()
    monkeypatch.setenv("REWARDLAB_DATA_ROOT", "/somewhere/else")
    assert str(default_data_root()) == "/somewhere/else"


def test_missing_file_says_which_and_how_to_set_the_root(tmp_path):
    (tmp_path / "llmbar" / "Natural").mkdir(parents=True)
    (tmp_path / "llmbar" / "Natural" / "dataset.json").write_text("[]")
    with pytest.raises(DataError) as error:
        load_suite("offline", data_root=tmp_path)
    message = str(error.value)
    assert "bigbench-hhh-alignment (hhh)" in message and "anthropic-hh-rlhf/harmless-base-test.jsonl.gz" in message
    assert "llmbar/Natural" not in message.split("under the data root")[0]
    assert "--data-root" in message and "REWARDLAB_DATA_ROOT" in message


def test_unknown_suite():
    with pytest.raises(ValueError, match="offline"):
        load_suite("nope")


def test_synthetic_ood_suite_breaks_down_by_family_and_condition():
    (dataset,) = load_suite("synthetic-ood", limit=60)
    assert dataset.name == "synthetic-ood" and len(dataset.items) == 60
    families = {i.meta["groups"]["family"] for i in dataset.items}
    conditions = {i.meta["groups"]["condition"] for i in dataset.items}
    assert conditions <= {"aligned", "reversed"} and len(families) >= 2
    assert all(i.subset == f"{i.meta['groups']['family']}/{i.meta['groups']['condition']}" for i in dataset.items)
    scores = [[1.0, 0.0]] * len(dataset.items)
    rows = summarize(dataset.items, [judge(i, s) for i, s in zip(dataset.items, scores)], scores)
    group_labels = {r.label for r in rows if r.level == "group"}
    assert {f"family={f}" for f in families} <= group_labels
    assert {f"condition={c}" for c in conditions} <= group_labels
