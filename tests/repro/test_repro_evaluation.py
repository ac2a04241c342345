"""Which datasets a repro run evaluates on, and the per-model outcome cache."""

import json
import os

import pytest
import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.data.synthetic import generate
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.registry import load_tokenizer
from rewardlab.models.reward_model import RewardModel
from rewardlab.repro.config import ReproConfig
from rewardlab.repro.data import prepare_split
from rewardlab.repro.evaluation import ID_DATASET, evaluate_model, plan_evaluation
from rewardlab.scoring import RewardScorer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-random")


def test_training_source_is_not_counted_as_out_of_distribution(tmp_path, tokenizer, shared_data):
    config = ReproConfig(model="tiny-random", train_data="hh-rlhf-harmless", train_pairs=40, heldout_pairs=10,
                         data_root=str(shared_data))
    split = prepare_split(config, tmp_path, tokenizer, echo=lambda s: None)
    assert split.summary["hh_rlhf_test_split"] is True
    plan = plan_evaluation(split, ("offline",), data_root=str(shared_data), limit=5)
    assert [d.name for d in plan.out_of_distribution] == ["hhh", "llmbar-natural", "mt-bench-human"]
    assert all(len(d.items) == 5 for d in plan.out_of_distribution)
    assert plan.full_sizes == {"hhh": 221, "llmbar-natural": 100, "mt-bench-human": 200}
    assert list(plan.excluded) == ["hh-rlhf-harmless-test"] and "training source" in plan.excluded["hh-rlhf-harmless-test"]
    assert plan.in_distribution.name == ID_DATASET and len(plan.in_distribution.items) == 10


def test_suite_sharing_pairs_with_the_training_data_is_left_out(tmp_path, tokenizer):
    shared = generate(split="ood", n=1000, seed=0)[:60]
    data = tmp_path / "ood-copy.jsonl"
    data.write_text("".join(json.dumps({
        "prompt": [dict(m) for m in p.prompt],
        "chosen": [{"role": "assistant", "content": p.chosen}],
        "rejected": [{"role": "assistant", "content": p.rejected}],
    }) + "\n" for p in shared))
    config = ReproConfig(model="tiny-random", train_data=str(data), train_pairs=40, heldout_pairs=20)
    split = prepare_split(config, tmp_path / "out", tokenizer, echo=lambda s: None)
    plan = plan_evaluation(split, ("synthetic-ood",), data_root=None, limit=None)
    assert plan.out_of_distribution == []
    assert plan.excluded["synthetic-ood"].startswith("60 of its 1000 pairs are training or held-out pairs")


@pytest.fixture
def saved_model(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, tok = RewardModel.from_base("tiny-random", head="linear")
    save_reward_model(model, tok, tmp_path / "model", {"max_length": 512})
    return tmp_path / "model"


def test_outcomes_match_the_scoring_path_and_are_cached(tmp_path, tokenizer, saved_model):
    config = ReproConfig(model="tiny-random", train_data="synthetic", train_pairs=20, heldout_pairs=12)
    split = prepare_split(config, tmp_path / "run", tokenizer, echo=lambda s: None)
    plan = plan_evaluation(split, ("synthetic-ood",), data_root=None, limit=10)
    first = evaluate_model("m", saved_model, plan, tmp_path / "run", progress=False)
    assert not first.reused and first.conversations == 2 * (12 + 10)

    scorer = RewardScorer.from_pretrained(saved_model, device="cpu")
    heldout = load_pairs(str(split.heldout_file))
    chosen, rejected = scorer.score_pairs(heldout)
    expected = ["correct" if c > r else "tie" if c == r else "wrong" for c, r in zip(chosen, rejected)]
    assert first.outcomes[ID_DATASET] == expected
    assert len(first.outcomes["synthetic-ood"]) == 10

    second = evaluate_model("m", saved_model, plan, tmp_path / "run", progress=False)
    assert second.reused and second.seconds == 0 and second.outcomes == first.outcomes

    weights = saved_model / "reward_head.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))  # a retrained model has new files
    third = evaluate_model("m", saved_model, plan, tmp_path / "run", progress=False)
    assert not third.reused and third.outcomes == first.outcomes


def test_eval_limit_takes_a_seeded_random_sample_across_categories(tmp_path, tokenizer, shared_data):
    config = ReproConfig(model="tiny-random", train_data="synthetic", train_pairs=20, heldout_pairs=10)
    split = prepare_split(config, tmp_path, tokenizer, echo=lambda s: None)
    first = plan_evaluation(split, ("offline",), data_root=str(shared_data), limit=40, seed=0)
    again = plan_evaluation(split, ("offline",), data_root=str(shared_data), limit=40, seed=0)
    other = plan_evaluation(split, ("offline",), data_root=str(shared_data), limit=40, seed=1)
    hhh = [d for d in first.out_of_distribution if d.name == "hhh"][0]
    assert len(hhh.items) == 40 and {i.subset for i in hhh.items} == {"harmless", "helpful", "honest", "other"}
    assert [i.chosen for i in hhh.items] == [i.chosen for i in again.out_of_distribution[0].items]
    assert [i.chosen for i in hhh.items] != [i.chosen for i in other.out_of_distribution[0].items]
    assert first.excluded == {} and first.full_sizes["hh-rlhf-harmless-test"] == 2303


def test_another_copy_of_hh_rlhf_makes_its_suite_dataset_in_distribution(tmp_path, tokenizer, shared_data):
    from repro_helpers import write_pairs

    data = write_pairs(tmp_path / "hh-rlhf-train-copy.jsonl", 60, margins=False)
    config = ReproConfig(model="tiny-random", train_data=str(data), train_pairs=30, heldout_pairs=10)
    split = prepare_split(config, tmp_path / "out", tokenizer, echo=lambda s: None)
    plan = plan_evaluation(split, ("offline",), data_root=str(shared_data), limit=5)
    assert plan.excluded == {"hh-rlhf-harmless-test": "the training data is also hh-rlhf, so it is not out of distribution"}
