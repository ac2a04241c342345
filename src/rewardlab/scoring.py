"""The one scoring path: render (or tokenize) once, batch by length, read rewards.

`rewardlab score`, `rewardlab eval`, the reward server and evaluation during training all score
through `RewardScorer`, so the same conversation gets the same reward everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rewardlab.data.pair import Message, PreferencePair
from rewardlab.data.render import render, render_batch, render_text
from rewardlab.models.frozen_cache import FrozenLayerCache, forward_packed_reusing
from rewardlab.models.packed import group_shared_prefixes, pack_groups, packing_unsupported_reason
from rewardlab.models.reward_model import RewardModel
from rewardlab.errors import RewardlabError

DEFAULT_MAX_LENGTH = 1024
DEFAULT_SCORING_TRUNCATION = "prompt-left"


class UnscorableError(RewardlabError, ValueError):
    """A conversation that cannot be scored (its response alone exceeds the length limit)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class RewardScorer:
    """Scores conversations or already-rendered texts with a `RewardModel`.

    With ``packing`` (the default, where the model supports it) a batch is one padding-free row
    and sequences that share a prefix (e.g. several responses to one prompt) compute it once
    (see `rewardlab.models.packed`). Otherwise sequences are sorted by length and padded only to
    the longest in their batch. Both give the same rewards. Scoring runs without gradients and
    with dropout off.

    ``frozen_cache`` (packing only) lets models trained from one base with the same frozen lower
    layers (``trainable_top_layers`` in their settings) share those layers' outputs when they score
    the same conversations, as the repro's models do; the cache checks the weights really match.
    """

    def __init__(
        self,
        model: RewardModel,
        tokenizer: Any,
        settings: dict[str, Any] | None = None,
        *,
        batch_size: int = 16,
        device: torch.device | str | None = None,
        packing: bool = True,
        frozen_cache: FrozenLayerCache | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = dict(settings or {})
        self.max_length = int(self.settings.get("max_length") or DEFAULT_MAX_LENGTH)
        self.truncation = DEFAULT_SCORING_TRUNCATION
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; load models through rewardlab.models.registry")
        self.packing = packing and packing_unsupported_reason(model.causal_lm) is None
        self.frozen_cache = None
        top = self.settings.get("trainable_top_layers")
        if (frozen_cache is not None and self.packing and isinstance(top, int) and not self.settings.get("lora")
                and frozen_cache.bind_below_top(model.causal_lm, top)):
            self.frozen_cache = frozen_cache

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 16,
        frozen_cache: FrozenLayerCache | None = None,
    ) -> "RewardScorer":
        """Load a saved rewardlab reward model folder (strictly checked) for scoring."""
        from rewardlab.models.persistence import load_reward_model

        target = torch.device(device) if device is not None else default_device()
        if dtype is None and target.type == "cuda" and torch.cuda.is_bf16_supported():
            dtype = torch.bfloat16
        model, tokenizer, settings = load_reward_model(path, device=target, dtype=dtype)
        model.eval()
        return cls(model, tokenizer, settings, batch_size=batch_size, device=target, frozen_cache=frozen_cache)

    # --- encoding -------------------------------------------------------------------------------

    def encode_text(self, text: str) -> list[int]:
        """Token ids of an already-rendered text (no special tokens added: the text has them)."""
        return render_text(self.tokenizer, text)

    def encode_conversation(self, prompt: Sequence[Message], response: str) -> list[int] | None:
        """Token ids of prompt + response through the one rendering path; None if it cannot fit."""
        rendered = render(
            self.tokenizer, prompt, response, max_length=self.max_length, truncation=self.truncation
        )
        return None if rendered is None else rendered.input_ids

    # --- scoring --------------------------------------------------------------------------------

    @torch.inference_mode()
    def score_token_ids(
        self, sequences: Sequence[Sequence[int]], batch_size: int | None = None, *, progress: str | None = None
    ) -> list[float]:
        """Rewards for token-id sequences, in input order; ``progress`` names a progress bar to show."""
        if any(len(seq) == 0 for seq in sequences):
            raise ValueError("cannot score an empty token sequence")
        size = batch_size or self.batch_size
        was_training = self.model.training
        self.model.eval()
        try:
            if self.packing:
                return self._score_packed(sequences, size, progress)
            return self._score_padded(sequences, size, progress)
        finally:
            self.model.train(was_training)

    def _score_padded(self, sequences: Sequence[Sequence[int]], size: int, progress: str | None) -> list[float]:
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
        rewards = [0.0] * len(sequences)
        pad_id = self.tokenizer.pad_token_id
        starts = range(0, len(order), size)
        for start in tqdm(starts, desc=progress, unit="batch", disable=progress is None, dynamic_ncols=True):
            batch_idx = order[start : start + size]
            longest = len(sequences[batch_idx[0]])
            input_ids = torch.full((len(batch_idx), longest), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch_idx), longest), dtype=torch.long)
            for row, i in enumerate(batch_idx):
                seq = sequences[i]
                input_ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
                attention_mask[row, : len(seq)] = 1
            out = self.model(input_ids.to(self.device), attention_mask.to(self.device))
            for row, value in zip(batch_idx, out.rewards.float().cpu().tolist()):
                rewards[row] = float(value)
        return rewards

    def _score_packed(self, sequences: Sequence[Sequence[int]], size: int, progress: str | None) -> list[float]:
        """Up to ``size`` sequences per padding-free row; shared prefixes computed once."""
        longest = max((len(seq) for seq in sequences), default=0)
        groups = group_shared_prefixes(sequences, max_group_size=size, max_group_tokens=max(2048, longest))
        groups.sort(key=lambda group: sum(len(sequences[i]) for i in group), reverse=True)
        batches: list[list[list[int]]] = []
        for group in groups:
            if batches and sum(len(g) for g in batches[-1]) + len(group) <= size:
                batches[-1].append(group)
            else:
                batches.append([group])
        rewards = [0.0] * len(sequences)
        for batch in tqdm(batches, desc=progress, unit="batch", disable=progress is None, dynamic_ncols=True):
            packed = pack_groups([[list(sequences[i]) for i in group] for group in batch]).to(self.device)
            keys = [tuple(tuple(sequences[i]) for i in group) for group in batch] if self.frozen_cache else []
            out = forward_packed_reusing(self.model, packed, keys, self.frozen_cache)
            values = out.rewards.float().cpu().tolist()
            for index, value in zip((i for group in batch for i in group), values):
                rewards[index] = float(value)
        return rewards

    def score_texts(self, texts: Sequence[str], batch_size: int | None = None) -> list[float]:
        """Rewards for already-rendered texts (the caller applied the chat template)."""
        return self.score_token_ids([self.encode_text(t) for t in texts], batch_size)

    def score_conversations(
        self,
        prompts: Sequence[Sequence[Message]],
        responses: Sequence[str],
        batch_size: int | None = None,
        *,
        progress: str | None = None,
    ) -> list[float]:
        """Rewards for (prompt messages, assistant response) pairs, rendered with the model's template."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rendered = render_batch(
            self.tokenizer, prompts, responses, max_length=self.max_length, truncation=self.truncation
        )
        for index, item in enumerate(rendered):
            if item is None:
                raise UnscorableError(
                    f"conversation {index}: the response alone is longer than max_length={self.max_length} tokens"
                )
        return self.score_token_ids([item.input_ids for item in rendered], batch_size, progress=progress)

    def score_pairs(
        self, pairs: Sequence[PreferencePair], batch_size: int | None = None, *, progress: str | None = None
    ) -> tuple[list[float], list[float]]:
        """Rewards of the chosen and the rejected response of each pair, scored in one sorted pass."""
        prompts = [p.prompt for p in pairs] * 2
        responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        scores = self.score_conversations(prompts, responses, batch_size, progress=progress)
        return scores[: len(pairs)], scores[len(pairs) :]


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Fraction of pairs with reward(chosen) strictly greater than reward(rejected); ties are wrong."""
    if not chosen:
        return float("nan")
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
