"""How rewardlab reads a causal LM: its final hidden states, and logits exactly as its own forward makes them.

Kept apart from `reward_model` so that loading (`registry`) can check a backbone without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


def unwrap_causal_lm(model: nn.Module) -> PreTrainedModel:
    """The transformers causal LM inside a PEFT wrapper (or the model itself)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def text_hidden_size(causal_lm: PreTrainedModel) -> int:
    """Hidden size of the language model (text config for multimodal models)."""
    config = causal_lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting only real tokens, so left and right padding give the same positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_indices(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended token in each row, whichever side the padding is on."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq], got shape {tuple(attention_mask.shape)}")
    lengths = attention_mask.long().sum(-1)
    if bool((lengths == 0).any()):
        empty = (lengths == 0).nonzero().flatten().tolist()
        raise ValueError(f"batch rows {empty} have no attended tokens; cannot read a reward")
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


def final_hidden_states(
    causal_lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Final hidden states (what the LM head sees) from the decoder body, without any logits."""
    decoder = unwrap_causal_lm(causal_lm).get_decoder()
    output = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions_from_mask(attention_mask),
        use_cache=False,
    )
    return output.last_hidden_state


@dataclass(frozen=True)
class LogitTransform:
    """What a family's causal-LM forward does to ``lm_head(hidden)``: ``softcap(multiplier * logits)``.

    Granite divides by ``logits_scaling``, Cohere/Cohere2 multiply by ``logit_scale``, Falcon-H1 by
    ``lm_head_multiplier``; Gemma 2/3 soft-cap with ``final_logit_softcapping``. Log-probabilities
    must see the same logits as ``forward().logits`` (tested per family in the architecture matrix).
    """

    multiplier: float = 1.0
    softcap: float | None = None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self.multiplier != 1.0:
            logits = logits * self.multiplier
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


# model_type → the config attribute its causal-LM forward scales the logits by, and how.
_LOGIT_MULTIPLIERS = {
    **{family: ("logits_scaling", "divide") for family in (
        "granite", "granitemoe", "granitemoeshared", "granitemoehybrid", "granitemoe_swa", "granite_swa")},
    **{family: ("logit_scale", "multiply") for family in ("cohere", "cohere2", "cohere2_moe")},
    "falcon_h1": ("lm_head_multiplier", "multiply"),
}


def logit_transform(causal_lm: nn.Module) -> LogitTransform:
    """The scaling and soft-capping this model's forward applies after its LM head."""
    lm = unwrap_causal_lm(causal_lm)
    config = lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    multiplier = 1.0
    for model_type in (getattr(config, "model_type", None), getattr(text_config, "model_type", None)):
        rule = _LOGIT_MULTIPLIERS.get(model_type)
        if rule is not None:
            value = float(getattr(text_config, rule[0], None) or getattr(config, rule[0], None) or 1.0)
            multiplier = 1.0 / value if rule[1] == "divide" else value
            break
    softcap = getattr(text_config, "final_logit_softcapping", None)
    return LogitTransform(multiplier=multiplier, softcap=float(softcap) if softcap else None)


def lm_logits(causal_lm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """float32 vocabulary logits for hidden rows, exactly as the model's own forward computes them."""
    lm = unwrap_causal_lm(causal_lm)
    return logit_transform(lm).apply(lm.get_output_embeddings()(hidden).float())


# Families whose rewards, log-probs, packing and save/load/export are tested on small random
# configs (tests/models/test_models_architectures.py). Other families are probed at load.
TESTED_MODEL_TYPES = (
    "llama", "mistral", "ministral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "granite",
    "cohere", "cohere2", "olmo2", "olmo3",
)


def forward_mismatch(causal_lm: nn.Module, token_ids: Sequence[int], pad_token_id: int) -> str | None:
    """Why rewardlab's reading of this model would differ from the model's own forward, or None.

    A short probe: the log-prob logits (decoder body, LM head, `logit_transform`) must equal
    ``forward().logits``, and the final hidden states must not change when the probe is left-padded
    (the reward is read at the last real token, whichever side the padding is on).
    """
    lm = unwrap_causal_lm(causal_lm)
    parameter = next(lm.parameters())
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=parameter.device)
    ones = torch.ones_like(ids)
    pad = 2
    padded_ids = torch.cat([torch.full((1, pad), pad_token_id, dtype=torch.long, device=ids.device), ids], dim=1)
    padded_mask = torch.cat([torch.zeros_like(padded_ids[:, :pad]), ones], dim=1)
    rtol, atol = (1e-3, 1e-4) if parameter.dtype == torch.float32 else (5e-2, 5e-2)
    was_training = lm.training
    lm.eval()
    try:
        with torch.no_grad():
            reference = lm(input_ids=ids, use_cache=False).logits.float()
            hidden = final_hidden_states(lm, ids, ones)
            ours = lm_logits(lm, hidden)
            padded_hidden = final_hidden_states(lm, padded_ids, padded_mask)[:, pad:]
    except Exception as error:  # an architecture rewardlab cannot drive: report it, do not train it
        return f"a text-only forward pass failed ({type(error).__name__}: {error})"
    finally:
        lm.train(was_training)
    if reference.shape != ours.shape or not torch.allclose(ours, reference, rtol=rtol, atol=atol):
        gap = (ours - reference).abs().max().item() if reference.shape == ours.shape else float("nan")
        return (f"its forward() logits differ from LM head(hidden states) by up to {gap:.3g} (an output "
                "scaling or soft-capping rewardlab does not apply), so its log-probabilities would be wrong")
    if not torch.allclose(padded_hidden.float(), hidden.float(), rtol=rtol, atol=atol):
        return "its hidden states change when the input is left-padded, so rewards would depend on padding"
    return None
