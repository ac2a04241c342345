"""Scoring with a shared frozen-layer cache gives the rewards of scoring without it."""

from __future__ import annotations

import pytest
import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.models.frozen_cache import FrozenLayerCache
from rewardlab.models.lora import freeze_lower_layers
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def saved_model(path, seed: int, top_layers: int | None = 1, nudge_bottom: bool = False):
    """A tiny-random reward model whose top layer and head differ by seed; the bottom layer is the base's."""
    backbone, tokenizer = load_backbone("tiny-random")
    model = RewardModel(backbone, "linear")
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in [*model.causal_lm.get_decoder().layers[1].parameters(), *model.head.parameters()]:
            parameter.add_(0.05 * torch.randn_like(parameter))
        if nudge_bottom:
            model.causal_lm.get_decoder().layers[0].mlp.up_proj.weight.add_(0.01)
    if top_layers is not None:
        freeze_lower_layers(model, top_layers)
    save_reward_model(model, tokenizer, path, {"max_length": 256, "trainable_top_layers": top_layers, "lora": False})
    return path


def test_models_sharing_a_base_share_lower_states_and_keep_their_rewards(tmp_path):
    pairs = load_pairs("synthetic:ood?n=12&seed=3")
    cache = FrozenLayerCache()
    for seed, nudge in ((0, False), (1, False), (2, True)):
        path = saved_model(tmp_path / f"m{seed}", seed, nudge_bottom=nudge)
        plain = RewardScorer.from_pretrained(path, device="cpu", batch_size=4).score_pairs(pairs)
        hits_before = cache.stats.hits
        shared = RewardScorer.from_pretrained(path, device="cpu", batch_size=4, frozen_cache=cache)
        assert shared.frozen_cache is cache
        cached = shared.score_pairs(pairs)
        for a, b in zip(plain, cached):
            assert a == pytest.approx(b, abs=1e-5)
        if seed == 1:  # same frozen bottom layer as model 0: everything comes from the cache
            assert cache.stats.hits > hits_before and cache.stats.misses == cache.stats.groups
        if seed == 2:  # its bottom layer differs: the cache was emptied, nothing was reused
            assert cache.stats.hits == 0 and cache.stats.misses == cache.stats.groups


def test_models_without_frozen_layers_ignore_the_cache(tmp_path):
    path = saved_model(tmp_path / "full", 0, top_layers=None)
    scorer = RewardScorer.from_pretrained(path, device="cpu", frozen_cache=FrozenLayerCache())
    assert scorer.frozen_cache is None
