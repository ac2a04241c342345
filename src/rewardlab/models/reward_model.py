"""The GRM reward model: a whole causal LM plus a reward head on its final hidden states.

The LM head is kept (the GRM text-generation regulariser scores responses with it), but the
forward pass never computes vocabulary logits: it runs the decoder body only and reads the
reward at the last non-padding token. Log-probabilities are computed separately, and only at
the token positions a regulariser asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rewardlab.models.heads import HeadConfig, RewardHead
from rewardlab.models.packed import PackedSequences, packed_hidden_states
from rewardlab.models.registry import SOURCE_NAME_ATTR, load_backbone

LOGPROB_CHUNK_TOKENS = 1024


@dataclass
class RewardOutput:
    """`rewards` [B] float32; `hidden_states` [B, T, H] final (post-norm) hidden states."""

    rewards: torch.Tensor
    hidden_states: torch.Tensor


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


def _token_logprobs(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, transform: LogitTransform
) -> torch.Tensor:
    logits = transform.apply(lm_head(hidden).float())
    return -F.cross_entropy(logits, targets, reduction="none")


def sequence_logprobs(
    causal_lm: nn.Module,
    hidden_states: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> torch.Tensor:
    """Σ log π(token) over masked tokens, per row → [B] float32.

    The prediction for token t comes from hidden state t-1, so position 0 can never be a
    target; `summed_token_logprobs` explains how the LM head is applied.
    """
    if response_mask.shape != input_ids.shape or hidden_states.shape[:2] != input_ids.shape:
        raise ValueError(
            f"shape mismatch: hidden_states {tuple(hidden_states.shape)}, input_ids "
            f"{tuple(input_ids.shape)}, response_mask {tuple(response_mask.shape)}")
    mask = response_mask.bool()
    if bool(mask[:, 0].any()):
        raise ValueError("response_mask marks position 0, which has no preceding hidden state to predict it")
    rows, cols = mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        totals = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=hidden_states.device)
        return totals + hidden_states.sum() * 0.0  # keeps the graph connected for empty masks
    return summed_token_logprobs(
        causal_lm, hidden_states[rows, cols - 1], input_ids[rows, cols], rows, input_ids.shape[0],
        chunk_tokens=chunk_tokens,
    )


def summed_token_logprobs(
    causal_lm: nn.Module,
    predictors: torch.Tensor,
    targets: torch.Tensor,
    owners: torch.Tensor,
    num_sequences: int,
    *,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> torch.Tensor:
    """Σ log π(target) per owner → [num_sequences] float32, from the predicting hidden rows [M, H].

    Only these rows go through the LM head (with the family's logit scaling and soft-capping,
    see `LogitTransform`), in chunks of `chunk_tokens`, with float32 log-softmax; with gradients
    on, each chunk is recomputed in the backward pass instead of
    keeping its logits.
    """
    lm = unwrap_causal_lm(causal_lm)
    lm_head = lm.get_output_embeddings()
    transform = logit_transform(lm)
    totals = torch.zeros(num_sequences, dtype=torch.float32, device=predictors.device)
    if targets.numel() == 0:
        return totals + predictors.sum() * 0.0
    pieces = []
    for start in range(0, targets.numel(), chunk_tokens):
        hidden_chunk = predictors[start:start + chunk_tokens]
        target_chunk = targets[start:start + chunk_tokens]
        if torch.is_grad_enabled() and hidden_chunk.requires_grad:
            pieces.append(checkpoint(_token_logprobs, lm_head, hidden_chunk, target_chunk, transform,
                                     use_reentrant=False))
        else:
            pieces.append(_token_logprobs(lm_head, hidden_chunk, target_chunk, transform))
    return totals.index_add(0, owners, torch.cat(pieces))


class RewardModel(nn.Module):
    """Causal LM kept whole (LM head included; may be wrapped by PEFT) + a float32 reward head.

    `base_model` records where the backbone came from (alias, hub id or path), so a LoRA
    checkpoint can name the base it must be applied to; by default it is the name the backbone
    was loaded by through `registry.load_backbone`.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        head: HeadConfig | str = "mlp",
        *,
        base_model: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if isinstance(head, str):
            head = HeadConfig(type=head, hidden_size=text_hidden_size(unwrap_causal_lm(backbone)))
        elif head.hidden_size != text_hidden_size(unwrap_causal_lm(backbone)):
            raise ValueError(f"head hidden_size {head.hidden_size} does not match the backbone's "
                             f"{text_hidden_size(unwrap_causal_lm(backbone))}")
        self.head_config = head
        device = next(backbone.parameters()).device
        self.head = RewardHead(head).to(device=device, dtype=torch.float32)
        causal_lm = unwrap_causal_lm(backbone)
        self.base_model = (base_model or getattr(causal_lm, SOURCE_NAME_ATTR, None)
                           or getattr(causal_lm, "name_or_path", None) or "")

    @classmethod
    def from_base(
        cls, name_or_path: str, head: str = "mlp", *, dtype: torch.dtype | None = None
    ) -> tuple[RewardModel, PreTrainedTokenizerBase]:
        """Load a backbone by alias/hub id/path (see `registry.load_backbone`) and add a fresh head."""
        backbone, tokenizer = load_backbone(name_or_path, dtype=dtype)
        return cls(backbone, head, base_model=name_or_path), tokenizer

    @property
    def lm(self) -> nn.Module:
        """The backbone as held (PEFT wrapper when LoRA is on, e.g. for `disable_adapter()`)."""
        return self.backbone

    @property
    def causal_lm(self) -> PreTrainedModel:
        """The underlying transformers causal LM (inside the PEFT wrapper, if any)."""
        return unwrap_causal_lm(self.backbone)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> RewardOutput:
        """Rewards read at each row's last attended token; no vocabulary logits are computed."""
        hidden_states = final_hidden_states(self.backbone, input_ids, attention_mask)
        last = last_token_indices(attention_mask)
        pooled = hidden_states[torch.arange(hidden_states.shape[0], device=last.device), last]
        return RewardOutput(rewards=self.head(pooled).float(), hidden_states=hidden_states)

    def response_logprobs(
        self, hidden_states: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor
    ) -> torch.Tensor:
        """Summed log π of the tokens marked by `response_mask` ([B, T]) → [B] float32."""
        return sequence_logprobs(self.backbone, hidden_states, input_ids, response_mask)

    def forward_packed(
        self, packed: PackedSequences, lower_states: torch.Tensor | None = None, lower_layers: int = 0
    ) -> RewardOutput:
        """Rewards [S] of packed sequences (see `models.packed`); `hidden_states` is the row [N, H].

        Equal to `forward` on the same sequences padded, with shared prefixes computed once.
        ``lower_states`` are the row's outputs of the bottom ``lower_layers`` layers, already
        computed (frozen layers, `models/frozen_cache.py`): only the layers above them run.
        """
        hidden_states = packed_hidden_states(self.causal_lm, packed, from_layer=lower_layers, start_states=lower_states)
        rewards = self.head(hidden_states[packed.last_index]).float()
        return RewardOutput(rewards=rewards, hidden_states=hidden_states)

    def packed_response_logprobs(
        self, hidden_states: torch.Tensor, packed: PackedSequences, sequences: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed log π of each packed sequence's response tokens → [S] float32.

        `sequences` (indices) limits the work to those sequences; the others get 0.
        """
        owners = packed.response_owner
        targets, predictors = packed.response_target_index, packed.response_predictor_index
        if sequences is not None:
            keep = torch.isin(owners, sequences.to(owners.device))
            owners, targets, predictors = owners[keep], targets[keep], predictors[keep]
        return summed_token_logprobs(
            self.backbone, hidden_states[predictors], packed.input_ids[0, targets], owners, packed.num_sequences)
