"""A decoder's layer stack: finding it, counting its frozen lower layers, running only a span of it.

Running a span lets training skip the frozen lower layers once their outputs are known: the
outputs of layers ``[0, k)`` are computed once (`models/frozen_cache.py`) and every later pass runs
layers ``[k, L)`` and the final norm from them. Spans are used only for the families packing
supports (`models/packed.py`), whose layers return their hidden states as a tensor. The split is
exact: the same modules run on the same inputs, only in two calls (tested against one full pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

LAYER_LIST_NAMES = ("layers", "h", "blocks", "block")
FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_layer_norm")
_DROPOUT_CONFIG_NAMES = ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop")


def decoder_layers(decoder: nn.Module) -> nn.ModuleList:
    """The decoder's list of layers (``model.layers`` in Llama-style models)."""
    for name in LAYER_LIST_NAMES:
        candidate = getattr(decoder, name, None)
        if isinstance(candidate, nn.ModuleList):
            return candidate
    raise ValueError(f"cannot find the list of decoder layers in {type(decoder).__name__} "
                     f"(looked for attributes {LAYER_LIST_NAMES})")


def final_norm(decoder: nn.Module) -> nn.Module | None:
    """The norm applied after the last layer, if the decoder has one."""
    for name in FINAL_NORM_NAMES:
        candidate = getattr(decoder, name, None)
        if isinstance(candidate, nn.Module):
            return candidate
    return None


def frozen_lower_layer_count(causal_lm: nn.Module) -> int:
    """How many bottom decoder layers are frozen, with the embeddings frozen too (else 0).

    Their output depends on the input tokens alone, so it can be computed once and reused.
    """
    embeddings = causal_lm.get_input_embeddings()
    if any(p.requires_grad for p in embeddings.parameters()):
        return 0
    count = 0
    for layer in decoder_layers(causal_lm.get_decoder()):
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


def has_dropout(causal_lm: nn.Module) -> bool:
    """Whether the model's config turns on any dropout (then layer outputs are random in training)."""
    config = causal_lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return any(float(getattr(text_config, name, 0.0) or 0.0) > 0.0 for name in _DROPOUT_CONFIG_NAMES)


class _PassThrough(nn.Module):
    """Stands in for a decoder layer outside a span: returns the hidden states it is given."""

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003 - called like any decoder layer
        return args[0] if args else kwargs["hidden_states"]


class _StartStates(nn.Module):
    """Stands in for the layer just below a span: returns the states that layer would have output."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states  # a plain attribute, not a buffer: gradients flow back to the caller's tensor

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003 - called like any decoder layer
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape != self.states.shape:
            raise ValueError(f"start states have shape {tuple(self.states.shape)} but the decoder's hidden "
                             f"states have {tuple(hidden.shape)}")
        return self.states.to(hidden.dtype)


@contextmanager
def decoder_span(
    decoder: nn.Module,
    start: int,
    stop: int | None,
    *,
    apply_final_norm: bool,
    start_states: torch.Tensor | None = None,
) -> Iterator[None]:
    """Within the block, the decoder's forward runs layers ``[start, stop)`` only, with or without its final norm.

    The decoder's own forward still does everything else (rotary embeddings, masks, attention
    kwargs), so a span behaves exactly like that part of a full pass. Layers outside the span are
    replaced by pass-through modules, so every layer keeps its index (families that alternate
    sliding and full attention look up each layer's mask by index). With ``start > 0``,
    ``start_states`` (``[batch, tokens, hidden]``, what layer ``start`` reads) replace what the
    decoder computed from its inputs, so input scaling (Granite's ``embedding_multiplier``) is never
    applied to them; the decoder must still be given ``input_ids`` (or embeddings) of that shape.
    Not thread-safe: the layer list is swapped on the module for the duration of the block.
    """
    layers = decoder_layers(decoder)
    count = len(layers)
    stop = count if stop is None else stop
    if not 0 <= start <= stop <= count:
        raise ValueError(f"layer span [{start}, {stop}) is not within the decoder's {count} layers")
    if (start > 0) != (start_states is not None):
        raise ValueError("start_states are needed exactly when the span starts above layer 0")
    layers_name = next(name for name in LAYER_LIST_NAMES if getattr(decoder, name, None) is layers)
    norm = final_norm(decoder)
    norm_name = None if norm is None else next(
        name for name in FINAL_NORM_NAMES if getattr(decoder, name, None) is norm)
    replaced: list[nn.Module] = []
    for index, layer in enumerate(layers):
        if start <= index < stop:
            replaced.append(layer)
        elif index == start - 1:
            replaced.append(_StartStates(start_states))
        else:
            replaced.append(_PassThrough())
    setattr(decoder, layers_name, nn.ModuleList(replaced))
    if norm_name is not None and not apply_final_norm:
        setattr(decoder, norm_name, nn.Identity())
    try:
        yield
    finally:
        setattr(decoder, layers_name, layers)
        if norm_name is not None:
            setattr(decoder, norm_name, norm)
