"""How far reward training moved a model's final hidden states from the base model's.

Two measures on the held-out chosen conversations, both from one forward pass per model:

* the language-model check (`lm_check`): NLL per chosen-response token under the model's own LM
  head, against the base model's;
* linear CKA (Kornblith et al. 2019) between the model's and the base model's final (post-norm)
  hidden states, on the same tokens: the states that predict the response tokens (what the LM head
  reads) and each conversation's last-token state (what the reward head reads). 1 means the
  representation is the base model's up to rotation and isotropic scaling; lower means it moved.

GRM's claim is that its regularizer keeps the hidden states from being distorted by the reward
loss; these numbers say whether there was a distortion to prevent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rewardlab.models.frozen_cache import FrozenLayerCache
from rewardlab.repro.lm_check import ChosenPass, held_out_pass


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same ``n`` examples: ``x`` [n, d1], ``y`` [n, d2].

    With column-centred X and Y: ‖YᵀX‖²_F / (‖XᵀX‖_F · ‖YᵀY‖_F), computed in float64 in feature
    space (cost d², not n²). Raises ValueError for mismatched or constant inputs.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs [n, d] tensors with the same n, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 examples")
    xc = x.double() - x.double().mean(0, keepdim=True)
    yc = y.double() - y.double().mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    norms = torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)
    if float(norms) == 0.0:
        raise ValueError("linear_cka is undefined for a constant representation")
    return float(cross / norms)


@dataclass
class Drift:
    """One model's drift from the base model on the held-out chosen conversations."""

    nll_per_token: float
    nll_change: float  # model − base, nat per response token
    cka_response: float  # on the states that predict response tokens
    cka_last: float  # on the last-token states the reward head reads
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"nll_per_token": self.nll_per_token, "nll_change": self.nll_change, "cka_response": self.cka_response,
                "cka_last": self.cka_last, "tokens": self.tokens}


def compare_to_base(model_pass: ChosenPass, base_pass: ChosenPass) -> Drift:
    """The drift measures of ``model_pass`` against ``base_pass`` (both run with ``keep_states=True``)."""
    if model_pass.response_states is None or base_pass.response_states is None:
        raise ValueError("both passes must keep their states")
    if model_pass.tokens != base_pass.tokens:
        raise ValueError(f"the passes cover different tokens ({model_pass.tokens} vs {base_pass.tokens})")
    return Drift(
        nll_per_token=model_pass.nll_per_token,
        nll_change=model_pass.nll_per_token - base_pass.nll_per_token,
        cka_response=linear_cka(model_pass.response_states, base_pass.response_states),
        cka_last=linear_cka(model_pass.last_states, base_pass.last_states),
        tokens=model_pass.tokens,
    )


def base_pass(base_model: str, heldout_file: Path, max_length: int, *, device: str | None = None) -> ChosenPass:
    """The base model's pass over the held-out chosen conversations, states kept: the drift reference."""
    return held_out_pass(None, base_model=base_model, heldout_file=heldout_file, max_length=max_length,
                         trainable_top_layers=None, device=device, keep_states=True)


def model_drift(
    model_dir: Path,
    reference: ChosenPass,
    heldout_file: Path,
    max_length: int,
    *,
    trainable_top_layers: int | None,
    device: str | None = None,
    frozen_cache: FrozenLayerCache | None = None,
) -> Drift:
    """Drift of the saved model in ``model_dir`` from the base pass ``reference``."""
    result = held_out_pass(model_dir, heldout_file=heldout_file, max_length=max_length,
                           trainable_top_layers=trainable_top_layers, device=device, frozen_cache=frozen_cache,
                           keep_states=True)
    return compare_to_base(result, reference)
