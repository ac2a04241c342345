"""Turn preference pairs into token ids once, and token ids into padded training batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rewardlab.data.pair import PreferencePair
from rewardlab.data.render import render_pairs


@dataclass(frozen=True)
class TokenizedPair:
    """A pair rendered through the one rendering path; ``*_start`` is where the response begins."""

    chosen_ids: list[int]
    chosen_start: int
    rejected_ids: list[int]
    rejected_start: int
    margin: float | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class PairBatch:
    """``input_ids`` stacks the B chosen sequences, then the B rejected ones (right-padded).

    ``response_mask[i, t]`` is 1 where token t of sequence i is a response token, i.e. a target
    of the language-model regularizer.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    margin: torch.Tensor | None

    @property
    def num_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    @property
    def sequence_tokens(self) -> int:
        """Non-padding tokens in the batch."""
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> "PairBatch":
        return PairBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.response_mask.to(device),
            None if self.margin is None else self.margin.to(device),
        )


def tokenize_pairs(
    tokenizer,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int,
    truncation: str,
    skipped: Counter | None = None,
) -> list[TokenizedPair]:
    """Render every pair; pairs that cannot fit in ``max_length`` are counted in ``skipped``."""
    out: list[TokenizedPair] = []
    for pair, rendered in zip(pairs, render_pairs(tokenizer, pairs, max_length, truncation)):
        if rendered is None:
            if skipped is not None:
                skipped[f"longer than max_length={max_length} ({truncation})"] += 1
            continue
        chosen, rejected = rendered
        out.append(
            TokenizedPair(
                chosen.input_ids, chosen.response_start, rejected.input_ids, rejected.response_start, pair.margin
            )
        )
    return out


def collate_pairs(items: Sequence[TokenizedPair], pad_token_id: int) -> PairBatch:
    """Pad chosen and rejected sequences together, to the longest sequence in this batch only."""
    sequences = [(p.chosen_ids, p.chosen_start) for p in items] + [(p.rejected_ids, p.rejected_start) for p in items]
    longest = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, (ids, start) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        response_mask[row, start : len(ids)] = 1
    margins = [p.margin for p in items]
    margin = None if any(m is None for m in margins) else torch.tensor(margins, dtype=torch.float32)
    return PairBatch(input_ids, attention_mask, response_mask, margin)
