"""Reusing the frozen lower layers' outputs: computed once per packed group, not once per pass.

With ``trainable_top_layers`` the embeddings and the bottom layers never change, so what they
output for a packed group (a training pair's [prompt, chosen, rejected], or sequences scored
together) depends on its tokens alone. The cache keeps, per group (keyed by its token ids), the
states after those layers; a later pass over the same group (the next epoch, another model trained
from the same base on the same pairs, or another such model scoring the same conversations) runs
only the layers above them. A cache is bound to a fingerprint of the frozen weights, so states are
never reused for a model whose lower layers differ. Results equal recomputing to float tolerance
(tested).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rewardlab.models.layers import decoder_layers, frozen_lower_layer_count, has_dropout
from rewardlab.models.packed import PackedSequences, packed_hidden_states
from rewardlab.models.reward_model import RewardModel, RewardOutput

DEFAULT_BUDGET_BYTES = 2 << 30


def frozen_cache_unusable_reason(causal_lm: nn.Module) -> str | None:
    """Why a model in training cannot reuse its frozen layers' outputs, or None if it can."""
    if frozen_lower_layer_count(causal_lm) == 0:
        return "no frozen lower layers (embeddings and the bottom layer must both be frozen)"
    if has_dropout(causal_lm):
        return "the model uses dropout, so its layers' outputs differ from step to step"
    return None


def lower_layers_fingerprint(causal_lm: nn.Module, lower_layers: int) -> str:
    """Digest of the embeddings and the bottom ``lower_layers`` layers' weights (names, dtypes, bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    modules = [causal_lm.get_input_embeddings(), *decoder_layers(causal_lm.get_decoder())[:lower_layers]]
    for number, module in enumerate(modules):
        for name, parameter in module.named_parameters():
            tensor = parameter.detach().to("cpu").contiguous()
            digest.update(f"{number}.{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(memoryview(tensor.view(torch.uint8).numpy()))
    return digest.hexdigest()


@dataclass
class FrozenCacheStats:
    groups: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    not_kept: int = 0  # computed but not stored: the byte budget was full

    def as_dict(self) -> dict[str, int | float]:
        return {"groups": self.groups, "megabytes": round(self.bytes / 2**20, 1), "hits": self.hits,
                "misses": self.misses, "not_kept_over_budget": self.not_kept}


class FrozenLayerCache:
    """Per-group outputs of a model's frozen lower layers, within a byte budget.

    One cache may serve several models and runs; `bind` ties it to the frozen weights and the layer
    split and empties it when those change, so stale states are never reused.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"the frozen-layer cache budget must be positive, got {budget_bytes} bytes")
        self.budget_bytes = budget_bytes
        self.stats = FrozenCacheStats()
        self._signature: tuple | None = None
        self._states: dict[Hashable, torch.Tensor] = {}

    def bind(self, causal_lm: nn.Module, lower_layers: int, autocast: str = "no") -> None:
        """Use the cache for this model's bottom ``lower_layers`` layers; states of other weights are dropped."""
        if lower_layers < 1:
            raise ValueError(f"lower_layers must be at least 1, got {lower_layers}")
        signature = (lower_layers_fingerprint(causal_lm, lower_layers), lower_layers, autocast)
        if signature != self._signature:
            self._states.clear()
            self.stats = FrozenCacheStats()
            self._signature = signature

    def bind_below_top(self, causal_lm: nn.Module, trainable_top_layers: int | None) -> bool:
        """Bind to the layers below a saved model's ``trainable_top_layers``; False (unbound) if there are none."""
        if trainable_top_layers is None:
            return False
        lower = len(decoder_layers(causal_lm.get_decoder())) - trainable_top_layers
        if lower < 1:
            return False
        self.bind(causal_lm, lower)
        return True

    @property
    def lower_layers(self) -> int:
        if self._signature is None:
            raise RuntimeError("FrozenLayerCache.bind must be called before use")
        return self._signature[1]

    def lower_states(self, causal_lm: nn.Module, keys: Sequence[Hashable], packed: PackedSequences) -> torch.Tensor:
        """States [N, H] of ``packed`` after the frozen layers; ``keys[g]`` names its g-th group's tokens."""
        lower_layers = self.lower_layers
        if len(packed.layout.groups) != len(keys):
            raise ValueError(f"{len(keys)} keys for {len(packed.layout.groups)} packed groups")
        cached = sum(key in self._states for key in keys)
        self.stats.hits += cached
        self.stats.misses += len(keys) - cached
        if cached == len(keys):
            device = packed.input_ids.device
            return torch.cat([self._states[key].to(device) for key in keys])
        with torch.no_grad():
            states = packed_hidden_states(causal_lm, packed, to_layer=lower_layers)
        for key, piece in zip(keys, states.split([group.length for group in packed.layout.groups])):
            if key in self._states:
                continue
            if self.stats.bytes + piece.nbytes > self.budget_bytes:
                self.stats.not_kept += 1
                continue
            with torch.inference_mode(False):  # a plain tensor, usable later with autograd on
                self._states[key] = piece.clone()
            self.stats.bytes += piece.nbytes
            self.stats.groups += 1
        return states


def forward_packed_reusing(
    model: RewardModel, packed: PackedSequences, keys: Sequence[Hashable], cache: FrozenLayerCache | None
) -> RewardOutput:
    """``model.forward_packed(packed)``, taking the frozen layers' outputs from ``cache`` (bound to it) if given.

    ``keys`` name the packed groups (see `FrozenLayerCache.lower_states`); unused without a cache.
    """
    if cache is None:
        return model.forward_packed(packed)
    return model.forward_packed(packed, cache.lower_states(model.causal_lm, keys, packed), cache.lower_layers)
