"""Packed (padding-free, prefix-sharing) forward passes equal separate padded passes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rewardlab.models.lora import apply_lora
from rewardlab.models.packed import (
    SEGMENT_ATTENTION,
    PackingUnsupportedError,
    common_prefix_length,
    enable_segment_attention,
    group_shared_prefixes,
    pack_groups,
    packing_unsupported_reason,
)
from rewardlab.models.reward_model import RewardModel

VOCAB = 512


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_backbone(model_type: str, **extra) -> torch.nn.Module:
    """A 2-layer random decoder of the given family (grouped-query attention, like SmolLM2)."""
    config = AutoConfig.for_model(
        model_type, vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        **extra,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32).eval()


def random_ids(generator: torch.Generator, n: int) -> list[int]:
    return torch.randint(3, VOCAB, (n,), generator=generator).tolist()


def sample_groups() -> tuple[list[list[list[int]]], list[list[int]]]:
    """Groups covering the layouts that matter: a pair, best-of-3, a prefix of another, duplicates, a singleton."""
    g = torch.Generator().manual_seed(7)
    prompt, other = random_ids(g, 23), random_ids(g, 9)
    shared_start = random_ids(g, 3)
    groups = [
        [prompt + random_ids(g, 6), prompt + random_ids(g, 11)],
        [other + shared_start + random_ids(g, 5), other + shared_start + random_ids(g, 2), other + random_ids(g, 7)],
        [other[:4], other[:4] + random_ids(g, 3)],
        [prompt[:10] + [5, 6], prompt[:10] + [5, 6]],
        [random_ids(g, 13)],
    ]
    starts = [[23, 23], [9, 9, 9], [2, 4], [10, 10], [4]]
    return groups, starts


def padded(sequences: list[list[int]], starts: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids)
    for row, (seq, start) in enumerate(zip(sequences, starts)):
        ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        response[row, start : len(seq)] = 1
    return ids, attention, response


def test_pack_groups_layout():
    a, b = [1, 2, 3, 4, 5], [1, 2, 3, 9]
    packed = pack_groups([[a, b], [[7, 8]]], [[3, None], [1]])
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 9, 7, 8]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 0, 1]]
    assert packed.last_index.tolist() == [4, 5, 7]
    assert packed.num_tokens == 8 and packed.sequence_tokens == 11
    # a's response tokens 4, 5 predicted by rows 2, 3; b has no response start; [7, 8]'s token 8 by row 6.
    assert packed.response_target_index.tolist() == [3, 4, 7]
    assert packed.response_predictor_index.tolist() == [2, 3, 6]
    assert packed.response_owner.tolist() == [0, 0, 2]
    first, second = packed.layout.groups
    assert (first.start, first.length, second.start, second.length) == (0, 6, 6, 2)
    assert second.mask is None  # a single sequence: plain causal attention
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],  # b's own token sees the shared prefix and itself, not a's branch
    ], dtype=torch.bool)
    assert torch.equal(first.mask, expected)


def test_rejected_branch_position_continues_from_prompt_end():
    packed = pack_groups([[[5, 6, 7], [5, 6, 8, 9]]])
    assert packed.position_ids.tolist() == [[0, 1, 2, 2, 3]]
    assert packed.last_index.tolist() == [2, 4]


def test_pack_groups_rejects_bad_input():
    with pytest.raises(ValueError, match="group 1, sequence 0 is empty"):
        pack_groups([[[1, 2]], [[]]])
    with pytest.raises(ValueError, match="group 0 has no sequences"):
        pack_groups([[]])
    with pytest.raises(ValueError, match="response start 0"):
        pack_groups([[[1, 2]]], [[0]])
    with pytest.raises(ValueError, match="2 sequences but 1 response starts"):
        pack_groups([[[1, 2], [1, 3]]], [[1]])


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[1, 2], [1, 2]]) == 2
    assert common_prefix_length([[3], [1]]) == 0


def test_group_shared_prefixes_puts_responses_to_one_prompt_together():
    g = torch.Generator().manual_seed(3)
    prompt_a, prompt_b = random_ids(g, 40), random_ids(g, 40)
    sequences = [prompt_a + random_ids(g, 5), prompt_b + random_ids(g, 5), prompt_a + random_ids(g, 8),
                 random_ids(g, 12), prompt_b + random_ids(g, 3), prompt_a + random_ids(g, 4)]
    groups = group_shared_prefixes(sequences, max_group_size=8)
    assert sorted(sorted(group) for group in groups) == [[0, 2, 5], [1, 4], [3]]
    capped = group_shared_prefixes(sequences, max_group_size=2)
    assert max(len(group) for group in capped) == 2
    assert sorted(i for group in capped for i in group) == list(range(6))
    assert all(len(group) == 1 for group in group_shared_prefixes(sequences, max_group_size=8, min_shared_tokens=41))
    by_tokens = group_shared_prefixes(sequences, max_group_size=8, max_group_tokens=47)
    assert all(len(group) == 1 for group in by_tokens)


@pytest.mark.parametrize("model_type, extra", [
    ("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": None}), ("qwen3", {}),
    # windows shorter than the sequences: the packed mask must cut by position distance, like the padded one
    ("mistral", {"sliding_window": 5}), ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
])
def test_packed_rewards_and_logprobs_equal_padded_passes(model_type, extra):
    model = RewardModel(tiny_backbone(model_type, **extra), "mlp").eval()
    groups, starts = sample_groups()
    sequences = [seq for group in groups for seq in group]
    flat_starts = [s for group in starts for s in group]
    ids, attention, response = padded(sequences, flat_starts)
    with torch.no_grad():
        reference = model(ids, attention)
        reference_logps = model.response_logprobs(reference.hidden_states, ids, response)
        packed = pack_groups(groups, starts)
        out = model.forward_packed(packed)
        logps = model.packed_response_logprobs(out.hidden_states, packed)
    assert packed.num_tokens < int(attention.sum())  # shared prefixes were computed once
    torch.testing.assert_close(out.rewards, reference.rewards, atol=1e-4, rtol=0)
    torch.testing.assert_close(logps, reference_logps, atol=1e-4, rtol=1e-5)
    only = torch.tensor([0, 3])
    with torch.no_grad():
        partial = model.packed_response_logprobs(out.hidden_states, packed, only)
    torch.testing.assert_close(partial[only], reference_logps[only], atol=1e-4, rtol=1e-5)
    assert partial[[1, 2, 4]].abs().sum() == 0


def test_packed_gradients_equal_padded_gradients_with_lora():
    def loss_and_grads(use_packing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = apply_lora(RewardModel(tiny_backbone("llama"), "linear"), r=4, alpha=8, dropout=0.0).train()
        groups, starts = sample_groups()
        sequences = [seq for group in groups for seq in group]
        if use_packing:
            packed = pack_groups(groups, starts)
            out = model.forward_packed(packed)
            logps = model.packed_response_logprobs(out.hidden_states, packed)
        else:
            ids, attention, response = padded(sequences, [s for group in starts for s in group])
            out = model(ids, attention)
            logps = model.response_logprobs(out.hidden_states, ids, response)
        loss = (out.rewards * torch.linspace(-1, 1, len(sequences))).sum() + 0.01 * logps.sum()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_padded, grads_padded = loss_and_grads(False)
    loss_packed, grads_packed = loss_and_grads(True)
    torch.testing.assert_close(loss_packed, loss_padded, atol=1e-4, rtol=1e-5)
    assert grads_packed.keys() == grads_padded.keys() and any("lora_" in name for name in grads_packed)
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, atol=1e-5, rtol=1e-3, msg=name)


def test_padded_path_is_unchanged_by_the_segment_attention():
    model = RewardModel(tiny_backbone("llama"), "linear").eval()
    groups, starts = sample_groups()
    sequences = [seq for group in groups for seq in group]
    ids, attention, _ = padded(sequences, [s for group in starts for s in group])
    with torch.no_grad():
        before = model(ids, attention).rewards
        enable_segment_attention(model.causal_lm)
        assert model.causal_lm.config._attn_implementation == SEGMENT_ATTENTION
        after = model(ids, attention).rewards
    assert torch.equal(before, after)


def test_unsupported_models_are_named_with_the_reason():
    eager = tiny_backbone("llama")
    eager.set_attn_implementation("eager")
    assert "eager" in packing_unsupported_reason(eager)
    with pytest.raises(PackingUnsupportedError, match="eager"):
        enable_segment_attention(eager)
    config = AutoConfig.for_model("gpt2", vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)
    gpt2 = AutoModelForCausalLM.from_config(config)
    assert "gpt2" in packing_unsupported_reason(gpt2)
    gemma2 = AutoConfig.for_model("gemma2", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    capped = AutoModelForCausalLM.from_config(gemma2)  # no sdpa for Gemma 2: eager
    assert "soft-caps attention logits" in packing_unsupported_reason(capped)
    assert packing_unsupported_reason(tiny_backbone("mistral", sliding_window=8)) is None
    assert packing_unsupported_reason(tiny_backbone("qwen2")) is None
