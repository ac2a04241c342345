"""The frozen-layer cache: its byte budget, its binding to the frozen weights, its statistics."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rewardlab.models.frozen_cache import FrozenLayerCache, lower_layers_fingerprint
from rewardlab.models.packed import pack_groups, packed_hidden_states

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_lm(seed: int = 0) -> torch.nn.Module:
    config = AutoConfig.for_model("llama", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32).eval()


def groups() -> list[tuple[tuple[int, ...], ...]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(5):
        prompt = torch.randint(3, 128, (9,), generator=g).tolist()
        out.append(tuple(tuple(prompt + torch.randint(3, 128, (n,), generator=g).tolist()) for n in (4, 6)))
    return out


def test_states_are_stored_reused_and_equal_to_computing_them():
    lm, keys = tiny_lm(), groups()
    packed = pack_groups([list(map(list, group)) for group in keys])
    cache = FrozenLayerCache()
    cache.bind(lm, 2)
    first = cache.lower_states(lm, keys, packed)
    again = cache.lower_states(lm, keys, packed)
    with torch.no_grad():
        direct = packed_hidden_states(lm, packed, to_layer=2)
    torch.testing.assert_close(first, direct)
    torch.testing.assert_close(again, direct, atol=1e-6, rtol=1e-6)
    assert (cache.stats.misses, cache.stats.hits, cache.stats.groups) == (5, 5, 5)
    # a row made of other groups in another order still finds each group's states
    reordered = [keys[3], keys[0]]
    states = cache.lower_states(lm, reordered, pack_groups([list(map(list, group)) for group in reordered]))
    assert cache.stats.hits == 7
    with pytest.raises(ValueError, match="2 keys for 5 packed groups"):
        cache.lower_states(lm, reordered, packed)
    assert states.shape[1] == 32


def test_budget_bounds_what_is_kept():
    lm, keys = tiny_lm(), groups()
    packed = pack_groups([list(map(list, group)) for group in keys])
    per_group = max(group.length for group in packed.layout.groups) * 32 * 4
    cache = FrozenLayerCache(budget_bytes=2 * per_group)
    cache.bind(lm, 1)
    cache.lower_states(lm, keys, packed)
    assert 1 <= cache.stats.groups <= 2 and cache.stats.bytes <= cache.budget_bytes
    assert cache.stats.groups + cache.stats.not_kept == 5
    with pytest.raises(ValueError, match="budget must be positive"):
        FrozenLayerCache(budget_bytes=0)
    with pytest.raises(RuntimeError, match="bind"):
        FrozenLayerCache().lower_states(lm, keys, packed)


def test_binding_to_other_weights_or_another_split_empties_the_cache():
    lm, keys = tiny_lm(), groups()
    packed = pack_groups([list(map(list, group)) for group in keys])
    cache = FrozenLayerCache()
    cache.bind(lm, 2)
    cache.lower_states(lm, keys, packed)
    cache.bind(tiny_lm(), 2)  # equal weights, loaded again: kept
    assert cache.stats.groups == 5
    cache.bind(lm, 1)
    assert cache.stats.groups == 0
    cache.lower_states(lm, keys, packed)
    changed = tiny_lm()
    with torch.no_grad():
        changed.get_decoder().layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    assert lower_layers_fingerprint(changed, 1) != lower_layers_fingerprint(lm, 1)
    assert lower_layers_fingerprint(changed, 0) == lower_layers_fingerprint(lm, 0)  # embeddings alone agree
    cache.bind(changed, 1)
    assert cache.stats.groups == 0 and cache.stats.bytes == 0
    with pytest.raises(ValueError, match="at least 1"):
        cache.bind(lm, 0)


def test_states_computed_while_scoring_can_train_later():
    lm, keys = tiny_lm(), groups()
    packed = pack_groups([list(map(list, group)) for group in keys])
    cache = FrozenLayerCache()
    cache.bind(lm, 2)
    with torch.inference_mode():
        cache.lower_states(lm, keys, packed)
    states = cache.lower_states(lm, keys, packed)
    assert not states.is_inference()
    top = lm.get_decoder().layers[2]
    top.requires_grad_(True)
    hidden = packed_hidden_states(lm, packed, from_layer=2, start_states=states)
    hidden.sum().backward()
    assert top.mlp.down_proj.weight.grad is not None


def test_bind_below_top_counts_the_frozen_layers_of_a_saved_setting():
    lm = tiny_lm()
    cache = FrozenLayerCache()
    assert not cache.bind_below_top(lm, None) and not cache.bind_below_top(lm, 3)  # nothing frozen below
    assert cache.bind_below_top(lm, 1) and cache.lower_layers == 2
