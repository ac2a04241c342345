"""Padding-free, prefix-sharing forward passes for the reward model.

Several token sequences are laid out in one row with no padding. Sequences that start with the
same tokens form a *group*: the shared prefix is stored and computed once, then each sequence's
remaining tokens (its *branch*) follow. Inside a group a token attends causally to the shared
prefix and to earlier tokens of its own branch only, and its position id continues from the end
of the prefix, so every token sees exactly what it would see in a separate pass: the hidden
states, rewards and log-probabilities equal those of the padded path (to float tolerance).

    group = [prefix (s tokens)][branch 1 (len1 - s tokens)][branch 2 (len2 - s tokens)] ...
    positions 0 .. s-1,         s .. len1-1,                s .. len2-1

Attention runs once per group (one `scaled_dot_product_attention` call with that group's small
boolean mask), never over the whole row, so attention cost grows with the groups' lengths only.
The model's attention implementation is switched to ``rewardlab_segments``, which behaves exactly
like ``sdpa`` unless a packed layout is passed, so the padded path is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from rewardlab.models.layers import decoder_span

SEGMENT_ATTENTION = "rewardlab_segments"
LAYOUT_KWARG = "rewardlab_packed_layout"
# Decoder families whose packed outputs are tested equal to padded passes (tests/models/test_models_packed.py and
# the architecture matrix, tests/models/test_models_architectures.py). Sliding-window layers are supported.
PACKING_MODEL_TYPES = (
    "llama", "mistral", "ministral", "qwen2", "qwen3", "gemma", "gemma3_text", "phi3", "granite", "cohere",
    "cohere2", "olmo2", "olmo3",
)
_UNSUPPORTED_ATTENTION_KWARGS = ("softcap", "position_bias", "s_aux")
# Set while a packed row runs: the layout, not a [N, N] mask, decides what each token sees.
_PACKED_PASS: ContextVar[bool] = ContextVar("rewardlab_packed_pass", default=False)


class PackingUnsupportedError(ValueError):
    """The model cannot run packed sequences; the message says why (callers fall back to padding)."""


@dataclass(frozen=True)
class GroupSpan:
    """One group's tokens ``[start, start + length)`` in the packed row; ``mask`` None means plain causal.

    ``positions`` are the group's position ids (a sliding window counts distances in positions).
    """

    start: int
    length: int
    mask: torch.Tensor | None
    positions: torch.Tensor | None = None

    def windowed_mask(self, window: int) -> torch.Tensor | None:
        """The mask with a sliding window: a token sees keys fewer than ``window`` positions back."""
        if self.length <= window:
            return self.mask  # no two tokens of the group are that far apart
        if self.positions is None:
            raise PackingUnsupportedError("a sliding window needs the group's positions (pack with pack_groups)")
        mask = self.mask if self.mask is not None else torch.ones(
            self.length, self.length, dtype=torch.bool, device=self.positions.device).tril()
        distance = self.positions[:, None] - self.positions[None, :]
        return mask & (distance < window)


@dataclass
class PackedLayout:
    """What the attention function needs: the groups, in row order, covering the row exactly."""

    groups: list[GroupSpan]
    _window_masks: dict[int, list[torch.Tensor | None]] = field(default_factory=dict, repr=False, compare=False)

    def masks(self, window: int | None) -> list[torch.Tensor | None]:
        """Each group's mask, cut to a sliding ``window`` if given (built once per window, shared by layers)."""
        if window is None:
            return [span.mask for span in self.groups]
        if window not in self._window_masks:
            self._window_masks[window] = [span.windowed_mask(window) for span in self.groups]
        return self._window_masks[window]

    def to(self, device: torch.device | str) -> "PackedLayout":
        return PackedLayout([GroupSpan(g.start, g.length, None if g.mask is None else g.mask.to(device),
                                       None if g.positions is None else g.positions.to(device))
                             for g in self.groups])


@dataclass
class PackedSequences:
    """Sequences packed into one padding-free row (see the module docstring).

    Sequence ``j`` is the j-th sequence in the order the groups listed them. ``last_index[j]`` is
    the row index of its last token (where its reward is read). The three ``response_*`` tensors
    list, for every response token (``t >= response_start``) of every sequence that has a
    response start, the row index of the token, of the hidden state that predicts it (token
    ``t - 1`` of the same sequence) and the sequence it belongs to.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    layout: PackedLayout
    last_index: torch.Tensor
    response_target_index: torch.Tensor
    response_predictor_index: torch.Tensor
    response_owner: torch.Tensor
    sequence_lengths: list[int] = field(default_factory=list)

    @property
    def num_sequences(self) -> int:
        return int(self.last_index.numel())

    @property
    def num_tokens(self) -> int:
        """Tokens actually run through the model (shared prefixes counted once)."""
        return int(self.input_ids.shape[1])

    @property
    def sequence_tokens(self) -> int:
        """Tokens of all sequences as if each were run on its own (what a padded batch holds unpadded)."""
        return sum(self.sequence_lengths)

    def renumbered(self, order: Sequence[int]) -> "PackedSequences":
        """The same row with sequences renumbered: new sequence ``k`` is old sequence ``order[k]``."""
        if sorted(order) != list(range(self.num_sequences)):
            raise ValueError(f"order must be a permutation of 0..{self.num_sequences - 1}")
        new_number = torch.empty(len(order), dtype=torch.long)
        new_number[torch.tensor(list(order), dtype=torch.long)] = torch.arange(len(order))
        return PackedSequences(
            self.input_ids, self.position_ids, self.layout, self.last_index[list(order)],
            self.response_target_index, self.response_predictor_index,
            new_number.to(self.response_owner.device)[self.response_owner],
            [self.sequence_lengths[i] for i in order],
        )

    def to(self, device: torch.device | str) -> "PackedSequences":
        return PackedSequences(
            self.input_ids.to(device), self.position_ids.to(device), self.layout.to(device),
            self.last_index.to(device), self.response_target_index.to(device),
            self.response_predictor_index.to(device), self.response_owner.to(device), list(self.sequence_lengths),
        )


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Number of leading tokens all sequences share."""
    shortest = min(len(seq) for seq in sequences)
    first = sequences[0]
    for index in range(shortest):
        token = first[index]
        if any(seq[index] != token for seq in sequences[1:]):
            return index
    return shortest


def _group_mask(prefix: int, branch_lengths: Sequence[int]) -> torch.Tensor | None:
    """[L, L] boolean mask: causal, and a branch never sees another branch. None if plain causal suffices."""
    if sum(1 for n in branch_lengths if n > 0) <= 1:
        return None
    branch_of = [torch.full((prefix,), -1, dtype=torch.long)]
    branch_of += [torch.full((n,), j, dtype=torch.long) for j, n in enumerate(branch_lengths)]
    owner = torch.cat(branch_of)
    length = owner.numel()
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    visible = (owner[None, :] == -1) | (owner[None, :] == owner[:, None])
    return causal & visible


def pack_groups(
    groups: Sequence[Sequence[Sequence[int]]],
    response_starts: Sequence[Sequence[int | None]] | None = None,
) -> PackedSequences:
    """Pack groups of token sequences; each group's common prefix is computed once.

    ``response_starts`` (same nesting as ``groups``) marks, per sequence, where the tokens whose
    log-probabilities a regularizer needs begin (None: that sequence needs none).
    """
    if not groups:
        raise ValueError("nothing to pack: no groups given")
    ids: list[int] = []
    positions: list[int] = []
    spans: list[GroupSpan] = []
    last_index: list[int] = []
    targets: list[int] = []
    predictors: list[int] = []
    owners: list[int] = []
    lengths: list[int] = []
    for group_number, group in enumerate(groups):
        if not group:
            raise ValueError(f"group {group_number} has no sequences")
        for member, seq in enumerate(group):
            if len(seq) == 0:
                raise ValueError(f"group {group_number}, sequence {member} is empty; cannot read a reward from it")
        starts = response_starts[group_number] if response_starts is not None else [None] * len(group)
        if len(starts) != len(group):
            raise ValueError(f"group {group_number}: {len(group)} sequences but {len(starts)} response starts")
        group_start = len(ids)
        prefix = common_prefix_length(group) if len(group) > 1 else len(group[0])
        ids.extend(group[0][:prefix])
        positions.extend(range(prefix))
        branch_lengths = []
        for seq, response_start in zip(group, starts):
            branch_start = len(ids)
            branch = seq[prefix:]
            ids.extend(branch)
            positions.extend(range(prefix, len(seq)))
            branch_lengths.append(len(branch))

            def row_of(t: int, branch_start: int = branch_start) -> int:
                return group_start + t if t < prefix else branch_start + t - prefix

            sequence = len(lengths)
            lengths.append(len(seq))
            last_index.append(row_of(len(seq) - 1))
            if response_start is not None:
                if not 1 <= response_start <= len(seq):
                    raise ValueError(f"group {group_number}: response start {response_start} outside 1..{len(seq)}")
                for t in range(response_start, len(seq)):
                    targets.append(row_of(t))
                    predictors.append(row_of(t - 1))
                    owners.append(sequence)
        spans.append(GroupSpan(group_start, len(ids) - group_start, _group_mask(prefix, branch_lengths),
                               torch.tensor(positions[group_start:], dtype=torch.long)))
    return PackedSequences(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        layout=PackedLayout(spans),
        last_index=torch.tensor(last_index, dtype=torch.long),
        response_target_index=torch.tensor(targets, dtype=torch.long),
        response_predictor_index=torch.tensor(predictors, dtype=torch.long),
        response_owner=torch.tensor(owners, dtype=torch.long),
        sequence_lengths=lengths,
    )


def group_shared_prefixes(
    sequences: Sequence[Sequence[int]],
    *,
    max_group_size: int,
    max_group_tokens: int = 2048,
    min_shared_tokens: int = 16,
) -> list[list[int]]:
    """Group sequence indices so that each group's common prefix is worth computing once.

    Sequences are sorted by their tokens, so those sharing a long prefix (e.g. best-of-N responses
    to one prompt) are neighbours. A sequence joins the current group if it shares at least
    ``min_shared_tokens`` with the previous one and the tokens saved by the group do not shrink
    (``n · new_prefix >= (n - 1) · old_prefix``). Groups stay within ``max_group_size`` sequences
    and ``max_group_tokens`` packed tokens (their attention mask is dense); a sequence longer than
    that still forms a group of its own.
    """
    if max_group_size < 1:
        raise ValueError(f"max_group_size must be at least 1, got {max_group_size}")
    order = sorted(range(len(sequences)), key=lambda i: list(sequences[i]))
    groups: list[list[int]] = []
    prefix = 0  # the current group's common prefix length
    for index in order:
        seq = sequences[index]
        if groups:
            group = groups[-1]
            shared = min(prefix, common_prefix_length([sequences[group[-1]], seq]))
            packed_length = shared + sum(len(sequences[i]) - shared for i in group) + len(seq) - shared
            saves_more = len(group) * shared >= (len(group) - 1) * prefix
            if (shared >= min_shared_tokens and saves_more and len(group) < max_group_size
                    and packed_length <= max_group_tokens):
                group.append(index)
                prefix = shared
                continue
        groups.append([index])
        prefix = len(seq)
    return groups


# --- attention ----------------------------------------------------------------------------------


def segment_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """``sdpa`` attention, or, when a packed layout is passed, one SDPA call per group.

    A ``sliding_window`` (passed by sliding-window layers) limits each group's mask by position
    distance, exactly as the padded path's sliding-window mask does.
    """
    layout: PackedLayout | None = kwargs.pop(LAYOUT_KWARG, None)
    if layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    present = [name for name in _UNSUPPORTED_ATTENTION_KWARGS if kwargs.get(name) is not None]
    if present:
        raise PackingUnsupportedError(f"packed attention does not support {', '.join(present)}")
    if query.shape[0] != 1:
        raise ValueError(f"packed attention expects one packed row, got a batch of {query.shape[0]}")
    window = kwargs.get("sliding_window")
    repeats = getattr(module, "num_key_value_groups", 1)
    if repeats > 1:
        key, value = repeat_kv(key, repeats), repeat_kv(value, repeats)
    # split, not slicing: its backward is one concatenation, while each slice's backward would
    # scatter into a zero tensor of the full row
    lengths = [span.length for span in layout.groups]
    masks = layout.masks(None if window is None else int(window))
    outputs = [
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling,
                                       is_causal=mask is None)
        for mask, q, k, v in zip(masks, query.split(lengths, dim=2), key.split(lengths, dim=2),
                                 value.split(lengths, dim=2))
    ]
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return output.transpose(1, 2).contiguous(), None


def segment_attention_mask(*args, **kwargs) -> torch.Tensor | None:  # noqa: ANN002, ANN003 - sdpa_mask's signature
    """``sdpa``'s mask for padded batches; none for a packed row (the layout says what each token sees)."""
    if _PACKED_PASS.get():
        return None
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(SEGMENT_ATTENTION, segment_attention_forward)
AttentionMaskInterface.register(SEGMENT_ATTENTION, segment_attention_mask)


def packing_unsupported_reason(causal_lm: PreTrainedModel) -> str | None:
    """Why this causal LM cannot run packed sequences, or None if it can.

    Packing is limited to the families tested equal to the padded path (`PACKING_MODEL_TYPES`;
    multimodal wrappers are not among them); every other model trains and scores on padded
    batches, which give the same results, only slower.
    """
    config = causal_lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    model_type = getattr(config, "model_type", None)
    if getattr(text_config, "attn_logit_softcapping", None) is not None:
        return "the model soft-caps attention logits, which packed attention does not implement"
    if model_type not in PACKING_MODEL_TYPES:
        return f"model type {model_type!r} is not one of the tested families {', '.join(PACKING_MODEL_TYPES)}"
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in ("sdpa", SEGMENT_ATTENTION):
        return f"attention implementation {implementation!r} (packing builds on 'sdpa')"
    layer_types = getattr(text_config, "layer_types", None) or []
    if any(kind not in ("full_attention", "sliding_attention") for kind in layer_types):
        return f"the model has attention layers of types {sorted(set(layer_types))}, not only full or sliding"
    return None


def enable_segment_attention(causal_lm: PreTrainedModel) -> None:
    """Switch the model to ``rewardlab_segments`` attention (same results as sdpa on padded batches)."""
    reason = packing_unsupported_reason(causal_lm)
    if reason is not None:
        raise PackingUnsupportedError(f"cannot pack sequences for {type(causal_lm).__name__}: {reason}")
    if causal_lm.config._attn_implementation != SEGMENT_ATTENTION:
        causal_lm.set_attn_implementation(SEGMENT_ATTENTION)
        if causal_lm.config._attn_implementation != SEGMENT_ATTENTION:
            raise PackingUnsupportedError(
                f"{type(causal_lm).__name__} did not accept a custom attention implementation")


def packed_hidden_states(
    causal_lm: PreTrainedModel,
    packed: PackedSequences,
    *,
    from_layer: int = 0,
    start_states: torch.Tensor | None = None,
    to_layer: int | None = None,
) -> torch.Tensor:
    """Hidden states [N, H] of the packed row from the decoder body (no logits).

    By default the final (post-norm) states of a full pass. ``to_layer=k`` stops after the first
    ``k`` layers (no final norm): the states layer ``k`` reads. ``from_layer=k`` with those
    ``start_states`` runs the rest; both halves together equal one full pass.
    """
    enable_segment_attention(causal_lm)
    if (from_layer == 0) != (start_states is None):
        raise ValueError("start_states are needed exactly when from_layer > 0")
    decoder = causal_lm.get_decoder()
    span = nullcontext() if from_layer == 0 and to_layer is None else decoder_span(
        decoder, from_layer, to_layer, apply_final_norm=to_layer is None,
        start_states=None if start_states is None else start_states[None])
    token = _PACKED_PASS.set(True)
    try:
        with span:
            output = decoder(
                input_ids=packed.input_ids,
                attention_mask=torch.ones_like(packed.input_ids),
                position_ids=packed.position_ids,
                use_cache=False,
                **{LAYOUT_KWARG: packed.layout},
            )
    finally:
        _PACKED_PASS.reset(token)
    return output.last_hidden_state[0]
