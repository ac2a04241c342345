"""Packed scoring (no padding, shared prompts computed once) gives the padded scorer's rewards."""

from __future__ import annotations

import pytest
import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.data.render import render_prompt_ids
from rewardlab.models.packed import common_prefix_length
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    return RewardModel.from_base("tiny-random", head="mlp")


def scorers(model_and_tokenizer, batch_size: int) -> tuple[RewardScorer, RewardScorer]:
    model, tokenizer = model_and_tokenizer
    packed = RewardScorer(model, tokenizer, {"max_length": 256}, batch_size=batch_size)
    padded = RewardScorer(model, tokenizer, {"max_length": 256}, batch_size=batch_size, packing=False)
    assert packed.packing and not padded.packing
    return packed, padded


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_packed_pair_scores_equal_padded(model_and_tokenizer, batch_size):
    pairs = load_pairs("synthetic:id?n=7&seed=3")
    packed, padded = scorers(model_and_tokenizer, batch_size)
    packed_chosen, packed_rejected = packed.score_pairs(pairs)
    chosen, rejected = padded.score_pairs(pairs)
    assert packed_chosen == pytest.approx(chosen, abs=1e-4)
    assert packed_rejected == pytest.approx(rejected, abs=1e-4)


def test_best_of_n_shares_the_prompt_and_matches(model_and_tokenizer):
    model, _ = model_and_tokenizer
    packed, padded = scorers(model_and_tokenizer, batch_size=8)
    prompt = [{"role": "system", "content": "You answer questions about geography in one sentence."},
              {"role": "user", "content": "Which river flows through Paris, and where does it reach the sea?"}]
    responses = ["The Seine.", "The Seine, reaching the sea at Le Havre.", "The Loire.", "I am not sure.",
                 "It is the Seine, which flows into the English Channel."]
    processed: list[int] = []
    original = model.forward_packed

    def recording_forward(batch):
        processed.append(batch.num_tokens)
        return original(batch)

    model.forward_packed = recording_forward
    try:
        scores = packed.score_conversations([prompt] * len(responses), responses)
    finally:
        del model.forward_packed
    expected = padded.score_conversations([prompt] * len(responses), responses)
    assert scores == pytest.approx(expected, abs=1e-4)
    ids = [packed.encode_conversation(prompt, r) for r in responses]
    shared = common_prefix_length(ids)
    assert shared >= len(render_prompt_ids(packed.tokenizer, prompt)) - 1
    assert processed == [sum(map(len, ids)) - (len(responses) - 1) * shared]  # one row, the prompt ran once


def test_token_id_scoring_of_unrelated_texts_matches(model_and_tokenizer):
    packed, padded = scorers(model_and_tokenizer, batch_size=4)
    texts = ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n", "a", "plain words " * 30,
             "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhey there<|im_end|>\n"]
    assert packed.score_texts(texts) == pytest.approx(padded.score_texts(texts), abs=1e-4)
    assert packed.score_token_ids([]) == []
    with pytest.raises(ValueError, match="empty token sequence"):
        packed.score_token_ids([[1, 2], []])


def test_scoring_restores_training_mode(model_and_tokenizer):
    model, _ = model_and_tokenizer
    packed, _ = scorers(model_and_tokenizer, batch_size=4)
    model.train()
    packed.score_texts(["some text", "more text"])
    assert model.training
    model.eval()
