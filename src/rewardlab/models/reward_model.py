"""The GRM reward model: a whole causal LM plus a reward head on its final hidden states.

The LM head is kept (the GRM text-generation regulariser scores responses with it), but the
forward pass never computes vocabulary logits: it runs the decoder body only and reads the
reward at the last non-padding token. Log-probabilities are computed separately, and only at
the token positions a regulariser asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rewardlab.models.forward import (
    LogitTransform,
    final_hidden_states,
    last_token_indices,
    logit_transform,
    text_hidden_size,
    unwrap_causal_lm,
)
from rewardlab.models.heads import HeadConfig, RewardHead
from rewardlab.models.packed import PackedSequences, packed_hidden_states
from rewardlab.models.registry import SOURCE_NAME_ATTR, load_backbone

LOGPROB_CHUNK_TOKENS = 1024


@dataclass
class RewardOutput:
    """`rewards` [B] float32; `hidden_states` [B, T, H] final (post-norm) hidden states."""

    rewards: torch.Tensor
    hidden_states: torch.Tensor


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
