"""One training step's loss: a forward pass over a batch of pairs, then the configured GRM loss.

Works on both batch kinds: padded (`train/batches.py`, chosen and rejected as rows of one padded
tensor) and packed (`train/packing.py`, one padding-free row per pair). They give the same
rewards, losses and gradients (tested); the packed one costs less.

`PairLoss` is the module a training run hands to accelerate: its ``forward`` is a batch's whole
loss, so whatever accelerate wraps it in (DDP, FSDP, DeepSpeed) sees every use of the trainable
weights: DDP's gradient all-reduce runs, and ``no_sync`` really skips it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rewardlab.losses import LossBreakdown, LossConfig, grm_loss
from rewardlab.models.reward_model import RewardModel, RewardOutput
from rewardlab.train.batches import PairBatch
from rewardlab.train.packing import PackedPairBatch


def pair_forward(model: RewardModel, batch: PairBatch | PackedPairBatch) -> RewardOutput:
    """Rewards and final hidden states of every sequence of either batch kind (chosen first)."""
    if isinstance(batch, PackedPairBatch):
        return model.forward_packed(batch.packed, batch.lower_states, batch.lower_layers)
    return model(batch.input_ids, batch.attention_mask)


def pair_logprobs(
    model: RewardModel,
    batch: PairBatch | PackedPairBatch,
    hidden_states: torch.Tensor | None = None,
    *,
    chosen_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed response log-probs of the chosen and rejected responses → ([B], [B]).

    With ``chosen_only`` (the SFT regularizers) LM logits are computed for the chosen responses
    only and the rejected value is None. ``hidden_states`` reuses a forward pass already made.
    """
    if hidden_states is None:
        hidden_states = pair_forward(model, batch).hidden_states
    n = batch.num_pairs
    if isinstance(batch, PackedPairBatch):
        which = batch.chosen_indices() if chosen_only else None
        logps = model.packed_response_logprobs(hidden_states, batch.packed, which)
    elif chosen_only:
        logps = model.response_logprobs(hidden_states[:n], batch.input_ids[:n], batch.response_mask[:n])
    else:
        logps = model.response_logprobs(hidden_states, batch.input_ids, batch.response_mask)
    return logps[:n], (None if chosen_only else logps[n:])


def compute_batch_loss(
    model: RewardModel,
    batch: PairBatch | PackedPairBatch,
    loss_config: LossConfig,
    reference: Callable[[PairBatch | PackedPairBatch], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> LossBreakdown:
    """One forward pass over chosen+rejected (padded or packed), then the configured GRM loss."""
    out = pair_forward(model, batch)
    n = batch.num_pairs
    chosen_rewards, rejected_rewards = out.rewards[:n], out.rewards[n:]
    chosen_logps = rejected_logps = ref_chosen = ref_rejected = None
    if loss_config.needs_rejected_logps:
        chosen_logps, rejected_logps = pair_logprobs(model, batch, out.hidden_states)
    elif loss_config.needs_chosen_logps:
        # The SFT regularizers only need chosen responses: never compute LM logits for rejected ones.
        chosen_logps, _ = pair_logprobs(model, batch, out.hidden_states, chosen_only=True)
    if loss_config.needs_reference:
        if reference is None:
            raise ValueError(f"regularizer {loss_config.reg!r} needs a reference model")
        ref_chosen, ref_rejected = reference(batch)
    return grm_loss(
        loss_config,
        chosen_rewards,
        rejected_rewards,
        margin=batch.margin,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen,
        ref_rejected_logps=ref_rejected,
    )


class PairLoss(nn.Module):
    """A reward model whose ``forward(batch)`` returns the batch's `LossBreakdown` (total loss first).

    ``reference`` (DPO) is kept out of the module tree, so it is neither wrapped, synchronised
    nor saved with the trained weights.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        loss_config: LossConfig,
        reference: Callable[[PairBatch | PackedPairBatch], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.reward_model = reward_model
        self.loss_config = loss_config
        self._reference = reference

    def forward(self, batch: PairBatch | PackedPairBatch) -> LossBreakdown:
        return compute_batch_loss(self.reward_model, batch, self.loss_config, self._reference)
