"""A decoder's layer stack: finding it, counting its frozen lower layers, running only a span of it.

Running a span lets training skip the frozen lower layers once their outputs are known: the
outputs of layers ``[0, k)`` are computed once (`models/frozen_cache.py`) and every later pass runs
layers ``[k, L)`` and the final norm from them. The split is exact: the same modules run on the
same inputs, only in two calls (tested against one full pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def decoder_span(decoder: nn.Module, start: int, stop: int | None, *, apply_final_norm: bool) -> Iterator[None]:
    """Within the block, the decoder's forward runs layers ``[start, stop)`` only, with or without its final norm.

    The decoder's own forward still does everything else (rotary embeddings, masks, attention
    kwargs), so a span behaves exactly like that part of a full pass. Not thread-safe: the layer
    list is swapped on the module for the duration of the block.
    """
    layers = decoder_layers(decoder)
    layers_name = next(name for name in LAYER_LIST_NAMES if getattr(decoder, name, None) is layers)
    norm = final_norm(decoder)
    norm_name = None if norm is None else next(name for name in FINAL_NORM_NAMES if getattr(decoder, name, None) is norm)
    setattr(decoder, layers_name, nn.ModuleList(list(layers)[start:stop]))
    if norm_name is not None and not apply_final_norm:
        setattr(decoder, norm_name, nn.Identity())
    try:
        yield
    finally:
        setattr(decoder, layers_name, layers)
        if norm_name is not None:
            setattr(decoder, norm_name, norm)
