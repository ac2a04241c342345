"""Reward heads: structure, shapes, dtype handling and config validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rewardlab.models.heads import HeadConfig, RewardHead


def test_linear_head_is_one_bias_free_layer() -> None:
    head = RewardHead(HeadConfig(type="linear", hidden_size=16))
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].bias is None
    assert tuple(linears[0].weight.shape) == (1, 16)
    assert set(head.state_dict()) == {"layers.0.weight"}


def test_mlp_head_matches_the_paper_layout() -> None:
    head = RewardHead(HeadConfig(type="mlp", hidden_size=16))
    layers = list(head.layers)
    assert isinstance(layers[0], nn.Linear) and tuple(layers[0].weight.shape) == (1024, 16)
    assert isinstance(layers[1], nn.ReLU)
    assert isinstance(layers[2], nn.Linear) and tuple(layers[2].weight.shape) == (1, 1024)
    assert head.dropout.p == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_head_output_shape_and_float32(kind: str) -> None:
    head = RewardHead(HeadConfig(type=kind, hidden_size=8, mlp_hidden=32)).eval()
    hidden = torch.randn(5, 8, dtype=torch.bfloat16)
    rewards = head(hidden)
    assert rewards.shape == (5,) and rewards.dtype == torch.float32
    expected = head.layers(hidden.float()).squeeze(-1)
    assert torch.allclose(rewards, expected)


def test_dropout_is_active_only_in_training() -> None:
    torch.manual_seed(0)
    head = RewardHead(HeadConfig(type="linear", hidden_size=64, dropout=0.5))
    hidden = torch.randn(4, 64)
    head.train()
    assert not torch.allclose(head(hidden), head(hidden))
    head.eval()
    assert torch.equal(head(hidden), head(hidden))


def test_head_config_validation_and_round_trip() -> None:
    config = HeadConfig(type="mlp", hidden_size=32, mlp_hidden=64, dropout=0.0)
    assert HeadConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown reward head type 'conv'"):
        HeadConfig(type="conv", hidden_size=8)
    with pytest.raises(ValueError, match="must be positive"):
        HeadConfig(type="linear", hidden_size=0)
    with pytest.raises(ValueError, match="dropout"):
        HeadConfig(type="linear", hidden_size=8, dropout=1.0)
    with pytest.raises(ValueError, match=r"unknown head config field\(s\) \['layers'\]"):
        HeadConfig.from_dict({"type": "linear", "hidden_size": 8, "layers": 2})
