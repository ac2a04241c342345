"""Choosing what trains: LoRA adapters (PEFT) or freezing the lower decoder layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from rewardlab.models.layers import decoder_layers, final_norm
from rewardlab.models.forward import unwrap_causal_lm
from rewardlab.models.reward_model import RewardModel

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameter counts (shared/tied tensors counted once)."""

    trainable: int
    total: int

    def __str__(self) -> str:
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        return f"trainable params: {self.trainable:,} of {self.total:,} ({share:.2f}%)"


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count parameters of `model`; `model.parameters()` already yields a tied tensor only once."""
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return ParameterCount(trainable=trainable, total=total)


def apply_lora(
    reward_model: RewardModel,
    r: int = 32,
    alpha: int = 64,
    dropout: float = 0.05,
    targets: Sequence[str] = DEFAULT_LORA_TARGETS,
) -> RewardModel:
    """Wrap the backbone with LoRA adapters (paper default r=32, alpha=64 on q/k/v/o), in place.

    Base weights, the LM head and the embeddings are frozen; the adapters and the reward head
    train. Returns the same `reward_model` for chaining.
    """
    if isinstance(reward_model.backbone, PeftModel):
        raise ValueError("this reward model already has LoRA adapters; apply_lora was called twice")
    if r <= 0 or alpha <= 0 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"invalid LoRA settings r={r}, alpha={alpha}, dropout={dropout}")
    module_names = {name.rsplit(".", 1)[-1] for name, _ in reward_model.backbone.named_modules()}
    absent = [target for target in targets if target not in module_names]
    if absent:
        raise ValueError(f"LoRA target module(s) {absent} do not exist in {type(reward_model.causal_lm).__name__}; "
                         f"pick names of its linear layers (e.g. {DEFAULT_LORA_TARGETS})")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                        bias="none", task_type="CAUSAL_LM")
    reward_model.backbone = get_peft_model(reward_model.backbone, config)
    for parameter in reward_model.head.parameters():
        parameter.requires_grad_(True)
    return reward_model


def freeze_lower_layers(reward_model: RewardModel, trainable_top_layers: int) -> RewardModel:
    """Train only the top `trainable_top_layers` decoder layers, the final norm and the reward head.

    Embeddings and lower layers are frozen. The LM head stays frozen too: with tied embeddings
    (SmolLM2, tiny-random) it *is* the embedding matrix, and untied heads are frozen the same
    way so the two cases behave alike. Cannot be combined with LoRA.
    """
    if isinstance(reward_model.backbone, PeftModel):
        raise ValueError("freeze_lower_layers cannot be combined with LoRA; use one or the other")
    decoder = unwrap_causal_lm(reward_model.backbone).get_decoder()
    layers = decoder_layers(decoder)
    if not 0 <= trainable_top_layers <= len(layers):
        raise ValueError(f"trainable_top_layers must be between 0 and {len(layers)} "
                         f"(the model has {len(layers)} decoder layers), got {trainable_top_layers}")
    for parameter in reward_model.backbone.parameters():
        parameter.requires_grad_(False)
    for layer in layers[len(layers) - trainable_top_layers:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    norm = final_norm(decoder)
    if norm is not None:
        for parameter in norm.parameters():
            parameter.requires_grad_(True)
    for parameter in reward_model.head.parameters():
        parameter.requires_grad_(True)
    return reward_model
