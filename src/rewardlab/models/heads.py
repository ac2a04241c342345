"""Reward heads: map a final hidden state to one scalar reward."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

HEAD_TYPES = ("linear", "mlp")


@dataclass(frozen=True)
class HeadConfig:
    """Shape of a reward head; saved with every checkpoint so loading never has to guess."""

    type: str
    hidden_size: int
    mlp_hidden: int = 1024
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.type not in HEAD_TYPES:
            raise ValueError(f"unknown reward head type {self.type!r}; choose one of {HEAD_TYPES}")
        if self.hidden_size <= 0 or self.mlp_hidden <= 0:
            raise ValueError(f"head sizes must be positive, got hidden_size={self.hidden_size}, "
                             f"mlp_hidden={self.mlp_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        known = {"type", "hidden_size", "mlp_hidden", "dropout"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown head config field(s) {unknown}; expected {sorted(known)}")
        return cls(**data)


class RewardHead(nn.Module):
    """Dropout, then either one bias-free linear layer or hidden→mlp_hidden→ReLU→1.

    The `linear` head has no bias on purpose: the Bradley–Terry loss depends only on reward
    differences, so a constant offset is never learned, and without one the head is exactly a
    Hugging Face sequence-classification `score` layer, which makes the seq-cls export exact.
    The `mlp` head follows the GRM paper (one 1024-unit hidden layer, biases included).
    """

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        if config.type == "linear":
            self.layers = nn.Sequential(nn.Linear(config.hidden_size, 1, bias=False))
        else:
            self.layers = nn.Sequential(
                nn.Linear(config.hidden_size, config.mlp_hidden),
                nn.ReLU(),
                nn.Linear(config.mlp_hidden, 1),
            )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., hidden_size] → [...] rewards, computed in the head's own dtype (float32)."""
        head_dtype = self.layers[0].weight.dtype
        return self.layers(self.dropout(hidden.to(head_dtype))).squeeze(-1)
