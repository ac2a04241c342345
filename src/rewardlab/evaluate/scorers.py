"""Everything `rewardlab eval` can score, behind one interface: ``score(prompts, responses)``.

* `RewardModelScorer`: a reward model saved by rewardlab, scored through `RewardScorer` (the
  one scoring path shared with `rewardlab score` and the server).
* `SeqClsScorer`: an exported or third-party ``AutoModelForSequenceClassification`` checkpoint
  with one output logit, fed the same rendering (`rewardlab.data.render`).
* `ImplicitDPOScorer`: the β-free implicit reward of a DPO-trained causal LM,
  Σ log π(y|x) − Σ log π_ref(y|x) over the response tokens, as RewardBench computes it.

All of them sort conversations by token length and pad each batch only to its longest member.
Over-length conversations follow a truncation policy: a rewardlab model's saved ``truncation``
setting (``drop`` or ``prompt-left``), ``prompt-left`` for the others. A conversation that cannot
fit under it scores NaN, and the evaluation counts its item as dropped instead of failing;
`Scorer.score_with_cuts` also says which prompts were cut, so reports can count those items.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from rewardlab.data.pair import Message
from rewardlab.data.render import Rendered, has_chat_template
from rewardlab.errors import ConfigError
from rewardlab.models.frozen_cache import FrozenLayerCache
from rewardlab.scoring import DEFAULT_MAX_LENGTH, DEFAULT_SCORING_TRUNCATION, fit_conversations

REWARD_MODEL_MARKER = "rewardlab_config.json"
PLAIN_TEMPLATE = "plain"  # rewardlab's "Human: …\n\nAssistant: …" rendering for tokenizers without a chat template


def template_name(tokenizer: Any) -> str:
    """How conversations are rendered: ``tokenizer`` (its chat template, RewardBench's word) or ``plain``."""
    return "tokenizer" if has_chat_template(tokenizer) else PLAIN_TEMPLATE


class Scorer(Protocol):
    """Scores (prompt messages, assistant response) conversations; NaN marks one dropped as too long."""

    name: str

    def score(self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]) -> list[float]: ...

    def score_with_cuts(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
    ) -> tuple[list[float], list[bool]]:
        """Rewards (NaN: dropped) and whether each conversation's prompt was cut from the left to fit."""
        ...

    def describe(self) -> dict[str, Any]: ...


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs that support it (half the memory, faster); float32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (little padding per batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every sequence padded on the right to the longest one."""
    longest = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def _rendered_or_nan(rendered: Sequence[Rendered | None]) -> tuple[list[int], list[float]]:
    """Indices that rendered, and a result list with NaN where rendering failed."""
    usable = [i for i, r in enumerate(rendered) if r is not None]
    return usable, [math.nan] * len(rendered)


def _fit_for_scoring(
    tokenizer: Any, prompts: Sequence[Sequence[Message]], responses: Sequence[str], max_length: int
) -> tuple[list[Rendered | None], list[bool], list[int], list[float]]:
    """Rendered conversations within ``max_length`` (prompts cut from the left), which were cut, the indices
    that can be scored, and a reward list holding NaN for the rest (filled in by the caller)."""
    rendered, cut = fit_conversations(tokenizer, prompts, responses, max_length=max_length,
                                      policy=DEFAULT_SCORING_TRUNCATION)
    usable, rewards = _rendered_or_nan(rendered)
    return rendered, cut, usable, rewards


class RewardModelScorer:
    """A saved rewardlab reward model, scored through `rewardlab.scoring.RewardScorer`."""

    def __init__(
        self, path: str | Path, *, name: str | None = None, device: str | None = None, batch_size: int = 16,
        frozen_cache: FrozenLayerCache | None = None,
    ) -> None:
        from rewardlab.scoring import RewardScorer

        target = pick_device(device)
        self.name = name or Path(path).name
        self.path = str(path)
        self.dtype = pick_dtype(target)
        self.scorer = RewardScorer.from_pretrained(path, device=target, dtype=self.dtype, batch_size=batch_size,
                                                   frozen_cache=frozen_cache)

    def score(self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]) -> list[float]:
        return self.score_with_cuts(prompts, responses)[0]

    def score_with_cuts(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
    ) -> tuple[list[float], list[bool]]:
        return self.scorer.score_candidates(prompts, responses)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "rewardlab reward model",
            "path": self.path,
            "device": str(self.scorer.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_length": self.scorer.max_length,
            "truncation": self.scorer.truncation,
            "chat_template": template_name(self.scorer.tokenizer),
        }


class SeqClsScorer:
    """An ``AutoModelForSequenceClassification`` reward model (one logit), rendered our way.

    The tokenizer gets a pad token that never occurs in a rendered conversation (see
    `rewardlab.models.registry`), so the model's own last-non-pad pooling reads the last real
    token, exactly where a rewardlab reward model reads its reward.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 16,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        from transformers import AutoModelForSequenceClassification

        from rewardlab.models.registry import ModelLoadError, load_tokenizer, resolve_model_path

        self.name = name or Path(path).name
        self.path = str(path)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = load_tokenizer(str(path))
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(str(path)),
                                                                            dtype=self.dtype)
        except (OSError, ValueError, RuntimeError) as error:  # missing/corrupt weights, mismatched shapes
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ModelLoadError(f"{path}: could not load it as a sequence-classification model: {first}") from error
        if self.model.config.num_labels != 1:
            raise ConfigError(
                f"{path}: a reward model needs exactly one output (num_labels=1); this classifier has "
                f"{self.model.config.num_labels}"
            )
        if len(self.tokenizer) > self.model.get_input_embeddings().num_embeddings:
            self.model.resize_token_embeddings(len(self.tokenizer))
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()

    def score(self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]) -> list[float]:
        return self.score_with_cuts(prompts, responses)[0]

    @torch.inference_mode()
    def score_with_cuts(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
    ) -> tuple[list[float], list[bool]]:
        rendered, cut, usable, rewards = _fit_for_scoring(self.tokenizer, prompts, responses, self.max_length)
        sequences = [rendered[i].input_ids for i in usable]
        for batch in length_sorted_batches([len(s) for s in sequences], self.batch_size):
            input_ids, attention_mask = pad_right([sequences[i] for i in batch], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)).logits
            for position, value in zip(batch, logits[:, 0].float().cpu().tolist()):
                rewards[usable[position]] = float(value)
        return rewards, cut

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "sequence classification",
            "path": self.path,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_length": self.max_length,
            "truncation": DEFAULT_SCORING_TRUNCATION,
            "chat_template": template_name(self.tokenizer),
        }


class ImplicitDPOScorer:
    """Implicit DPO reward Σ log π(y|x) − Σ log π_ref(y|x) (β left out: it does not change rankings)."""

    def __init__(
        self,
        policy: str,
        reference: str,
        *,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        from rewardlab.models.registry import load_backbone

        self.name = name or Path(policy).name
        self.path = policy
        self.reference_path = reference
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.policy, self.tokenizer = load_backbone(policy, dtype=self.dtype)
        self.reference, reference_tokenizer = load_backbone(reference, dtype=self.dtype)
        if reference_tokenizer.get_vocab() != self.tokenizer.get_vocab():
            raise ConfigError(
                f"--ref {reference} uses a different tokenizer than {policy}; the implicit reward needs "
                "both models to score the same tokens"
            )
        self.policy.to(self.device).eval()
        self.reference.to(self.device).eval()

    def _logprobs(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        from rewardlab.models.forward import final_hidden_states
        from rewardlab.models.reward_model import sequence_logprobs

        hidden = final_hidden_states(model, input_ids, attention_mask)
        return sequence_logprobs(model, hidden, input_ids, response_mask)

    def score(self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]) -> list[float]:
        return self.score_with_cuts(prompts, responses)[0]

    @torch.inference_mode()
    def score_with_cuts(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
    ) -> tuple[list[float], list[bool]]:
        rendered, cut, usable, rewards = _fit_for_scoring(self.tokenizer, prompts, responses, self.max_length)
        # Position 0 cannot be predicted, so a response must start at token 1 or later.
        usable = [i for i in usable if rendered[i].response_start >= 1 and len(rendered[i]) > rendered[i].response_start]
        for batch in length_sorted_batches([len(rendered[i]) for i in usable], self.batch_size):
            members = [rendered[usable[b]] for b in batch]
            input_ids, attention_mask = pad_right([m.input_ids for m in members], self.tokenizer.pad_token_id)
            response_mask = torch.zeros_like(attention_mask)
            for row, member in enumerate(members):
                response_mask[row, member.response_start : len(member)] = 1
            input_ids, attention_mask, response_mask = (
                t.to(self.device) for t in (input_ids, attention_mask, response_mask)
            )
            policy = self._logprobs(self.policy, input_ids, attention_mask, response_mask)
            reference = self._logprobs(self.reference, input_ids, attention_mask, response_mask)
            for b, value in zip(batch, (policy - reference).float().cpu().tolist()):
                rewards[usable[b]] = float(value)
        return rewards, cut

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "implicit DPO reward",
            "path": self.path,
            "reference": self.reference_path,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_length": self.max_length,
            "truncation": DEFAULT_SCORING_TRUNCATION,
            "chat_template": template_name(self.tokenizer),
        }


def is_seq_cls_checkpoint(path: str) -> bool:
    """Whether ``path`` (folder, alias or hub id) holds a ``*ForSequenceClassification`` config."""
    from rewardlab.models.registry import resolve_model_path

    config_file = Path(resolve_model_path(path)) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
    else:
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(resolve_model_path(path)).to_dict()
        except (OSError, ValueError):
            return False
    return any(str(arch).endswith("ForSequenceClassification") for arch in config.get("architectures") or [])


def load_scorer(
    spec: str,
    *,
    reference: str | None = None,
    device: str | None = None,
    batch_size: int = 16,
    name: str | None = None,
    frozen_cache: FrozenLayerCache | None = None,
) -> Scorer:
    """Pick the scorer for ``spec``: implicit DPO when ``reference`` is given, a rewardlab reward
    model when the folder has ``rewardlab_config.json``, else a sequence-classification model.

    ``frozen_cache`` is shared by rewardlab models with the same frozen lower layers (see `RewardScorer`)."""
    if reference is not None:
        return ImplicitDPOScorer(spec, reference, name=name, device=device, batch_size=batch_size)
    if (Path(spec).expanduser() / REWARD_MODEL_MARKER).is_file():
        return RewardModelScorer(spec, name=name, device=device, batch_size=batch_size, frozen_cache=frozen_cache)
    if is_seq_cls_checkpoint(spec):
        return SeqClsScorer(spec, name=name, device=device, batch_size=batch_size)
    raise ConfigError(
        f"{spec}: not a rewardlab reward model (no {REWARD_MODEL_MARKER}) and not a sequence-classification "
        "checkpoint; for a DPO-trained causal LM pass --implicit-dpo --ref REFERENCE_MODEL"
    )
