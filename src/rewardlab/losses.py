"""Reward losses and language-model regularizers, as pure tensor functions.

GRM (Yang et al., 2024) trains with ``(1 - alpha) * reward_loss + alpha * regularizer`` — a convex
combination, not ``reward_loss + alpha * regularizer``. Every function here takes per-pair tensors of
shape ``[B]`` and returns a scalar mean over the batch.

Log-probabilities (``*_logps``) are sums over response tokens (not means), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

REWARD_LOSSES = ("bt", "margin", "label-smoothing")
REGULARIZERS = ("none", "sft", "sft-nll", "dpo", "dpo-noref")


@dataclass(frozen=True)
class LossConfig:
    """Which losses to combine and with what weights (paper defaults)."""

    loss: str = "bt"
    reg: str = "sft"
    alpha: float = 0.01
    beta: float = 0.1
    label_smoothing: float = 0.1
    center_coefficient: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in REWARD_LOSSES:
            raise ValueError(f"unknown reward loss {self.loss!r}; choose one of {', '.join(REWARD_LOSSES)}")
        if self.reg not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.reg!r}; choose one of {', '.join(REGULARIZERS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (it weights a convex combination), got {self.alpha}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")

    @property
    def needs_chosen_logps(self) -> bool:
        return self.reg != "none"

    @property
    def needs_rejected_logps(self) -> bool:
        return self.reg in ("dpo", "dpo-noref")

    @property
    def needs_reference(self) -> bool:
        return self.reg == "dpo"


# --- reward losses -------------------------------------------------------------------------------


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry: ``-log σ(r_c - r_r)``."""
    return -F.logsigmoid(chosen - rejected).mean()


def margin_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """BT with a per-pair margin (Llama-2 style): ``-log σ(r_c - r_r - m)``."""
    return -F.logsigmoid(chosen - rejected - margin).mean()


def label_smoothing_loss(chosen: torch.Tensor, rejected: torch.Tensor, epsilon: float) -> torch.Tensor:
    """BT with label smoothing: ``-(1-ε) log σ(Δ) - ε log σ(-Δ)``."""
    delta = chosen - rejected
    return (-(1.0 - epsilon) * F.logsigmoid(delta) - epsilon * F.logsigmoid(-delta)).mean()


def centering_penalty(chosen: torch.Tensor, rejected: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Reward centering as TRL's ``center_rewards_coefficient``: ``c · mean((r_c + r_r)²)``."""
    return coefficient * ((chosen + rejected) ** 2).mean()


# --- regularizers on the language-model head ----------------------------------------------------


def sft_regularizer(chosen_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """The paper's default SFT term: ``-log σ(β · Σ log π(y_c))``."""
    return -F.logsigmoid(beta * chosen_logps).mean()


def sft_nll_regularizer(chosen_logps: torch.Tensor) -> torch.Tensor:
    """Plain summed negative log-likelihood of the chosen response."""
    return -chosen_logps.mean()


def dpo_regularizer(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO against a frozen reference: ``-log σ(β[(π_c - π_r) - (ref_c - ref_r)])``."""
    logits = (chosen_logps - rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * logits).mean()


def dpo_noref_regularizer(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Reference-free DPO: ``-log σ(β (π_c - π_r))``."""
    return -F.logsigmoid(beta * (chosen_logps - rejected_logps)).mean()


# --- the combination ----------------------------------------------------------------------------


@dataclass
class LossBreakdown:
    """The total loss and the parts it was made from (parts detached, for logging)."""

    total: torch.Tensor
    reward: float
    regularizer: float
    accuracy: float


def reward_loss(
    config: LossConfig,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """The configured reward loss plus the optional centering penalty."""
    if config.loss == "bt":
        loss = bt_loss(chosen, rejected)
    elif config.loss == "margin":
        if margin is None:
            raise ValueError("loss 'margin' needs a margin for every pair (a 'margin' column in the data)")
        loss = margin_loss(chosen, rejected, margin)
    else:
        loss = label_smoothing_loss(chosen, rejected, config.label_smoothing)
    if config.center_coefficient:
        loss = loss + centering_penalty(chosen, rejected, config.center_coefficient)
    return loss


def regularizer(
    config: LossConfig,
    chosen_logps: torch.Tensor | None = None,
    rejected_logps: torch.Tensor | None = None,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The configured text-generation regularizer, or None for ``reg="none"``."""
    if config.reg == "none":
        return None
    if chosen_logps is None:
        raise ValueError(f"regularizer {config.reg!r} needs chosen log-probs")
    if config.reg == "sft":
        return sft_regularizer(chosen_logps, config.beta)
    if config.reg == "sft-nll":
        return sft_nll_regularizer(chosen_logps)
    if rejected_logps is None:
        raise ValueError(f"regularizer {config.reg!r} needs rejected log-probs")
    if config.reg == "dpo-noref":
        return dpo_noref_regularizer(chosen_logps, rejected_logps, config.beta)
    if ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError("regularizer 'dpo' needs reference-model log-probs")
    return dpo_regularizer(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, config.beta)


def combine(config: LossConfig, reward_part: torch.Tensor, reg_part: torch.Tensor | None) -> torch.Tensor:
    """``(1 - α) · reward + α · regularizer``; with no regularizer, the reward loss alone."""
    if reg_part is None:
        return reward_part
    return (1.0 - config.alpha) * reward_part + config.alpha * reg_part


def grm_loss(
    config: LossConfig,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    chosen_logps: torch.Tensor | None = None,
    rejected_logps: torch.Tensor | None = None,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
) -> LossBreakdown:
    """Compute the full training loss for one batch of pairs."""
    reward_part = reward_loss(config, chosen, rejected, margin)
    reg_part = regularizer(config, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    total = combine(config, reward_part, reg_part)
    return LossBreakdown(
        total=total,
        reward=float(reward_part.detach()),
        regularizer=float(reg_part.detach()) if reg_part is not None else 0.0,
        accuracy=float((chosen > rejected).float().mean().detach()),
    )
