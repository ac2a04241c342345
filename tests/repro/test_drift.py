"""Drift measures: linear CKA against hand-computed values, and a model compared with itself."""

import math

import pytest
import torch

from rewardlab.models.reward_model import RewardModel
from rewardlab.repro.drift import compare_to_base, linear_cka
from rewardlab.repro.lm_check import chosen_response_nll, chosen_response_pass
from rewardlab.train.batches import tokenize_pairs
from rewardlab.data.synthetic import generate


def test_linear_cka_one_feature_is_squared_correlation():
    # centred x = (-1.5, -0.5, 0.5, 1.5), y = (-0.5, 0.5, -0.5, 0.5): (yᵀx)² / (xᵀx · yᵀy) = 1² / (5 · 1)
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    y = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    assert linear_cka(x, y) == pytest.approx(0.2)


def test_linear_cka_two_features_by_hand():
    # XᵀX = 2I (‖·‖_F = √8), YᵀY = diag(2, 0) (‖·‖_F = 2), YᵀX = diag(2, 0) (‖·‖²_F = 4): 4 / (√8 · 2) = 1/√2
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    assert linear_cka(x, y) == pytest.approx(1 / math.sqrt(2))
    assert linear_cka(y, x) == pytest.approx(1 / math.sqrt(2))


def test_linear_cka_ignores_rotation_scale_and_shift():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator))
    assert linear_cka(x, 3 * x @ rotation + 7) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(50, 6, generator=generator)) < 0.5


@pytest.mark.parametrize("x, y", [(torch.zeros(3, 2), torch.zeros(4, 2)), (torch.zeros(1, 2), torch.zeros(1, 2)),
                                  (torch.ones(4, 2), torch.randn(4, 2))])
def test_linear_cka_refuses_what_it_cannot_measure(x, y):
    with pytest.raises(ValueError):
        linear_cka(x, y)


def test_a_model_has_no_drift_from_itself_and_the_pass_gives_the_nll():
    model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
    items = tokenize_pairs(tokenizer, generate(split="id", n=6, seed=0), max_length=256, truncation="drop")
    reference = chosen_response_pass(model, items, keep_states=True)
    drift = compare_to_base(chosen_response_pass(model, items, batch_size=4, keep_states=True), reference)
    assert drift.nll_change == pytest.approx(0.0, abs=1e-6)
    assert drift.cka_response == pytest.approx(1.0) and drift.cka_last == pytest.approx(1.0)
    assert reference.last_states.shape == (len(items), model.causal_lm.config.hidden_size)
    assert reference.response_states.shape[0] == reference.tokens
    assert chosen_response_nll(model, items)[0] == pytest.approx(reference.nll_per_token)
