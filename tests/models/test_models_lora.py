"""What trains: LoRA adapters or the top decoder layers; parameter counting."""

from __future__ import annotations

import pytest
import torch

from models_helpers import chat_texts, encode
from rewardlab.models.lora import apply_lora, count_parameters, freeze_lower_layers
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel


def _fresh(head: str = "linear") -> tuple[RewardModel, object]:
    backbone, tokenizer = load_backbone("tiny-random")
    torch.manual_seed(0)
    return RewardModel(backbone, head), tokenizer


def _trainable_names(model: RewardModel) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_apply_lora_trains_adapters_and_head_only() -> None:
    model, tokenizer = _fresh("mlp")
    apply_lora(model, r=4, alpha=8, dropout=0.0)
    names = _trainable_names(model)
    head_names = [n for n in names if n.startswith("head.")]
    adapter_names = [n for n in names if not n.startswith("head.")]
    assert len(head_names) == 4
    assert adapter_names and all("lora_A" in n or "lora_B" in n for n in adapter_names)
    # 2 layers x 4 projections x (A, B)
    assert len(adapter_names) == 16
    for target in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert any(f"{target}.lora_A" in n for n in adapter_names)
    assert not model.causal_lm.get_input_embeddings().weight.requires_grad
    assert not model.causal_lm.get_output_embeddings().weight.requires_grad
    config = model.backbone.peft_config["default"]
    assert (config.r, config.lora_alpha) == (4, 8)

    input_ids, attention_mask = encode(tokenizer, chat_texts(tokenizer), "right")
    model.train()
    output = model(input_ids, attention_mask)
    mask = torch.zeros_like(input_ids)
    mask[:, 5:9] = 1
    (output.rewards.sum() + model.response_logprobs(output.hidden_states, input_ids, mask).sum()).backward()
    lora_a = dict(model.named_parameters())[next(n for n in adapter_names if "lora_A" in n)]
    # lora_B starts at zero, so lora_A gets no gradient on the first step; lora_B does.
    lora_b = dict(model.named_parameters())[next(n for n in adapter_names if "lora_B" in n)]
    assert lora_b.grad is not None and lora_b.grad.abs().sum() > 0
    assert lora_a.grad is not None
    assert all(dict(model.named_parameters())[n].grad is not None for n in head_names)


def test_apply_lora_defaults_and_errors() -> None:
    model, _ = _fresh()
    apply_lora(model)
    config = model.backbone.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (32, 64, 0.05)
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    with pytest.raises(ValueError, match="apply_lora was called twice"):
        apply_lora(model)
    other, _ = _fresh()
    with pytest.raises(ValueError, match=r"LoRA target module\(s\) \['query_key_value'\] do not exist"):
        apply_lora(other, targets=("q_proj", "query_key_value"))
    with pytest.raises(ValueError, match="invalid LoRA settings"):
        apply_lora(other, r=0)


def test_freeze_lower_layers_keeps_top_layers_norm_and_head() -> None:
    model, _ = _fresh("mlp")
    freeze_lower_layers(model, 1)
    names = set(_trainable_names(model))
    assert any(n.startswith("backbone.model.layers.1.") for n in names)
    assert not any(n.startswith("backbone.model.layers.0.") for n in names)
    assert "backbone.model.norm.weight" in names
    assert {n for n in names if n.startswith("head.")} == {
        "head.layers.0.weight", "head.layers.0.bias", "head.layers.2.weight", "head.layers.2.bias"}
    embeddings = model.causal_lm.get_input_embeddings().weight
    assert not embeddings.requires_grad and model.causal_lm.get_output_embeddings().weight is embeddings

    freeze_lower_layers(model, 0)
    assert set(_trainable_names(model)) == {"backbone.model.norm.weight"} | {
        n for n in names if n.startswith("head.")}
    with pytest.raises(ValueError, match="between 0 and 2"):
        freeze_lower_layers(model, 3)
    apply_lora(model, r=2, alpha=4)
    with pytest.raises(ValueError, match="cannot be combined with LoRA"):
        freeze_lower_layers(model, 1)


def test_count_parameters_counts_tied_weights_once() -> None:
    model, _ = _fresh("linear")
    counts = count_parameters(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert counts.total == sum(unique.values())
    assert counts.trainable == counts.total
    freeze_lower_layers(model, 0)
    counts = count_parameters(model)
    assert counts.trainable == 64 + 64  # final norm + linear head
    assert str(counts).startswith("trainable params: 128 of ")
