"""Reusing the frozen lower layers' outputs gives the same losses and gradients as recomputing them."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.losses import LossConfig
from rewardlab.models.frozen_cache import FrozenLayerCache, frozen_cache_unusable_reason
from rewardlab.models.lora import freeze_lower_layers
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel
from rewardlab.train.batches import tokenize_pairs
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import make_reference, train
from rewardlab.train.packing import collate_packed_pairs
from rewardlab.train.step import compute_batch_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def _template() -> tuple[RewardModel, object]:
    torch.manual_seed(0)
    backbone, tokenizer = load_backbone("tiny-random")
    model = RewardModel(backbone, "mlp")
    freeze_lower_layers(model, 1)  # tiny-random has 2 layers: the bottom one is frozen
    return model, tokenizer


def frozen_model() -> tuple[RewardModel, object]:
    template, tokenizer = _template()
    model = copy.deepcopy(template)
    model.head.eval()  # no head dropout, so both paths compute the same function
    return model, tokenizer


def items(tokenizer, n: int = 6, seed: int = 0):
    return tokenize_pairs(tokenizer, load_pairs(f"synthetic:id?n={n}&seed={seed}"), max_length=256, truncation="drop")


def loss_and_grads(reg: str, cache: FrozenLayerCache | None):
    model, tokenizer = frozen_model()
    pairs = items(tokenizer)
    batch = collate_packed_pairs(pairs)
    loss_config = LossConfig(reg=reg, alpha=0.3)
    reference = make_reference(model, lora=False) if loss_config.needs_reference else None
    if cache is not None:
        cache.bind(model.causal_lm, 1)
        keys = [(tuple(p.chosen_ids), tuple(p.rejected_ids)) for p in pairs]
        batch = batch.with_lower_states(cache.lower_states(model.causal_lm, keys, batch.packed), cache.lower_layers)
    breakdown = compute_batch_loss(model, batch, loss_config, reference)
    breakdown.total.backward()
    return breakdown, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("reg", ["none", "sft", "dpo", "dpo-noref"])
def test_cached_lower_layers_give_the_same_loss_and_gradients(reg):
    plain, plain_grads = loss_and_grads(reg, cache=None)
    cache = FrozenLayerCache()
    for attempt in ("computed", "from cache"):
        cached, cached_grads = loss_and_grads(reg, cache)
        torch.testing.assert_close(cached.total, plain.total, atol=1e-5, rtol=1e-5, msg=attempt)
        assert cached.accuracy == plain.accuracy
        assert cached_grads.keys() == plain_grads.keys() and plain_grads
        assert not any(name.startswith("backbone.model.layers.0.") for name in cached_grads)  # the frozen layer
        for name, grad in plain_grads.items():
            torch.testing.assert_close(cached_grads[name], grad, atol=1e-5, rtol=1e-4, msg=f"{attempt}: {name}")
    assert cache.stats.misses == 6 and cache.stats.hits == 6 and cache.stats.groups == 6


def config(tmp_path, name: str, **overrides) -> TrainConfig:
    values = dict(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(tmp_path / name), trainable_top_layers=1,
                  max_steps=6, batch_size=4, lr=1e-3, reg="sft", alpha=0.3, save_steps=0, log_interval=1, progress=False)
    return TrainConfig(**{**values, **overrides})


def test_training_with_the_cache_matches_training_without_it(tmp_path):
    plain = train(config(tmp_path, "plain", frozen_cache_gb=0), echo=lambda s: None).metrics
    cached = train(config(tmp_path, "cached"), echo=lambda s: None).metrics
    assert plain["frozen_layer_cache"] is None
    # 6 steps of 4 pairs over 8 pairs: 3 epochs, the first computes, the others reuse
    assert cached["frozen_layer_cache"]["misses"] == 8 and cached["frozen_layer_cache"]["hits"] == 16
    for a, b in zip(plain["history"], cached["history"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    saved = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    assert saved["frozen_layer_cache"]["groups"] == 8


def test_a_shared_cache_serves_later_runs_on_the_same_base(tmp_path):
    shared = FrozenLayerCache()
    first = train(config(tmp_path, "first", max_steps=2), echo=lambda s: None, frozen_cache=shared).metrics
    second = train(config(tmp_path, "second", max_steps=2, seed=7, reg="none"), echo=lambda s: None,
                   frozen_cache=shared).metrics
    assert first["frozen_layer_cache"]["misses"] == 8 and first["frozen_layer_cache"]["hits"] == 0
    assert second["frozen_layer_cache"]["misses"] == 0 and second["frozen_layer_cache"]["hits"] == 8
    other_split = train(config(tmp_path, "third", max_steps=2, trainable_top_layers=2), echo=lambda s: None,
                        frozen_cache=shared).metrics
    assert other_split["frozen_layer_cache"] is None  # nothing frozen below the top 2 of 2 layers


def test_the_cache_stays_off_where_it_cannot_help(tmp_path):
    messages: list[str] = []
    metrics = train(config(tmp_path, "padded", max_steps=1, packing=False), echo=messages.append).metrics
    assert metrics["frozen_layer_cache"] is None
    assert any("recomputed every step (training runs on padded batches)" in m for m in messages)
    lora = train(config(tmp_path, "lora", max_steps=1, trainable_top_layers=None, lora=True, lora_r=2, lora_alpha=4),
                 echo=lambda s: None).metrics
    assert lora["frozen_layer_cache"] is None
    with pytest.raises(ValueError, match="frozen_cache_gb"):
        config(tmp_path, "bad", frozen_cache_gb=-1)


def test_dropout_models_are_not_cached():
    model, _ = frozen_model()
    assert frozen_cache_unusable_reason(model.causal_lm) is None
    model.causal_lm.config.attention_dropout = 0.1
    assert "dropout" in frozen_cache_unusable_reason(model.causal_lm)
    everything_trains, _ = frozen_model()
    for parameter in everything_trains.parameters():
        parameter.requires_grad_(True)
    assert "no frozen lower layers" in frozen_cache_unusable_reason(everything_trains.causal_lm)
