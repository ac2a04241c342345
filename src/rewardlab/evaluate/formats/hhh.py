"""HHH-Alignment (Askell et al. 2021) in its two published layouts.

* BIG-bench task JSON (``bigbench/benchmark_tasks/hhh_alignment/<category>/task.json``): an
  ``examples`` list of ``{"input": str, "target_scores": {response: 1 or 0}}``.
* Hugging Face ``HuggingFaceH4/hhh_alignment`` (configs harmless/helpful/honest/other, split
  ``test``): ``{"input": str, "targets": {"choices": [str, …], "labels": [1 or 0, …]}}``.

Following the GRM evaluation code: chosen = the response scored 1, rejected = the one scored 0.
An ``input`` that contains ``\\n\\nAssistant:``/``\\n\\nHuman:`` turns is split into a history shared
by both responses; the text before the first marker is the first user turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.evaluate.formats.common import read_records, require, require_str, split_dialogue

CATEGORIES = ("harmless", "helpful", "honest", "other")
DATA_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".parquet")


def _prompt_from_input(text: str, location: str) -> tuple[Message, ...]:
    messages = split_dialogue(text)
    if not messages or messages[-1]["role"] != "user":
        raise DataError(location, "field 'input' must end with a Human turn")
    return tuple(messages)


def _pair(prompt: tuple[Message, ...], scored: list[tuple[str, float]], location: str, subset: str) -> PreferencePair:
    if len(scored) != 2 or scored[0][1] == scored[1][1]:
        raise DataError(location, f"expected exactly two responses with different scores, got {len(scored)}")
    (chosen, _), (rejected, _) = sorted(scored, key=lambda option: option[1], reverse=True)
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, source=location, meta={"subset": subset})


def _bigbench_task_files(path: Path) -> list[tuple[Path, str]]:
    """(task.json, category) pairs for a task file or a folder of category folders."""
    if path.is_file():
        return [(path, path.parent.name)]
    if not path.is_dir():
        raise DataError(str(path), "no such file or folder")
    found = [(sub / "task.json", sub.name) for sub in sorted(path.iterdir()) if (sub / "task.json").is_file()]
    if not found:
        raise DataError(str(path), "no '<category>/task.json' files found")
    return found


def load_hhh_bigbench(path: str | Path, *, report: LoadReport | None = None) -> list[PreferencePair]:
    """Load BIG-bench ``hhh_alignment``: one task.json, or the folder holding the category folders."""
    pairs: list[PreferencePair] = []
    for task_file, category in _bigbench_task_files(Path(path)):
        for location, record in read_records(task_file):
            text = require_str(record, "input", location)
            scores = require(record, "target_scores", location)
            if not isinstance(scores, Mapping):
                raise DataError(location, "field 'target_scores' must be an object {response: score}")
            scored: list[tuple[str, float]] = []
            for response, score in scores.items():
                if not isinstance(score, (int, float)) or isinstance(score, bool):
                    raise DataError(location, f"field 'target_scores' has a non-numeric score {score!r}")
                scored.append((response, float(score)))
            pairs.append(_pair(_prompt_from_input(text, location), scored, location, category))
    return pairs


def _hf_category(file: Path, record: Any) -> str:
    if isinstance(record, Mapping) and isinstance(record.get("subset"), str):
        return record["subset"]
    for candidate in (file.name.split(".")[0].split("-")[0], file.parent.name):
        if candidate in CATEGORIES:
            return candidate
    return "hhh"


def load_hhh_hf(path: str | Path, *, report: LoadReport | None = None) -> list[PreferencePair]:
    """Load the Hugging Face layout: one file, or a folder of per-category files/folders.

    The category is the record's ``subset`` field if present, else the file name or its folder
    (``harmless.jsonl``, ``harmless/test-00000-of-00001.parquet``).
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES))
        if not files:
            raise DataError(str(root), "no .json/.jsonl/.parquet files found")
    else:
        files = [root]
    pairs: list[PreferencePair] = []
    for file in files:
        for location, record in read_records(file):
            text = require_str(record, "input", location)
            targets = require(record, "targets", location)
            choices = require(targets, "choices", f"{location} field 'targets'")
            labels = require(targets, "labels", f"{location} field 'targets'")
            if not isinstance(choices, list) or not isinstance(labels, list) or len(choices) != len(labels):
                raise DataError(location, "'targets.choices' and 'targets.labels' must be lists of equal length")
            if not all(isinstance(c, str) for c in choices):
                raise DataError(location, "'targets.choices' must hold strings")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
                raise DataError(location, "'targets.labels' must hold numbers")
            scored = [(c, float(v)) for c, v in zip(choices, labels)]
            pairs.append(_pair(_prompt_from_input(text, location), scored, location, _hf_category(file, record)))
    return pairs
