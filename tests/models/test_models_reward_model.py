"""RewardModel: padding-side invariance, last-token pooling, response log-probs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models_helpers import chat_texts, encode
from rewardlab.models.forward import last_token_indices, positions_from_mask
from rewardlab.models.heads import HeadConfig
from rewardlab.models.lora import apply_lora
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel, sequence_logprobs


@pytest.fixture(scope="module")
def tiny():
    backbone, tokenizer = load_backbone("tiny-random")
    torch.manual_seed(0)
    return RewardModel(backbone, "mlp").eval(), tokenizer


def test_reward_model_records_base_and_builds_float32_head(tiny) -> None:
    model, _ = tiny
    assert model.base_model == "tiny-random"
    assert model.head_config == HeadConfig(type="mlp", hidden_size=64)
    assert all(p.dtype == torch.float32 for p in model.head.parameters())
    with pytest.raises(ValueError, match="does not match the backbone's 64"):
        RewardModel(model.backbone, HeadConfig(type="linear", hidden_size=32))


def test_position_ids_and_last_index_for_both_padding_sides() -> None:
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert positions_from_mask(right).tolist() == [[0, 1, 2, 2, 2], [0, 1, 2, 3, 4]]
    assert positions_from_mask(left).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert last_token_indices(right).tolist() == [2, 4]
    assert last_token_indices(left).tolist() == [4, 4]
    with pytest.raises(ValueError, match=r"batch rows \[1\] have no attended tokens"):
        last_token_indices(torch.tensor([[1, 0], [0, 0]]))


def test_rewards_do_not_depend_on_padding_side(tiny) -> None:
    model, tokenizer = tiny
    texts = chat_texts(tokenizer)
    with torch.no_grad():
        right = model(*encode(tokenizer, texts, "right")).rewards
        left = model(*encode(tokenizer, texts, "left")).rewards
        single = torch.cat([model(*encode(tokenizer, [text], "right")).rewards for text in texts])
    assert right.shape == (3,) and right.dtype == torch.float32
    assert torch.allclose(right, left, atol=1e-5)
    assert torch.allclose(right, single, atol=1e-5)
    assert right.unique().numel() == 3  # three different conversations, three different rewards


def test_reward_is_the_head_of_the_last_real_tokens_hidden_state(tiny) -> None:
    model, tokenizer = tiny
    texts = chat_texts(tokenizer)
    input_ids, attention_mask = encode(tokenizer, texts, "right")
    with torch.no_grad():
        output = model(input_ids, attention_mask)
        last = attention_mask.sum(-1) - 1
        expected = model.head(output.hidden_states[torch.arange(3), last])
        assert torch.equal(output.rewards, expected)
        # Pad positions never matter: change the ids under the padding.
        scrambled = input_ids.masked_fill(attention_mask == 0, 7)
        assert torch.allclose(model(scrambled, attention_mask).rewards, output.rewards, atol=1e-6)
        # The final real token does matter.
        shorter = attention_mask.clone()
        shorter[0, last[0]] = 0
        assert not torch.isclose(model(input_ids, shorter).rewards[0], output.rewards[0])


def test_hidden_states_are_what_the_lm_head_sees(tiny) -> None:
    model, tokenizer = tiny
    input_ids, attention_mask = encode(tokenizer, chat_texts(tokenizer)[:1], "right")
    with torch.no_grad():
        hidden = model(input_ids, attention_mask).hidden_states
        logits = model.backbone(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.allclose(model.causal_lm.lm_head(hidden), logits, atol=1e-5)


def test_forward_computes_no_vocabulary_logits(tiny) -> None:
    model, tokenizer = tiny
    calls: list[int] = []
    handle = model.causal_lm.get_output_embeddings().register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            model(*encode(tokenizer, chat_texts(tokenizer), "left"))
    finally:
        handle.remove()
    assert calls == []


def _response_mask(tokenizer, texts, attention_mask, input_ids) -> torch.Tensor:
    """Mark the assistant reply of each rendered conversation (after the last assistant header)."""
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    mask = torch.zeros_like(input_ids)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        start = max(i for i in range(len(ids)) if ids[i:i + len(header)] == header) + len(header)
        end = int(attention_mask[row].nonzero().max()) + 1
        mask[row, start:end] = 1
    return mask


def _full_logits_reference(model, input_ids, attention_mask, response_mask) -> torch.Tensor:
    logits = model.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=positions_from_mask(attention_mask)).logits.float()
    logprobs = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (logprobs * response_mask[:, 1:]).sum(-1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_response_logprobs_equal_full_logit_computation(tiny, side: str) -> None:
    model, tokenizer = tiny
    texts = chat_texts(tokenizer)
    input_ids, attention_mask = encode(tokenizer, texts, side)
    response_mask = _response_mask(tokenizer, texts, attention_mask, input_ids)
    with torch.no_grad():
        hidden = model(input_ids, attention_mask).hidden_states
        fast = model.response_logprobs(hidden, input_ids, response_mask)
        chunked = sequence_logprobs(model.backbone, hidden, input_ids, response_mask, chunk_tokens=3)
        reference = _full_logits_reference(model, input_ids, attention_mask, response_mask)
    assert fast.shape == (3,) and fast.dtype == torch.float32
    # Sums of ~40 float32 terms of size ~5 differ by summation order only: 1e-5 plus 1e-6 relative.
    assert torch.allclose(fast, reference, atol=1e-5, rtol=1e-6), (fast - reference).abs().max()
    assert torch.allclose(chunked, reference, atol=1e-5, rtol=1e-6), (chunked - reference).abs().max()
    assert bool((fast < 0).all())


def test_response_logprobs_only_score_masked_positions(tiny) -> None:
    model, tokenizer = tiny
    input_ids, attention_mask = encode(tokenizer, chat_texts(tokenizer), "right")
    calls: list[int] = []
    handle = model.causal_lm.get_output_embeddings().register_forward_hook(
        lambda _m, args, _o: calls.append(args[0].shape[0]))
    mask = torch.zeros_like(input_ids)
    mask[0, 3:5] = 1
    mask[2, 1] = 1
    try:
        with torch.no_grad():
            hidden = model(input_ids, attention_mask).hidden_states
            values = model.response_logprobs(hidden, input_ids, mask)
    finally:
        handle.remove()
    assert calls == [3]  # one LM-head call on exactly the three target rows
    assert values[1] == 0.0 and values[0] < 0 and values[2] < 0
    with pytest.raises(ValueError, match="position 0"):
        model.response_logprobs(hidden, input_ids, torch.ones_like(input_ids))
    with pytest.raises(ValueError, match="shape mismatch"):
        model.response_logprobs(hidden, input_ids, mask[:, :-1])


def test_gradient_reaches_backbone_through_logprobs_and_rewards(tiny) -> None:
    model, tokenizer = tiny
    texts = chat_texts(tokenizer)
    input_ids, attention_mask = encode(tokenizer, texts, "right")
    response_mask = _response_mask(tokenizer, texts, attention_mask, input_ids)
    model.zero_grad()
    output = model(input_ids, attention_mask)
    model.response_logprobs(output.hidden_states, input_ids, response_mask).sum().backward()
    q_proj = model.causal_lm.model.layers[0].self_attn.q_proj.weight
    assert q_proj.grad is not None and q_proj.grad.abs().sum() > 0
    assert model.causal_lm.get_input_embeddings().weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.head.parameters())  # the regulariser does not touch the head

    model.zero_grad()
    model(input_ids, attention_mask).rewards.sum().backward()
    assert q_proj.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())


def test_bfloat16_backbone_keeps_float32_head() -> None:
    backbone, tokenizer = load_backbone("tiny-random", dtype=torch.bfloat16)
    model = RewardModel(backbone, "linear").eval()
    assert next(backbone.parameters()).dtype == torch.bfloat16
    assert model.head.layers[0].weight.dtype == torch.float32
    with torch.no_grad():
        output = model(*encode(tokenizer, chat_texts(tokenizer), "left"))
    assert output.rewards.dtype == torch.float32 and output.hidden_states.dtype == torch.bfloat16


def test_forward_and_logprobs_work_through_a_lora_wrapper(tiny) -> None:
    _, tokenizer = tiny
    backbone, _ = load_backbone("tiny-random")
    torch.manual_seed(1)
    plain = RewardModel(backbone, "linear").eval()
    texts = chat_texts(tokenizer)
    input_ids, attention_mask = encode(tokenizer, texts, "right")
    response_mask = _response_mask(tokenizer, texts, attention_mask, input_ids)
    with torch.no_grad():
        before = plain(input_ids, attention_mask)
        before_logps = plain.response_logprobs(before.hidden_states, input_ids, response_mask)
    apply_lora(plain, r=4, alpha=8).eval()
    with torch.no_grad():
        after = plain(input_ids, attention_mask)  # LoRA B starts at zero: same function
        after_logps = plain.response_logprobs(after.hidden_states, input_ids, response_mask)
    assert torch.allclose(before.rewards, after.rewards, atol=1e-6)
    assert torch.allclose(before_logps, after_logps, atol=1e-5)
