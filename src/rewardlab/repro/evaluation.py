"""Evaluation side of `rewardlab repro grm`: which datasets, and each model's outcomes, cached.

The in-distribution set is the held-out part of the training source. Out-of-distribution sets come
from the built-in suites; a suite dataset that shares pairs with the training source (hh-rlhf
harmless, when training on it) is not out of distribution and is left out, with the reason kept.
Every model's outcomes are stored per dataset in ``evals/<model>.json``, keyed by fingerprints of
the model files and of the dataset's conversations, so a rerun does not even load finished models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.errors import ConfigError
from rewardlab.evaluate.formats import DataSpec, EvalDataset, load_eval_dataset
from rewardlab.evaluate.items import Outcome
from rewardlab.evaluate.runner import evaluate_scorer
from rewardlab.evaluate.scorers import RewardModelScorer
from rewardlab.evaluate.suites import load_suite
from rewardlab.repro.data import PreparedSplit, pair_key
from rewardlab.files import read_json_store, write_text_atomic
from rewardlab.models.frozen_cache import FrozenLayerCache

ID_DATASET = "in-distribution"
# Suite datasets that are in-distribution whenever the training spec names the same corpus
# (e.g. hh-rlhf's train split from the hub, which shares no pairs with the offline test file).
SAME_DISTRIBUTION = {"hh-rlhf-harmless-test": "hh-rlhf"}
EVALS_FOLDER = "evals"
SCORES_FOLDER = "scores"


@dataclass
class EvalPlan:
    """The datasets every model is scored on, and the suite datasets left out (with the reason)."""

    in_distribution: EvalDataset
    out_of_distribution: list[EvalDataset]
    excluded: dict[str, str] = field(default_factory=dict)
    full_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def datasets(self) -> list[EvalDataset]:
        return [self.in_distribution, *self.out_of_distribution]


def _split_keys(split: PreparedSplit) -> set[str]:
    keys = set()
    for path in (split.train_file, split.heldout_file):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            keys.add(pair_key(record["prompt"], record["chosen"][0]["content"], record["rejected"][0]["content"]))
    return keys


def _same_file(first: str, second: str) -> bool:
    a, b = Path(first).expanduser(), Path(second).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def sample_items(dataset: EvalDataset, limit: int | None, seed: int) -> EvalDataset:
    """A seeded random sample of ``limit`` items, kept in file order (all items if there are fewer).

    Random rather than the first N, because files are often sorted by category (HHH is).
    """
    if limit is None or len(dataset.items) <= limit:
        return dataset
    chosen = sorted(random.Random(f"{seed}:{dataset.name}").sample(range(len(dataset.items)), limit))
    return dataclasses.replace(dataset, items=[dataset.items[i] for i in chosen])


def plan_evaluation(
    split: PreparedSplit, suites: tuple[str, ...], *, data_root: str | None, limit: int | None, seed: int = 0
) -> EvalPlan:
    """Load the held-out split and the OOD suites (each sampled down to ``limit`` pairs); drop suite
    datasets that overlap the training source."""
    in_distribution = load_eval_dataset(DataSpec(path=str(split.heldout_file), format="pairs", name=ID_DATASET))
    training_keys = _split_keys(split)
    kept: list[EvalDataset] = []
    excluded: dict[str, str] = {}
    full_sizes: dict[str, int] = {}
    for suite in suites:
        for dataset in load_suite(suite, data_root=data_root):
            if dataset.name == ID_DATASET or any(d.name == dataset.name for d in kept):
                raise ConfigError(f"dataset name {dataset.name!r} appears twice across suites {', '.join(suites)}")
            if _same_file(dataset.spec, split.summary["source"]):
                excluded[dataset.name] = "it is the training source, so it is in-distribution (see the held-out column)"
                continue
            family = SAME_DISTRIBUTION.get(dataset.name)
            if family and family in split.summary["source"].lower():
                excluded[dataset.name] = f"the training data is also {family}, so it is not out of distribution"
                continue
            shared = sum(
                len(item.rejected) == 1 and pair_key(item.prompt, item.chosen, item.rejected[0]) in training_keys
                for item in dataset.items
            )
            if shared:
                excluded[dataset.name] = f"{shared} of its {len(dataset.items)} pairs are training or held-out pairs"
                continue
            full_sizes[dataset.name] = len(dataset.items)
            kept.append(sample_items(dataset, limit, seed))
    return EvalPlan(in_distribution=in_distribution, out_of_distribution=kept, excluded=excluded, full_sizes=full_sizes)


def dataset_fingerprint(dataset: EvalDataset) -> str:
    """Changes whenever any conversation of the dataset (or its name) changes."""
    digest = hashlib.sha256(dataset.name.encode("utf-8"))
    for item in dataset.items:
        digest.update(json.dumps([[list(p), r] for p, r in item.candidates()], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def model_fingerprint(model_dir: Path, max_length: int) -> str:
    """Names, sizes and modification times of the saved model's files, plus the scoring length."""
    digest = hashlib.sha256(str(max_length).encode())
    for file in sorted(model_dir.iterdir()):
        if file.is_file() and file.name != "metrics.json":
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


@dataclass
class ModelOutcomes:
    """One model's outcome (``correct``/``tie``/``wrong``, None = unscorable) for every item of every dataset."""

    name: str
    outcomes: dict[str, list[str | None]]
    seconds: float
    conversations: int
    reused: bool


def evaluate_model(
    name: str,
    model_dir: Path,
    plan: EvalPlan,
    out_dir: Path,
    *,
    device: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    frozen_cache: FrozenLayerCache | None = None,
) -> ModelOutcomes:
    """Outcomes of one trained model on every planned dataset, reusing what an earlier run stored.

    ``frozen_cache``: shared with the other models of the run (same base, same frozen layers), so
    the frozen layers run once per conversation, not once per model.
    """
    cache_path = out_dir / EVALS_FOLDER / f"{name}.json"
    settings = json.loads((model_dir / "rewardlab_config.json").read_text(encoding="utf-8")).get("settings", {})
    model_key = model_fingerprint(model_dir, int(settings.get("max_length") or 0))
    stored = read_json_store(cache_path)
    if stored.get("model") != model_key:
        stored = {}
    datasets_cache: dict[str, Any] = stored.get("datasets", {})
    fingerprints = {d.name: dataset_fingerprint(d) for d in plan.datasets}
    missing = [d for d in plan.datasets if datasets_cache.get(d.name, {}).get("fingerprint") != fingerprints[d.name]]
    seconds = conversations = 0
    if missing:
        began = time.perf_counter()
        scorer = RewardModelScorer(model_dir, name=name, device=device, batch_size=batch_size, frozen_cache=frozen_cache)
        result = evaluate_scorer(scorer, missing, cache_dir=out_dir / SCORES_FOLDER, progress=progress)
        del scorer
        seconds, conversations = time.perf_counter() - began, result.conversations
        start = 0
        for dataset in missing:
            outcomes = result.outcomes[start : start + len(dataset.items)]
            start += len(dataset.items)
            datasets_cache[dataset.name] = {
                "fingerprint": fingerprints[dataset.name],
                "outcomes": [None if o is None else Outcome(o).value for o in outcomes],
            }
        write_text_atomic(cache_path, json.dumps({"model": model_key, "datasets": datasets_cache}) + "\n")
    return ModelOutcomes(
        name=name,
        outcomes={d.name: datasets_cache[d.name]["outcomes"] for d in plan.datasets},
        seconds=seconds,
        conversations=conversations,
        reused=not missing,
    )
