"""RewardBench layouts.

* v1 (hub ``allenai/reward-bench``, split ``filtered``): ``{"prompt": str, "chosen": str,
  "rejected": str, "subset": str, "id": int, "chosen_model", "rejected_model"}``. The prompt may
  also be a list of chat messages (as in ``allenai/pref-test-sets``).
* v2 (hub ``allenai/reward-bench-2``, split ``test``): ``{"id", "prompt": str, "chosen": [str, …],
  "rejected": [str, …], "num_correct", "subset", …}``, usually one chosen and three rejected
  answers (best-of-4). In the Ties subset ``chosen`` holds every correct answer and ``id`` is
  ``ref:N`` or ``tied:N``.

Each loader reads a file, a local folder laid out like the hub repository, or the hub name itself
(`rewardlab.evaluate.formats.common.read_source`); without ``?split=`` it reads the split the
reference code evaluates. How the subsets combine into sections and an overall score is in
`rewardlab.evaluate.rewardbench`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.evaluate.formats.common import (
    parse_messages,
    read_source,
    require,
    require_str,
    require_str_list,
)
from rewardlab.evaluate.items import EvalItem

REWARDBENCH_HUB = "allenai/reward-bench"
REWARDBENCH2_HUB = "allenai/reward-bench-2"
REWARDBENCH_SPLIT = "filtered"  # the splits the reference code evaluates
REWARDBENCH2_SPLIT = "test"
REWARDBENCH_DATASET = "rewardbench"
REWARDBENCH2_DATASET = "rewardbench-2"
REWARDBENCH_FORMAT = "rewardbench"  # format names, which select the scoring rules (datasets are just labels)
REWARDBENCH2_FORMAT = "rewardbench-2"
TIES_SUBSET = "Ties"


def benchmark_prompt(record: Any, location: str) -> tuple[Message, ...]:
    """The ``prompt`` field as chat messages: a string is one user turn; a message list must end with the user."""
    value = require(record, "prompt", location)
    if isinstance(value, str):
        if not value.strip():
            raise DataError(location, "field 'prompt' is empty")
        return ({"role": "user", "content": value},)
    messages = parse_messages(value, location, "prompt")
    if messages[-1]["role"] != "user":
        raise DataError(location, "field 'prompt' must end with a user message")
    return messages


def load_rewardbench(path: str | Path, *, report: LoadReport | None = None) -> list[PreferencePair]:
    """Load RewardBench v1 pairs; the ``subset`` field becomes ``meta['subset']``."""
    pairs: list[PreferencePair] = []
    for location, record in read_source(path, default_split=REWARDBENCH_SPLIT):
        pairs.append(
            PreferencePair(
                prompt=benchmark_prompt(record, location),
                chosen=require_str(record, "chosen", location, allow_empty=True),
                rejected=require_str(record, "rejected", location, allow_empty=True),
                source=location,
                meta={"subset": require_str(record, "subset", location), "id": record.get("id")},
            )
        )
    return pairs


def _ties_key(record: Any, location: str) -> tuple[str, int]:
    raw = require(record, "id", location)
    kind, _, number = str(raw).partition(":")
    if kind not in ("ref", "tied") or not number.isdigit():
        raise DataError(location, f"a Ties record needs an 'id' of the form ref:N or tied:N, got {raw!r}")
    return kind, int(number)


def load_rewardbench2(
    path: str | Path, *, report: LoadReport | None = None, dataset: str = REWARDBENCH2_DATASET
) -> list[EvalItem]:
    """Load RewardBench 2 best-of-N items (the chosen answer must beat every rejected one)."""
    items: list[EvalItem] = []
    for location, record in read_source(path, default_split=REWARDBENCH2_SPLIT):
        subset = require_str(record, "subset", location)
        chosen = require_str_list(record, "chosen", location)
        rejected = require_str_list(record, "rejected", location)
        meta: dict[str, Any] = {"id": record.get("id"), "source": location}
        if subset.lower() == TIES_SUBSET.lower():
            meta["ties_kind"], meta["ties_prompt"] = _ties_key(record, location)
        items.append(
            EvalItem(
                prompt=benchmark_prompt(record, location),
                chosen=chosen[0],
                also_correct=tuple(chosen[1:]),
                rejected=tuple(rejected),
                dataset=dataset,
                subset=subset,
                meta=meta,
                format=REWARDBENCH2_FORMAT,
            )
        )
    return items
