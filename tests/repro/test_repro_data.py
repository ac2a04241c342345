"""The train / held-out split: counts, disjointness, filtering, margins and reuse."""

import json

import pytest

from rewardlab.data.loaders import DataError, load_pairs
from rewardlab.models.registry import load_tokenizer
from rewardlab.repro.config import ReproConfig
from rewardlab.repro.data import pair_key, prepare_split, resolve_train_data

from repro_helpers import write_pairs


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-random")


def _keys(path):
    return {pair_key(p.prompt, p.chosen, p.rejected) for p in load_pairs(str(path))}


def test_split_is_disjoint_sized_and_drops_duplicates(tmp_path, tokenizer):
    config = ReproConfig(model="tiny-random", train_data="synthetic", train_pairs=300, heldout_pairs=100)
    split = prepare_split(config, tmp_path, tokenizer, echo=lambda s: None)
    train, heldout = _keys(split.train_file), _keys(split.heldout_file)
    assert len(train) == 300 and len(heldout) == 100 and not train & heldout
    source = load_pairs("synthetic")
    distinct = len({pair_key(p.prompt, p.chosen, p.rejected) for p in source})
    assert split.summary["dropped"].get("exact duplicate", 0) == len(source) - distinct > 0
    assert split.summary["usable"] == distinct
    assert split.margin_note() == "n/a: no margins in the data" and not split.has_margins
    assert split.summary["hh_rlhf_test_split"] is False


def test_overlong_pairs_are_dropped_and_counted(tmp_path, tokenizer):
    data = tmp_path / "mixed.jsonl"
    records = [{"prompt": f"question {i}", "chosen": "yes " * (5 if i % 2 else 200), "rejected": f"no {i}"} for i in range(40)]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = ReproConfig(model="tiny-random", train_data=str(data), train_pairs=15, heldout_pairs=5, max_length=64)
    split = prepare_split(config, tmp_path / "out", tokenizer, echo=lambda s: None)
    assert split.summary["dropped"] == {"longer than max_length": 20}
    assert all(len(p.chosen) < 100 for p in load_pairs(str(split.train_file)))


def test_too_few_pairs_is_a_clear_error(tmp_path, tokenizer):
    config = ReproConfig(model="tiny-random", train_data="synthetic:id?n=50", train_pairs=40, heldout_pairs=20)
    with pytest.raises(ValueError, match=r"only \d+ usable pairs.*--train-pairs 40 \+ --heldout-pairs 20 = 60"):
        prepare_split(config, tmp_path, tokenizer, echo=lambda s: None)


def test_margins_are_kept_and_partial_margins_reported(tmp_path, tokenizer, margin_pairs):
    config = ReproConfig(model="tiny-random", train_data=str(margin_pairs), train_pairs=60, heldout_pairs=20)
    split = prepare_split(config, tmp_path / "full", tokenizer, echo=lambda s: None)
    assert split.has_margins and split.margin_note() is None
    assert all(p.margin is not None for p in load_pairs(str(split.train_file)))
    half = write_pairs(tmp_path / "half.jsonl", 120, margins="half")
    config = ReproConfig(model="tiny-random", train_data=str(half), train_pairs=60, heldout_pairs=20)
    split = prepare_split(config, tmp_path / "half", tokenizer, echo=lambda s: None)
    assert not split.has_margins
    assert split.margin_note() == f"n/a: only {split.summary['train_with_margin']} of 60 training pairs have a margin"


def test_existing_split_is_reused_and_protected(tmp_path, tokenizer):
    config = ReproConfig(model="tiny-random", train_data="synthetic", train_pairs=50, heldout_pairs=20)
    first = prepare_split(config, tmp_path, tokenizer, echo=lambda s: None)
    stamp = first.train_file.stat().st_mtime_ns
    messages = []
    again = prepare_split(config, tmp_path, tokenizer, echo=messages.append)
    assert again.summary == first.summary and first.train_file.stat().st_mtime_ns == stamp
    assert "reusing" in messages[0]
    with pytest.raises(ValueError, match="was made with"):
        prepare_split(ReproConfig(model="tiny-random", train_data="synthetic", train_pairs=51, heldout_pairs=20),
                      tmp_path, tokenizer, echo=lambda s: None)
    first.heldout_file.write_text(first.heldout_file.read_text()[:-200])
    with pytest.raises(ValueError, match="heldout.jsonl is missing or was changed"):
        prepare_split(config, tmp_path, tokenizer, echo=lambda s: None)


def test_hh_rlhf_alias_resolves_under_the_data_root(tmp_path, shared_data):
    path = resolve_train_data("hh-rlhf-harmless", shared_data)
    assert path.endswith("anthropic-hh-rlhf/harmless-base-test.jsonl.gz")
    assert resolve_train_data("synthetic", shared_data) == "synthetic"
    with pytest.raises(DataError, match="--data-root"):
        resolve_train_data("hh-rlhf-harmless", tmp_path)
