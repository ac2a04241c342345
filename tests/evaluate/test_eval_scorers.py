import json
import math

import pytest
from transformers import AutoModelForSequenceClassification

from rewardlab.evaluate.formats import load_eval_dataset
from rewardlab.evaluate.runner import evaluate_scorer
from rewardlab.evaluate.scorers import RewardModelScorer, SeqClsScorer, length_sorted_batches, load_scorer, pad_right

PROMPTS = [[{"role": "user", "content": "Short?"}], [{"role": "user", "content": "A much longer question " * 6}],
           [{"role": "user", "content": "Medium length question here?"}]]
RESPONSES = ["Yes.", "A fairly long answer " * 5, "Medium answer."]


def test_length_sorted_batches_and_right_padding():
    batches = length_sorted_batches([3, 9, 1, 7, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]
    ids, mask = pad_right([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_scores_do_not_depend_on_batching(tiny_models):
    for path in (tiny_models["linear"], tiny_models["seqcls"]):
        one = load_scorer(str(path), batch_size=1).score(PROMPTS, RESPONSES)
        three = load_scorer(str(path), batch_size=3).score(PROMPTS, RESPONSES)
        assert one == pytest.approx(three, abs=1e-5)
    assert isinstance(load_scorer(str(tiny_models["linear"])), RewardModelScorer)
    assert isinstance(load_scorer(str(tiny_models["seqcls"])), SeqClsScorer)


def test_too_long_items_are_counted_as_unscored(tiny_models, tmp_path):
    from rewardlab.models.persistence import save_reward_model
    from rewardlab.models.reward_model import RewardModel

    model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
    save_reward_model(model, tokenizer, tmp_path / "short", {"max_length": 40})
    data = tmp_path / "d.json"
    data.write_text(json.dumps([
        {"input": "Hi?", "output_1": "Hello.", "output_2": "Go away.", "label": 1},
        {"input": "Hi?", "output_1": "word " * 200, "output_2": "Go away.", "label": 1},
    ]))
    scorer = load_scorer(str(tmp_path / "short"))
    result = evaluate_scorer(scorer, [load_eval_dataset(str(data))], progress=False)
    assert result.unscored == {"d": 1}
    assert result.items_scored == 1 and result.outcomes[1] is None
    assert math.isnan(scorer.score([[{"role": "user", "content": "Hi?"}]], ["word " * 200])[0])


def test_unsupported_checkpoints_get_clear_errors(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="--implicit-dpo"):
        load_scorer("tiny-random")
    two_labels = AutoModelForSequenceClassification.from_pretrained(
        tiny_models["seqcls"], num_labels=2, ignore_mismatched_sizes=True
    )
    two_labels.save_pretrained(tmp_path / "classifier")
    (tmp_path / "classifier" / "tokenizer.json").write_bytes((tiny_models["seqcls"] / "tokenizer.json").read_bytes())
    (tmp_path / "classifier" / "tokenizer_config.json").write_bytes(
        (tiny_models["seqcls"] / "tokenizer_config.json").read_bytes()
    )
    with pytest.raises(ValueError, match="num_labels=1"):
        load_scorer(str(tmp_path / "classifier"))
