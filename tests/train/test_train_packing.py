"""The packed training path gives the padded path's rewards, losses and gradients, for every loss option."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.data.pair import PreferencePair
from rewardlab.losses import LossConfig
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel
from rewardlab.models.lora import apply_lora
from rewardlab.train.batches import collate_pairs, tokenize_pairs
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import compute_batch_loss, make_reference, train
from rewardlab.train.packing import collate_packed_pairs
from rewardlab.train.step import pair_logprobs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def _template() -> tuple[RewardModel, object]:
    torch.manual_seed(0)
    backbone, tokenizer = load_backbone("tiny-random")
    return RewardModel(backbone, "mlp"), tokenizer


def fresh_model(lora: bool) -> tuple[RewardModel, object]:
    """The same freshly initialised model every time (a copy of one template)."""
    template, tokenizer = _template()
    model = copy.deepcopy(template)
    if lora:
        torch.manual_seed(1)
        apply_lora(model, r=4, alpha=8, dropout=0.0)
    model.head.eval()  # dropout off in the head so both paths see the same function; backbone stays in train mode
    return model, tokenizer


@functools.cache
def _synthetic_pairs() -> tuple[PreferencePair, ...]:
    return tuple(load_pairs("synthetic:id?n=5&seed=0"))


def tokenized(tokenizer, margins: bool = False):
    pairs = list(_synthetic_pairs())
    # Responses that start alike: the shared prefix runs past the prompt into the responses.
    pairs.append(PreferencePair(prompt=({"role": "user", "content": "Is the sky blue?"},),
                                chosen="Yes, it is blue on a clear day.", rejected="Yes, it is green.",
                                margin=None, source=None, meta={}))
    if margins:
        pairs = [PreferencePair(p.prompt, p.chosen, p.rejected, 0.5 + i, p.source, p.meta) for i, p in enumerate(pairs)]
    return tokenize_pairs(tokenizer, pairs, max_length=256, truncation="drop")


def loss_and_grads(loss_config: LossConfig, lora: bool, packed: bool, margins: bool = False):
    model, tokenizer = fresh_model(lora)
    items = tokenized(tokenizer, margins)
    reference = make_reference(model, lora) if loss_config.needs_reference else None
    if packed:
        breakdown = compute_batch_loss(model, collate_packed_pairs(items), loss_config, reference)
    else:
        breakdown = compute_batch_loss(model, collate_pairs(items, tokenizer.pad_token_id), loss_config, reference)
    breakdown.total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return breakdown, grads


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("reg", ["none", "sft", "sft-nll", "dpo", "dpo-noref"])
def test_packed_loss_and_gradients_equal_padded(reg, lora):
    loss_config = LossConfig(reg=reg, alpha=0.3)
    padded, padded_grads = loss_and_grads(loss_config, lora, packed=False)
    packed, packed_grads = loss_and_grads(loss_config, lora, packed=True)
    torch.testing.assert_close(packed.total, padded.total, atol=1e-5, rtol=1e-5)
    assert packed.reward == pytest.approx(padded.reward, abs=1e-5)
    assert packed.regularizer == pytest.approx(padded.regularizer, abs=1e-4, rel=1e-5)
    assert packed.accuracy == padded.accuracy
    assert packed_grads.keys() == padded_grads.keys() and padded_grads
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-3, msg=name)


def test_margin_loss_and_centering_match():
    loss_config = LossConfig(loss="margin", reg="sft", center_coefficient=0.1)
    padded, _ = loss_and_grads(loss_config, lora=False, packed=False, margins=True)
    packed, _ = loss_and_grads(loss_config, lora=False, packed=True, margins=True)
    torch.testing.assert_close(packed.total, padded.total, atol=1e-5, rtol=1e-5)


def test_packed_batch_counts_and_logprobs():
    model, tokenizer = fresh_model(lora=False)
    items = tokenized(tokenizer)
    batch = collate_packed_pairs(items)
    padded = collate_pairs(items, tokenizer.pad_token_id)
    assert batch.num_pairs == len(items) == padded.num_pairs
    assert batch.sequence_tokens == padded.sequence_tokens  # same data, counted the same way
    assert batch.packed.num_tokens < batch.sequence_tokens  # the prompts ran once
    with torch.no_grad():
        packed_chosen, packed_rejected = pair_logprobs(model, batch)
        chosen, rejected = pair_logprobs(model, padded)
    torch.testing.assert_close(packed_chosen, chosen, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(packed_rejected, rejected, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="empty list of pairs"):
        collate_packed_pairs([])


def test_prompt_left_truncation_with_different_prompts_still_matches():
    model, tokenizer = fresh_model(lora=False)
    pairs = load_pairs("synthetic:id?n=4&seed=2")
    long = [PreferencePair(p.prompt, p.chosen * 3, p.rejected, None, None, {}) for p in pairs]
    items = tokenize_pairs(tokenizer, long, max_length=48, truncation="prompt-left")
    assert items and any(i.chosen_ids[: i.chosen_start] != i.rejected_ids[: i.rejected_start] for i in items)
    loss_config = LossConfig(reg="sft", alpha=0.5)
    padded = compute_batch_loss(model, collate_pairs(items, tokenizer.pad_token_id), loss_config)
    packed = compute_batch_loss(model, collate_packed_pairs(items), loss_config)
    torch.testing.assert_close(packed.total, padded.total, atol=1e-5, rtol=1e-5)


def test_training_runs_agree_with_and_without_packing(tmp_path):
    histories = {}
    for packing in (True, False):
        config = TrainConfig(
            model="tiny-random", data="synthetic:id?n=16&seed=0", output=str(tmp_path / f"run-{packing}"), max_steps=3,
            batch_size=4, lr=1e-3, max_length=256, save_steps=0, log_interval=1, progress=False, packing=packing,
            eval_data="synthetic:ood?n=8&seed=1",
        )
        result = train(config, echo=lambda s: None)
        metrics = json.loads((result.output / "metrics.json").read_text())
        assert metrics["config"]["packing"] is packing
        histories[packing] = metrics
    for packed_step, padded_step in zip(histories[True]["history"], histories[False]["history"]):
        assert packed_step["loss"] == pytest.approx(padded_step["loss"], abs=1e-4)
    assert histories[True]["eval"]["accuracy"] == histories[False]["eval"]["accuracy"]


def test_unsupported_model_falls_back_to_padding_with_a_message(tmp_path, monkeypatch):
    import rewardlab.train.loop as loop

    monkeypatch.setattr(loop, "packing_unsupported_reason", lambda causal_lm: "no segment attention here")
    messages: list[str] = []
    config = TrainConfig(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(tmp_path / "run"), max_steps=1,
                         batch_size=2, max_length=256, save_steps=0, progress=False)
    train(config, echo=messages.append)
    assert any("packing unavailable (no segment attention here)" in m for m in messages)
