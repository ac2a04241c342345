"""The evaluation item: one prompt, one chosen response and one or more rejected responses.

A `PreferencePair` is the special case with a single rejected response. RewardBench 2 uses four
candidates (best-of-4) and its Ties subset has several correct answers, so evaluation works on
`EvalItem`, and pairs from any loader are converted into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rewardlab.data.pair import Message, PreferencePair

# A pair whose two responses answer different conversation histories (MT-Bench turn-2
# judgments) stores the rejected side's prompt in its meta under this key.
REJECTED_PROMPT_KEY = "rejected_prompt"


class Outcome(str, Enum):
    """How a reward model judged one item."""

    CORRECT = "correct"  # every correct answer scored strictly above every rejected one
    TIE = "tie"  # the worst correct answer scored exactly the best rejected one (counted wrong)
    WRONG = "wrong"


@dataclass(frozen=True)
class EvalItem:
    """A prompt with ``chosen`` (correct) and ``rejected`` (wrong) responses.

    ``dataset`` and ``subset`` place the item in the report. ``also_correct`` holds further
    correct answers (RewardBench 2 Ties only). ``candidate_prompts``, when set, gives each
    candidate its own conversation history, in the order of `candidates()`. ``format`` is the
    evaluation format it was loaded from (e.g. ``rewardbench``): benchmark scoring rules key on it,
    never on the dataset's name, which is only a label.
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: tuple[str, ...]
    dataset: str
    subset: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    also_correct: tuple[str, ...] = ()
    candidate_prompts: tuple[tuple[Message, ...], ...] | None = None
    format: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", tuple(self.prompt))
        object.__setattr__(self, "rejected", tuple(self.rejected))
        object.__setattr__(self, "also_correct", tuple(self.also_correct))
        if not self.rejected:
            raise ValueError(f"{self.dataset}/{self.subset}: an evaluation item needs at least one rejected response")
        if self.candidate_prompts is not None:
            prompts = tuple(tuple(p) for p in self.candidate_prompts)
            if len(prompts) != self.num_correct + len(self.rejected):
                raise ValueError("candidate_prompts needs one prompt per candidate")
            object.__setattr__(self, "candidate_prompts", prompts)

    @property
    def num_correct(self) -> int:
        return 1 + len(self.also_correct)

    def candidates(self) -> list[tuple[tuple[Message, ...], str]]:
        """(prompt, response) for every candidate: the correct ones first, then the rejected ones."""
        responses = (self.chosen, *self.also_correct, *self.rejected)
        prompts = self.candidate_prompts or (self.prompt,) * len(responses)
        return list(zip(prompts, responses))


def judge(item: EvalItem, scores: Sequence[float]) -> Outcome:
    """Apply the strict rule: correct iff min(correct scores) > max(rejected scores).

    For a plain pair this is reward(chosen) > reward(rejected); for best-of-4 the chosen answer
    must beat every rejected one. Equality is a tie, which counts as wrong.
    """
    if len(scores) != item.num_correct + len(item.rejected):
        raise ValueError(f"expected {item.num_correct + len(item.rejected)} scores, got {len(scores)}")
    worst_correct = min(scores[: item.num_correct])
    best_rejected = max(scores[item.num_correct :])
    if worst_correct > best_rejected:
        return Outcome.CORRECT
    if worst_correct == best_rejected:
        return Outcome.TIE
    return Outcome.WRONG


def item_from_pair(
    pair: PreferencePair, dataset: str, subset: str | None = None, *, format: str = ""
) -> EvalItem:
    """Convert a preference pair; the subset comes from the argument, ``meta['subset']`` or the dataset."""
    meta = dict(pair.meta)
    rejected_prompt = meta.pop(REJECTED_PROMPT_KEY, None)
    candidate_prompts = None
    if rejected_prompt is not None:
        candidate_prompts = (tuple(pair.prompt), tuple(rejected_prompt))
    if pair.source is not None:
        meta.setdefault("source", pair.source)
    return EvalItem(
        prompt=pair.prompt,
        chosen=pair.chosen,
        rejected=(pair.rejected,),
        dataset=dataset,
        subset=subset or str(meta.get("subset") or dataset),
        meta=meta,
        candidate_prompts=candidate_prompts,
        format=format,
    )
