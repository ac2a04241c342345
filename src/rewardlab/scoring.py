"""The one scoring path: render (or tokenize) once, batch by length, read rewards.

`rewardlab score`, `rewardlab eval`, the reward server and evaluation during training all score
through `RewardScorer`, so the same conversation gets the same reward everywhere.

Over-length inputs follow the model's saved ``truncation`` setting (the one it was trained with):

* ``drop``: a pair (or an evaluation candidate) longer than ``max_length`` is not scored; its
  rewards are NaN and it is counted as dropped;
* ``prompt-left``: the oldest prompt tokens are cut (a leading BOS is kept) and the response is kept
  whole; it is counted as cut. If the response alone is too long it cannot fit and is dropped.

A single conversation scored on its own (`score_conversations`: ``rewardlab score --prompt``, the
server) has nothing to be dropped from, so it is always cut from the left of the prompt, whatever
the setting, and counted as cut; a response longer than ``max_length`` by itself is refused
(`UnscorableError`). `RewardScorer.truncation_counts` counts cut and dropped conversations over the
scorer's lifetime, e.g. for a server's metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rewardlab.data.pair import Message, PreferencePair
from rewardlab.data.render import TRUNCATION_POLICIES, Rendered, render_batch, render_text
from rewardlab.models.frozen_cache import FrozenLayerCache, forward_packed_reusing
from rewardlab.models.packed import group_shared_prefixes, pack_groups, packing_unsupported_reason
from rewardlab.models.reward_model import RewardModel
from rewardlab.errors import ConfigError, RewardlabError

DEFAULT_MAX_LENGTH = 1024
DEFAULT_SCORING_TRUNCATION = "prompt-left"


class UnscorableError(RewardlabError, ValueError):
    """A conversation that cannot be scored (its response alone exceeds the length limit)."""


@dataclass
class ScoredPairs:
    """Rewards of each pair's two responses; NaN on both sides of a pair that was dropped (too long)."""

    chosen: list[float]
    rejected: list[float]
    cut: list[bool]  # the prompt of either side was cut from the left to fit

    @property
    def dropped(self) -> list[bool]:
        return [math.isnan(c) or math.isnan(r) for c, r in zip(self.chosen, self.rejected)]

    @property
    def dropped_count(self) -> int:
        return sum(self.dropped)

    @property
    def cut_count(self) -> int:
        return sum(self.cut)


def truncation_note(policy: str, max_length: int, *, cut: int, dropped: int, unit: str = "pairs") -> str:
    """One phrase for outputs: how many inputs the length limit changed, and how."""
    return (f"max_length {max_length}, truncation {policy}: {dropped} {unit} dropped (too long), "
            f"{cut} cut from the left of the prompt")


def fit_conversations(
    tokenizer: Any,
    prompts: Sequence[Sequence[Message]],
    responses: Sequence[str],
    *,
    max_length: int,
    policy: str,
) -> tuple[list[Rendered | None], list[bool]]:
    """Render conversations within ``max_length`` under truncation ``policy``.

    Returns the renderings (None: does not fit, i.e. dropped) and whether each one's prompt was cut
    from the left. Only over-length conversations are rendered a second time.
    """
    if policy not in TRUNCATION_POLICIES:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_POLICIES)}; got {policy!r}")
    rendered = render_batch(tokenizer, prompts, responses, max_length=max_length, truncation="drop")
    cut = [False] * len(rendered)
    over = [i for i, item in enumerate(rendered) if item is None]
    if over and policy == "prompt-left":
        redone = render_batch(tokenizer, [prompts[i] for i in over], [responses[i] for i in over],
                              max_length=max_length, truncation="prompt-left")
        for index, item in zip(over, redone):
            rendered[index] = item
            cut[index] = item is not None
    return rendered, cut


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
        self.truncation = str(self.settings.get("truncation") or DEFAULT_SCORING_TRUNCATION)
        if self.truncation not in TRUNCATION_POLICIES:
            raise ConfigError(f"the model's saved truncation setting {self.truncation!r} is not one of "
                              f"{', '.join(TRUNCATION_POLICIES)}; fix 'truncation' in its rewardlab_config.json")
        self.truncation_counts: Counter[str] = Counter({"cut": 0, "dropped": 0})
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
        """Token ids of one conversation as `score_conversations` scores it (prompt cut from the left if too
        long); None if the response alone cannot fit. Nothing is counted."""
        (rendered,), _ = self.fit([prompt], [response], policy="prompt-left")
        return None if rendered is None else rendered.input_ids

    def fit(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str], *, policy: str | None = None
    ) -> tuple[list[Rendered | None], list[bool]]:
        """`fit_conversations` with this model's tokenizer, ``max_length`` and (by default) saved policy."""
        return fit_conversations(self.tokenizer, prompts, responses, max_length=self.max_length,
                                 policy=policy or self.truncation)

    # --- scoring --------------------------------------------------------------------------------

    @torch.inference_mode()
    def score_token_ids(
        self, sequences: Sequence[Sequence[int]], batch_size: int | None = None, *, progress: str | None = None
    ) -> list[float]:
        """Rewards for token-id sequences, in input order; ``progress`` names a progress bar to show.

        Identical sequences are scored once, so they get exactly the same reward (the strict
        evaluation rule counts equal rewards as a tie, which must not depend on batch layout).
        """
        if any(len(seq) == 0 for seq in sequences):
            raise ValueError("cannot score an empty token sequence")
        size = batch_size or self.batch_size
        slot_of: dict[tuple[int, ...], int] = {}
        slots = [slot_of.setdefault(tuple(seq), len(slot_of)) for seq in sequences]
        unique = [list(key) for key in slot_of]
        was_training = self.model.training
        self.model.eval()
        try:
            if self.packing:
                rewards = self._score_packed(unique, size, progress)
            else:
                rewards = self._score_padded(unique, size, progress)
        finally:
            self.model.train(was_training)
        return [rewards[slot] for slot in slots]

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
        """Rewards for single (prompt messages, assistant response) conversations, one reward each.

        Nothing is dropped: an over-length conversation has its prompt cut from the left (counted as
        cut, whatever the saved setting); a response longer than ``max_length`` alone is an `UnscorableError`.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rendered, cut = self.fit(prompts, responses, policy="prompt-left")
        for index, item in enumerate(rendered):
            if item is None:
                raise UnscorableError(
                    f"conversation {index}: the response alone is longer than max_length={self.max_length} tokens"
                )
        self.truncation_counts["cut"] += sum(cut)
        return self.score_token_ids([item.input_ids for item in rendered], batch_size, progress=progress)

    def score_candidates(
        self,
        prompts: Sequence[Sequence[Message]],
        responses: Sequence[str],
        batch_size: int | None = None,
        *,
        progress: str | None = None,
    ) -> tuple[list[float], list[bool]]:
        """Rewards under the model's saved truncation setting (NaN: dropped) and which prompts were cut.

        For callers that judge groups of candidates themselves (``rewardlab eval``): a group with a NaN
        member is left out as a whole.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rendered, cut = self.fit(prompts, responses)
        usable = [i for i, item in enumerate(rendered) if item is not None]
        rewards = [math.nan] * len(rendered)
        if usable:
            values = self.score_token_ids([rendered[i].input_ids for i in usable], batch_size, progress=progress)
            for index, value in zip(usable, values):
                rewards[index] = value
        self.truncation_counts["cut"] += sum(cut)
        self.truncation_counts["dropped"] += len(rendered) - len(usable)
        return rewards, cut

    def score_pairs_detailed(
        self, pairs: Sequence[PreferencePair], batch_size: int | None = None, *, progress: str | None = None
    ) -> ScoredPairs:
        """Both rewards of each pair under the model's saved truncation setting, in one sorted pass.

        A pair with a side that cannot fit (``drop``: longer than ``max_length``; ``prompt-left``: a
        response longer than it alone) is dropped as a whole: NaN on both sides, two dropped conversations.
        """
        n = len(pairs)
        rendered, cut = self.fit([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        keep = [rendered[i] is not None and rendered[i + n] is not None for i in range(n)]
        order = [i for i in range(n) if keep[i]] + [i + n for i in range(n) if keep[i]]
        values = self.score_token_ids([rendered[i].input_ids for i in order], batch_size, progress=progress) if order else []
        rewards = [math.nan] * (2 * n)
        for index, value in zip(order, values):
            rewards[index] = value
        pair_cut = [keep[i] and (cut[i] or cut[i + n]) for i in range(n)]
        self.truncation_counts["cut"] += sum(cut[i] + cut[i + n] for i in range(n) if keep[i])
        self.truncation_counts["dropped"] += 2 * (n - sum(keep))
        return ScoredPairs(chosen=rewards[:n], rejected=rewards[n:], cut=pair_cut)

    def score_pairs(
        self, pairs: Sequence[PreferencePair], batch_size: int | None = None, *, progress: str | None = None
    ) -> tuple[list[float], list[float]]:
        """Rewards of the chosen and the rejected response of each pair (NaN for a dropped pair)."""
        scored = self.score_pairs_detailed(pairs, batch_size, progress=progress)
        return scored.chosen, scored.rejected


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Fraction of scored pairs with reward(chosen) strictly greater than reward(rejected); ties are wrong.

    Dropped pairs (NaN rewards) are left out; NaN if no pair was scored.
    """
    scored = [(c, r) for c, r in zip(chosen, rejected) if not (math.isnan(c) or math.isnan(r))]
    if not scored:
        return float("nan")
    return sum(c > r for c, r in scored) / len(scored)
