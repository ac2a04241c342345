"""The fast training path: each pair packed as [prompt, chosen, rejected] in one padding-free row.

The prompt (more exactly, the tokens chosen and rejected share) is computed once per pair, the
rejected response attends to the prompt but not to the chosen one, and no padding is computed
at all. Rewards, losses and gradients equal those of the padded path in `train/batches.py`
(tested to float tolerance); only the cost differs. `train/step.py` computes the loss of either
batch kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rewardlab.models.packed import PackedSequences, pack_groups
from rewardlab.train.batches import TokenizedPair


@dataclass
class PackedPairBatch:
    """B pairs packed into one row; sequences ``0..B-1`` are the chosen ones, ``B..2B-1`` the rejected.

    The numbering matches `PairBatch` rows, so per-sequence tensors (rewards, log-probs, the
    reward head's dropout mask) line up with the padded path.
    """

    packed: PackedSequences
    margin: torch.Tensor | None
    # outputs of the model's frozen bottom `lower_layers` layers for this row, when already known
    lower_states: torch.Tensor | None = None
    lower_layers: int = 0

    @property
    def num_pairs(self) -> int:
        return self.packed.num_sequences // 2

    @property
    def sequence_tokens(self) -> int:
        """Non-padding tokens of the chosen and rejected sequences (what a padded batch holds)."""
        return self.packed.sequence_tokens

    def chosen_indices(self) -> torch.Tensor:
        return torch.arange(self.num_pairs, device=self.packed.input_ids.device)

    def with_lower_states(self, states: torch.Tensor, lower_layers: int) -> "PackedPairBatch":
        """This batch with its row's outputs of the model's bottom ``lower_layers`` (frozen) layers attached."""
        return PackedPairBatch(self.packed, self.margin, states, lower_layers)

    def to(self, device: torch.device) -> "PackedPairBatch":
        return PackedPairBatch(
            self.packed.to(device), None if self.margin is None else self.margin.to(device),
            None if self.lower_states is None else self.lower_states.to(device), self.lower_layers,
        )


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
