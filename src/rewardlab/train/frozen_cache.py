"""Reusing the frozen lower layers' outputs: computed once per training pair, not once per step.

With ``trainable_top_layers`` the embeddings and the bottom layers never change, so what they
output for a pair depends on the pair's tokens alone. The cache keeps, per pair (keyed by its
token ids), the packed row's states after those layers; a later step on the same pair, in the
next epoch or in another run on the same base model (the demo's and the repro's models share
their training pairs), runs only the trainable top layers. Results equal the uncached path to
float tolerance (tested); the cost of a cached step is the top layers' alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rewardlab.models.layers import frozen_lower_layer_count, has_dropout
from rewardlab.models.packed import packed_hidden_states
from rewardlab.models.reward_model import RewardModel
from rewardlab.train.batches import TokenizedPair
from rewardlab.train.packing import PackedPairBatch

DEFAULT_BUDGET_BYTES = 2 << 30


def frozen_cache_unusable_reason(model: RewardModel) -> str | None:
    """Why the frozen layers' outputs cannot be reused for this model, or None if they can."""
    if frozen_lower_layer_count(model.causal_lm) == 0:
        return "no frozen lower layers (embeddings and the bottom layer must both be frozen)"
    if has_dropout(model.causal_lm):
        return "the model uses dropout, so its layers' outputs differ from step to step"
    return None


@dataclass
class FrozenCacheStats:
    pairs: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    not_kept: int = 0  # computed but not stored: the byte budget was full

    def as_dict(self) -> dict[str, int | float]:
        return {"pairs": self.pairs, "megabytes": round(self.bytes / 2**20, 1), "hits": self.hits,
                "misses": self.misses, "not_kept_over_budget": self.not_kept}


class FrozenLayerCache:
    """Per-pair outputs of a model's frozen lower layers, within a byte budget.

    One cache may serve several training runs; `bind` ties it to a base model and layer split and
    empties it when those change, so stale states are never reused.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"the frozen-layer cache budget must be positive, got {budget_bytes} bytes")
        self.budget_bytes = budget_bytes
        self.stats = FrozenCacheStats()
        self._signature: tuple | None = None
        self._states: dict[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}

    def bind(self, base_model: str, lower_layers: int, dtype: torch.dtype, autocast: str) -> None:
        """Use the cache for this base model and split; states of any other are dropped."""
        signature = (base_model, lower_layers, str(dtype), autocast)
        if signature != self._signature:
            self._states.clear()
            self.stats = FrozenCacheStats()
            self._signature = signature

    @property
    def lower_layers(self) -> int:
        if self._signature is None:
            raise RuntimeError("FrozenLayerCache.bind must be called before use")
        return self._signature[1]

    def attach(self, model: RewardModel, items: Sequence[TokenizedPair], batch: PackedPairBatch) -> PackedPairBatch:
        """``batch`` with its lower-layer states filled in: from the cache, or computed and stored."""
        keys = [(tuple(p.chosen_ids), tuple(p.rejected_ids)) for p in items]
        lower_layers = self.lower_layers
        if len(batch.packed.layout.groups) != len(keys):
            raise ValueError(f"expected one packed group per pair, got {len(batch.packed.layout.groups)} "
                             f"groups for {len(keys)} pairs")
        cached = sum(key in self._states for key in keys)
        self.stats.hits += cached
        self.stats.misses += len(keys) - cached
        if cached == len(keys):
            device = batch.packed.input_ids.device
            states = torch.cat([self._states[key].to(device) for key in keys])
        else:
            with torch.no_grad():
                states = packed_hidden_states(model.causal_lm, batch.packed, to_layer=lower_layers)
            lengths = [group.length for group in batch.packed.layout.groups]
            for key, piece in zip(keys, states.split(lengths)):
                if key in self._states:
                    continue
                if self.stats.bytes + piece.nbytes > self.budget_bytes:
                    self.stats.not_kept += 1
                    continue
                self._states[key] = piece.clone()
                self.stats.bytes += piece.nbytes
                self.stats.pairs += 1
        return PackedPairBatch(batch.packed, batch.margin, states, lower_layers)
