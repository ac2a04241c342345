"""Score evaluation datasets with one or more models and summarise the outcomes.

Scoring is resumable: with a cache folder, every (model, dataset) keeps its scores in a JSON file
written atomically after each chunk, keyed by a fingerprint of the model and of the exact
conversations. An interrupted run picks up where it stopped; a changed model or dataset starts over.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rewardlab.errors import ConfigError
from rewardlab.evaluate.formats import EvalDataset
from rewardlab.evaluate.items import EvalItem, Outcome, judge
from rewardlab.evaluate.metrics import Row, summarize
from rewardlab.evaluate.scorers import Scorer, load_scorer
from rewardlab.files import write_text_atomic

CHUNK_CONVERSATIONS = 256
CACHE_VERSION = 2  # 2: also stores which conversations had their prompt cut


@dataclass
class ModelResult:
    """One model's scores, outcomes and report rows over all datasets."""

    name: str
    info: dict[str, Any]
    rows: list[Row]
    item_scores: list[list[float] | None]
    outcomes: list[Outcome | None]
    seconds: float
    conversations: int
    unscored: dict[str, int] = field(default_factory=dict)  # items dropped: a candidate did not fit
    cut: dict[str, int] = field(default_factory=dict)  # scored items with a prompt cut from the left to fit

    @property
    def items_scored(self) -> int:
        return sum(o is not None for o in self.outcomes)

    @property
    def pairs_per_second(self) -> float:
        """Items (pairs, or best-of-N groups) scored per second of model time."""
        return self.items_scored / self.seconds if self.seconds > 0 else math.nan

    @property
    def conversations_per_second(self) -> float:
        return self.conversations / self.seconds if self.seconds > 0 else math.nan


@dataclass
class EvalResult:
    """Everything a report needs: the datasets as loaded and every model's results."""

    datasets: list[EvalDataset]
    models: list[ModelResult]


def _fingerprint(scorer_info: dict[str, Any], conversations: Sequence[tuple[Any, str]]) -> str:
    digest = hashlib.sha256()
    # The chat-template note follows from the model files (fingerprinted below); leaving it out keeps
    # caches written before it was reported valid.
    described = {key: value for key, value in scorer_info.items() if key != "chat_template"}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for path_key in ("path", "reference"):
        folder = scorer_info.get(path_key)
        if folder and Path(folder).is_dir():
            for file in sorted(Path(folder).glob("*")):
                if file.is_file():
                    stat = file.stat()
                    digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for prompt, response in conversations:
        digest.update(json.dumps([list(prompt), response], ensure_ascii=False).encode())
    return digest.hexdigest()


class ScoreCache:
    """Per (model, dataset) scores on disk: a number, ``"nan"`` (dropped) or null (not yet scored),
    and the indices of conversations whose prompt was cut."""

    def __init__(self, path: Path, fingerprint: str, size: int) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.scores: list[float | None] = [None] * size
        self.cut: list[bool] = [False] * size
        self.seconds = 0.0
        self.scored = 0
        if path.is_file():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                stored = None
            if (
                isinstance(stored, dict)
                and stored.get("version") == CACHE_VERSION
                and stored.get("fingerprint") == fingerprint
                and len(stored.get("scores", [])) == size
            ):
                self.scores = [math.nan if v == "nan" else v for v in stored["scores"]]
                for index in stored.get("cut", []):
                    if isinstance(index, int) and 0 <= index < size:
                        self.cut[index] = True
                self.seconds = float(stored.get("seconds", 0.0))
                self.scored = int(stored.get("scored", 0))

    def save(self) -> None:
        payload = {
            "version": CACHE_VERSION,
            "fingerprint": self.fingerprint,
            "seconds": self.seconds,
            "scored": self.scored,
            "scores": ["nan" if v is not None and math.isnan(v) else v for v in self.scores],
            "cut": [i for i, was_cut in enumerate(self.cut) if was_cut],
        }
        write_text_atomic(self.path, json.dumps(payload))


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "model"


def score_dataset(
    scorer: Scorer,
    dataset: EvalDataset,
    *,
    cache_dir: Path | None = None,
    chunk_size: int = CHUNK_CONVERSATIONS,
    progress: bool = True,
) -> tuple[list[list[float]], float, int, list[bool]]:
    """Scores of every candidate of every item → (per-item scores, model seconds, conversations scored,
    per item whether a candidate's prompt was cut to fit).

    Conversations are sorted by length before chunking, so each chunk holds similar lengths and
    the scorer's own length-sorted batches waste little padding.
    """
    owners: list[int] = []
    conversations: list[tuple[Any, str]] = []
    for index, item in enumerate(dataset.items):
        for prompt, response in item.candidates():
            owners.append(index)
            conversations.append((prompt, response))
    cache = None
    if cache_dir is not None:
        cache_file = cache_dir / _safe_name(scorer.name) / f"{_safe_name(dataset.name)}.json"
        cache = ScoreCache(cache_file, _fingerprint(scorer.describe(), conversations), len(conversations))
    scores: list[float | None] = cache.scores if cache else [None] * len(conversations)
    cut: list[bool] = cache.cut if cache else [False] * len(conversations)
    seconds = cache.seconds if cache else 0.0
    scored = cache.scored if cache else 0

    todo = [i for i, v in enumerate(scores) if v is None]
    todo.sort(key=lambda i: sum(len(m.get("content", "")) for m in conversations[i][0]) + len(conversations[i][1]), reverse=True)
    bar = tqdm(total=len(conversations), initial=len(conversations) - len(todo), desc=f"{scorer.name} · {dataset.name}",
               unit="conv", disable=not progress, leave=False)
    try:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            began = time.perf_counter()
            values, cuts = scorer.score_with_cuts([conversations[i][0] for i in chunk],
                                                  [conversations[i][1] for i in chunk])
            seconds += time.perf_counter() - began
            scored += len(chunk)
            for i, value, was_cut in zip(chunk, values, cuts):
                scores[i] = float(value)
                cut[i] = bool(was_cut)
            if cache:
                cache.seconds, cache.scored = seconds, scored
                cache.save()
            bar.update(len(chunk))
    finally:
        bar.close()

    per_item: list[list[float]] = [[] for _ in dataset.items]
    item_cut = [False] * len(dataset.items)
    for owner, value, was_cut in zip(owners, scores, cut):
        per_item[owner].append(float(value))
        item_cut[owner] = item_cut[owner] or was_cut
    return per_item, seconds, scored, item_cut


def evaluate_scorer(
    scorer: Scorer,
    datasets: Sequence[EvalDataset],
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> ModelResult:
    """Score all datasets with one model and judge every item by the strict rule."""
    items: list[EvalItem] = []
    item_scores: list[list[float] | None] = []
    outcomes: list[Outcome | None] = []
    unscored: dict[str, int] = {}
    cut: dict[str, int] = {}
    seconds = 0.0
    conversations = 0
    for dataset in datasets:
        per_item, used, scored, item_cut = score_dataset(scorer, dataset, cache_dir=cache_dir, progress=progress)
        seconds += used
        conversations += scored
        for item, values, was_cut in zip(dataset.items, per_item, item_cut):
            items.append(item)
            if any(math.isnan(v) for v in values):
                unscored[dataset.name] = unscored.get(dataset.name, 0) + 1
                item_scores.append(None)
                outcomes.append(None)
            else:
                if was_cut:
                    cut[dataset.name] = cut.get(dataset.name, 0) + 1
                item_scores.append(values)
                outcomes.append(judge(item, values))
    rows = summarize(items, outcomes, item_scores)
    return ModelResult(
        name=scorer.name,
        info=scorer.describe(),
        rows=rows,
        item_scores=item_scores,
        outcomes=outcomes,
        seconds=seconds,
        conversations=conversations,
        unscored=unscored,
        cut=cut,
    )


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate and the label reports use for it."""

    path: str
    name: str


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=PATH`` or ``PATH`` (named after the folder)."""
    name, sep, path = text.partition("=")
    if sep and name and path and "/" not in name:
        return ModelSpec(path=path, name=name)
    return ModelSpec(path=text, name=Path(text.rstrip("/")).name or text)


def evaluate_models(
    models: Sequence[ModelSpec],
    datasets: Sequence[EvalDataset],
    *,
    reference: str | None = None,
    device: str | None = None,
    batch_size: int = 16,
    cache_dir: Path | None = None,
    progress: bool = True,
    loader: Callable[..., Scorer] = load_scorer,
) -> EvalResult:
    """Evaluate each model in turn (loaded one at a time, so only one sits in memory).

    ``reference`` switches every model to the implicit DPO reward against that reference model.
    """
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"several models are named {', '.join(duplicates)}; label them with NAME=PATH")
    results = []
    for spec in models:
        scorer = loader(spec.path, reference=reference, device=device, batch_size=batch_size, name=spec.name)
        results.append(evaluate_scorer(scorer, datasets, cache_dir=cache_dir, progress=progress))
        del scorer
    return EvalResult(datasets=list(datasets), models=results)
