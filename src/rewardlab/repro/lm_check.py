"""A mechanism check beside accuracy: did reward training move the language model?

GRM's regularizer is meant to keep reward training from degrading the hidden states that the LM
head reads. So for the base model and for every trained model this measures the mean negative
log-likelihood per token of the held-out pairs' chosen responses under the model's own LM head,
rendered exactly as in training. If plain BT leaves it where the base model had it, there was no
degradation for the regularizer to prevent at this scale. Results are stored in
``evals/lm-nll.json``, keyed by fingerprints of the model files and of the held-out data, so a
rerun reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rewardlab.data.loaders import load_pairs
from rewardlab.errors import ConfigError
from rewardlab.files import read_json_store, write_text_atomic
from rewardlab.models.frozen_cache import FrozenLayerCache, forward_packed_reusing
from rewardlab.models.packed import pack_groups
from rewardlab.models.reward_model import RewardModel
from rewardlab.repro.evaluation import EVALS_FOLDER, model_fingerprint
from rewardlab.train.batches import TokenizedPair, tokenize_pairs

LM_NLL_FILE = "lm-nll.json"
BASE_MODEL = "base"


@dataclass
class ChosenPass:
    """One pass over held-out chosen responses: their NLL and, if kept, the final hidden states read.

    ``response_states`` [T, H] are the states that predict the response tokens (what the LM head
    reads for the NLL); ``last_states`` [N, H] are each sequence's last-token state (what the
    reward head reads). Both are float32 on the CPU, in item order.
    """

    nll_per_token: float
    tokens: int
    response_states: torch.Tensor | None = None
    last_states: torch.Tensor | None = None


def chosen_response_pass(
    model: RewardModel,
    items: Sequence[TokenizedPair],
    *,
    batch_size: int = 8,
    frozen_cache: FrozenLayerCache | None = None,
    keep_states: bool = False,
) -> ChosenPass:
    """NLL per chosen-response token (nat) under the model's own LM head, optionally keeping the states.

    Only the chosen sequences run, packed without padding; with ``frozen_cache`` (bound to this
    model) the frozen lower layers' outputs are reused.
    """
    total, tokens = 0.0, 0
    response_parts: list[torch.Tensor] = []
    last_parts: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                packed = pack_groups([[item.chosen_ids] for item in chunk], [[item.chosen_start] for item in chunk])
                packed = packed.to(next(model.parameters()).device)
                keys = [(tuple(item.chosen_ids),) for item in chunk] if frozen_cache else []
                hidden = forward_packed_reusing(model, packed, keys, frozen_cache).hidden_states
                total -= float(model.packed_response_logprobs(hidden, packed).sum())
                tokens += sum(len(item.chosen_ids) - item.chosen_start for item in chunk)
                if keep_states:
                    response_parts.append(hidden[packed.response_predictor_index].float().cpu())
                    last_parts.append(hidden[packed.last_index].float().cpu())
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ConfigError("no chosen-response tokens to measure: every held-out pair was dropped at rendering")
    if not keep_states:
        return ChosenPass(total / tokens, tokens)
    return ChosenPass(total / tokens, tokens, torch.cat(response_parts), torch.cat(last_parts))


def chosen_response_nll(
    model: RewardModel,
    items: Sequence[TokenizedPair],
    *,
    batch_size: int = 8,
    frozen_cache: FrozenLayerCache | None = None,
) -> tuple[float, int]:
    """Mean NLL per chosen-response token (nat) and the number of those tokens (see `chosen_response_pass`)."""
    result = chosen_response_pass(model, items, batch_size=batch_size, frozen_cache=frozen_cache)
    return result.nll_per_token, result.tokens


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def held_out_items(tokenizer: Any, heldout_file: Path, max_length: int) -> list[TokenizedPair]:
    """The held-out pairs rendered as in training (over-long pairs dropped)."""
    return tokenize_pairs(tokenizer, load_pairs(str(heldout_file)), max_length=max_length, truncation="drop")


def held_out_pass(
    model_dir: Path | None,
    *,
    base_model: str | None = None,
    heldout_file: Path,
    max_length: int,
    trainable_top_layers: int | None,
    device: str | None = None,
    frozen_cache: FrozenLayerCache | None = None,
    keep_states: bool = False,
) -> ChosenPass:
    """`chosen_response_pass` of a saved model folder (or the base model if ``model_dir`` is None) over the held-out
    chosen conversations; the frozen layers' outputs come from ``frozen_cache`` where the model has frozen layers."""
    from rewardlab.evaluate.scorers import pick_device
    from rewardlab.models.persistence import load_reward_model

    target = pick_device(device)
    if model_dir is None:
        if base_model is None:
            raise ValueError("held_out_pass needs a model folder or a base model")
        model, tokenizer = RewardModel.from_base(base_model, head="linear")
        model = model.to(target)
    else:
        model, tokenizer, _ = load_reward_model(model_dir, device=target)
    cache = frozen_cache if frozen_cache is not None and frozen_cache.bind_below_top(model.causal_lm,
                                                                                      trainable_top_layers) else None
    return chosen_response_pass(model, held_out_items(tokenizer, heldout_file, max_length), frozen_cache=cache,
                                keep_states=keep_states)


def held_out_lm_nll(
    name: str,
    model_dir: Path | None,
    *,
    base_model: str,
    heldout_file: Path,
    max_length: int,
    trainable_top_layers: int | None,
    out_dir: Path,
    device: str | None = None,
    frozen_cache: FrozenLayerCache | None = None,
) -> dict[str, Any]:
    """``{"nll_per_token", "tokens", "reused"}`` for a trained model folder, or the base model if ``model_dir`` is None."""
    store_path = out_dir / EVALS_FOLDER / LM_NLL_FILE
    stored = read_json_store(store_path)
    key = {
        "model": f"{base_model}:{max_length}" if model_dir is None else model_fingerprint(model_dir, max_length),
        "data": _file_digest(heldout_file),
    }
    entry = stored.get(name)
    if isinstance(entry, dict) and entry.get("key") == key:
        return {"nll_per_token": entry["nll_per_token"], "tokens": entry["tokens"], "reused": True}

    result = held_out_pass(model_dir, base_model=base_model, heldout_file=heldout_file, max_length=max_length,
                           trainable_top_layers=trainable_top_layers, device=device, frozen_cache=frozen_cache)
    nll, tokens = result.nll_per_token, result.tokens
    stored[name] = {"key": key, "nll_per_token": nll, "tokens": tokens}
    write_text_atomic(store_path, json.dumps(stored, indent=1) + "\n")
    return {"nll_per_token": nll, "tokens": tokens, "reused": False}
