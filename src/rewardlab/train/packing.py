"""The fast training path: each pair packed as [prompt, chosen, rejected] in one padding-free row.

The prompt (more exactly, the tokens chosen and rejected share) is computed once per pair, the
rejected response attends to the prompt but not to the chosen one, and no padding is computed
at all. Rewards, losses and gradients equal those of the padded path in `train/batches.py` and
`train/loop.py:compute_batch_loss` (tested to float tolerance); only the cost differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rewardlab.losses import LossBreakdown, LossConfig, grm_loss
from rewardlab.models.packed import PackedSequences, pack_groups
from rewardlab.models.reward_model import RewardModel
from rewardlab.train.batches import PairBatch, TokenizedPair


@dataclass
class PackedPairBatch:
    """B pairs packed into one row; sequences ``0..B-1`` are the chosen ones, ``B..2B-1`` the rejected.

    The numbering matches `PairBatch` rows, so per-sequence tensors (rewards, log-probs, the
    reward head's dropout mask) line up with the padded path.
    """

    packed: PackedSequences
    margin: torch.Tensor | None

    @property
    def num_pairs(self) -> int:
        return self.packed.num_sequences // 2

    @property
    def sequence_tokens(self) -> int:
        """Non-padding tokens of the chosen and rejected sequences (what a padded batch holds)."""
        return self.packed.sequence_tokens

    def chosen_indices(self) -> torch.Tensor:
        return torch.arange(self.num_pairs, device=self.packed.input_ids.device)

    def to(self, device: torch.device) -> "PackedPairBatch":
        return PackedPairBatch(self.packed.to(device), None if self.margin is None else self.margin.to(device))


def collate_packed_pairs(items: Sequence[TokenizedPair]) -> PackedPairBatch:
    """Pack each pair's chosen and rejected sequences as one prefix-sharing group, no padding."""
    if not items:
        raise ValueError("cannot collate an empty list of pairs")
    packed = pack_groups(
        [(p.chosen_ids, p.rejected_ids) for p in items],
        [(p.chosen_start, p.rejected_start) for p in items],
    )
    n = len(items)
    packed = packed.renumbered([2 * i for i in range(n)] + [2 * i + 1 for i in range(n)])
    margins = [p.margin for p in items]
    margin = None if any(m is None for m in margins) else torch.tensor(margins, dtype=torch.float32)
    return PackedPairBatch(packed, margin)


def packed_pair_logprobs(
    model: RewardModel, batch: PackedPairBatch, hidden_states: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of the chosen and rejected responses → ([B], [B])."""
    if hidden_states is None:
        hidden_states = model.forward_packed(batch.packed).hidden_states
    logps = model.packed_response_logprobs(hidden_states, batch.packed)
    return logps[: batch.num_pairs], logps[batch.num_pairs :]


def compute_packed_batch_loss(
    model: RewardModel,
    batch: PackedPairBatch,
    loss_config: LossConfig,
    reference: Callable[[PackedPairBatch], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> LossBreakdown:
    """`compute_batch_loss` on a packed batch: one forward pass, then the configured GRM loss."""
    out = model.forward_packed(batch.packed)
    n = batch.num_pairs
    chosen_rewards, rejected_rewards = out.rewards[:n], out.rewards[n:]
    chosen_logps = rejected_logps = ref_chosen = ref_rejected = None
    if loss_config.needs_rejected_logps:
        chosen_logps, rejected_logps = packed_pair_logprobs(model, batch, out.hidden_states)
    elif loss_config.needs_chosen_logps:
        # The SFT regularizers only need chosen responses: never compute LM logits for rejected ones.
        chosen_logps = model.packed_response_logprobs(out.hidden_states, batch.packed, batch.chosen_indices())[:n]
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


def pair_logprobs(model: RewardModel, batch: PairBatch | PackedPairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected response log-probs of either batch kind (used for DPO reference values)."""
    if isinstance(batch, PackedPairBatch):
        return packed_pair_logprobs(model, batch)
    out = model(batch.input_ids, batch.attention_mask)
    logps = model.response_logprobs(out.hidden_states, batch.input_ids, batch.response_mask)
    return logps[: batch.num_pairs], logps[batch.num_pairs :]
