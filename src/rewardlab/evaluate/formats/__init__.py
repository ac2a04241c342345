"""Evaluation formats: detect a file's layout, load it and turn it into `EvalItem`s.

Format names, as used in ``--data FORMAT:PATH``:

* ``hhh-bigbench``: BIG-bench ``hhh_alignment`` task JSON (a task.json or the folder of categories);
* ``hhh-hf``: Hugging Face ``HuggingFaceH4/hhh_alignment`` (``input``, ``targets``);
* ``mt-bench``: ``lmsys/mt_bench_human_judgments`` (``conversation_a/b``, ``winner``, ``turn``);
* ``llmbar``: LLMBar and its processed MT-Bench set (``input``, ``output_1/2``, ``label``);
* ``rewardbench``: RewardBench v1 (``prompt``, ``chosen``, ``rejected``, ``subset``);
* ``rewardbench-2``: RewardBench 2 best-of-N (``chosen``/``rejected`` lists, ``subset``);
* ``rm-bench``: RM-Bench (``chosen``/``rejected`` lists of three styles, ``domain``);
* ``unified-feedback``: Unified-Feedback (``conv_A/B``, ``conv_A/B_rating``, ``source``);
* ``pairs``: the core loader (hh-rlhf raw, TRL standard/conversational, ``synthetic:ood``, …).

The benchmarks' hub names (`HUB_BENCHMARKS`: ``allenai/reward-bench``, ``allenai/reward-bench-2``,
``THU-KEG/RM-Bench``) select their format by themselves and are loaded from the hub with
``datasets.load_dataset``; with a ``FORMAT:`` prefix the same formats read files, local folders
laid out like the hub repositories, or other hub names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport, load_pairs, parse_spec
from rewardlab.data.pair import PreferencePair
from rewardlab.errors import ConfigError
from rewardlab.evaluate.formats.common import first_record
from rewardlab.evaluate.formats.hhh import load_hhh_bigbench, load_hhh_hf
from rewardlab.evaluate.formats.llmbar import load_llmbar
from rewardlab.evaluate.formats.mtbench import load_mtbench_judgments
from rewardlab.evaluate.formats.rewardbench import (
    REWARDBENCH2_DATASET,
    REWARDBENCH2_FORMAT,
    REWARDBENCH2_HUB,
    REWARDBENCH_DATASET,
    REWARDBENCH_FORMAT,
    REWARDBENCH_HUB,
    load_rewardbench,
    load_rewardbench2,
)
from rewardlab.evaluate.formats.rmbench import (
    RMBENCH_DATASET,
    RMBENCH_FORMAT,
    RMBENCH_HUB,
    domain_from_file_name,
    load_rmbench,
)
from rewardlab.evaluate.formats.unified_feedback import load_unified_feedback
from rewardlab.evaluate.items import EvalItem, item_from_pair

__all__ = [
    "FORMATS",
    "HUB_BENCHMARKS",
    "DataSpec",
    "EvalDataset",
    "EvalFormat",
    "detect_eval_format",
    "load_eval_dataset",
    "parse_data_spec",
]

Loader = Callable[..., "list[PreferencePair] | list[EvalItem]"]
DATA_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".json.gz", ".parquet")
GENERIC_STEMS = {"dataset", "data", "task", "test", "train", "validation", "val", "eval"}


@dataclass(frozen=True)
class EvalFormat:
    """One evaluation layout: how to load it and the dataset name reports use by default."""

    name: str
    load: Loader
    default_dataset: str | None
    columns: frozenset[str] = frozenset()


FORMATS: dict[str, EvalFormat] = {
    f.name: f
    for f in (
        EvalFormat("hhh-bigbench", load_hhh_bigbench, "hhh", frozenset({"input", "target_scores"})),
        EvalFormat("hhh-hf", load_hhh_hf, "hhh", frozenset({"input", "targets"})),
        EvalFormat("mt-bench", load_mtbench_judgments, "mt-bench", frozenset({"conversation_a", "conversation_b", "winner"})),
        EvalFormat("llmbar", load_llmbar, None, frozenset({"input", "output_1", "output_2", "label"})),
        EvalFormat("rm-bench", load_rmbench, RMBENCH_DATASET),
        EvalFormat("rewardbench-2", load_rewardbench2, REWARDBENCH2_DATASET),
        EvalFormat("rewardbench", load_rewardbench, REWARDBENCH_DATASET, frozenset({"prompt", "chosen", "rejected", "subset"})),
        EvalFormat("unified-feedback", load_unified_feedback, "unified-feedback", frozenset({"conv_A", "conv_B"})),
        EvalFormat("pairs", lambda spec, report=None: load_pairs(str(spec), report=report), None),
    )
}

# Hub names that pick their format (compared case-insensitively, as the hub does).
HUB_BENCHMARKS: dict[str, str] = {
    REWARDBENCH_HUB.lower(): REWARDBENCH_FORMAT,
    REWARDBENCH2_HUB.lower(): REWARDBENCH2_FORMAT,
    RMBENCH_HUB.lower(): RMBENCH_FORMAT,
}


@dataclass
class EvalDataset:
    """The items of one dataset plus the account of what loading dropped."""

    name: str
    format: str
    spec: str
    items: list[EvalItem]
    report: LoadReport = field(default_factory=LoadReport)


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: ``[NAME=][FORMAT:]PATH``."""

    path: str
    format: str | None = None
    name: str | None = None


def parse_data_spec(text: str) -> DataSpec:
    """Parse ``[NAME=][FORMAT:]PATH``; a prefix that is not a format name stays part of the path
    (so core specs such as ``synthetic:ood`` pass through unchanged)."""
    name = None
    match = re.match(r"^([A-Za-z0-9_.-]+)=(.+)$", text)
    if match:
        name, text = match.group(1), match.group(2)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in FORMATS and rest:
        return DataSpec(path=rest, format=prefix, name=name)
    return DataSpec(path=text, format=None, name=name)


def _is_rewardbench2(record: Mapping[str, Any]) -> bool:
    return {"prompt", "chosen", "rejected", "subset"} <= set(record) and isinstance(record.get("chosen"), list) and all(
        isinstance(value, str) for value in record["chosen"]
    )


def _first_data_file(folder: Path) -> Path | None:
    for candidate in sorted(folder.rglob("*")):
        if candidate.is_file() and candidate.name.lower().endswith(DATA_SUFFIXES):
            return candidate
    return None


def _is_rmbench(record: Mapping[str, Any], location: Path) -> bool:
    if not isinstance(record.get("chosen"), list) or not isinstance(record.get("rejected"), list):
        return False
    return "domain" in record or domain_from_file_name(location) is not None


def detect_eval_format(path: str) -> str:
    """Guess the format: a benchmark's hub name gives it; a file or folder by its first record's
    fields (``pairs`` if none fits)."""
    base = parse_spec(path)[0]
    if not Path(base).expanduser().exists() and base.lower() in HUB_BENCHMARKS:
        return HUB_BENCHMARKS[base.lower()]
    location = Path(base).expanduser()
    if location.is_dir():
        if any((sub / "task.json").is_file() for sub in location.iterdir() if sub.is_dir()):
            return "hhh-bigbench"
        if (location / "state.json").exists() or (location / "dataset_dict.json").exists():
            return "pairs"
        sample = _first_data_file(location)
        if sample is None:
            return "pairs"
        location = sample
    if not location.is_file():
        return "pairs"
    record = first_record(location)
    if not isinstance(record, Mapping):
        raise DataError(str(location), f"records must be objects, got {type(record).__name__}")
    if _is_rmbench(record, location):
        return RMBENCH_FORMAT
    if _is_rewardbench2(record):
        return "rewardbench-2"
    for fmt in FORMATS.values():
        if fmt.columns and fmt.columns <= set(record):
            return fmt.name
    return "pairs"


def _dataset_name(spec: DataSpec, fmt: EvalFormat) -> str:
    if spec.name:
        return spec.name
    if fmt.default_dataset:
        return fmt.default_dataset
    if spec.path.startswith("synthetic"):
        return spec.path.split("?")[0].replace(":", "-")
    path = Path(spec.path)
    stem = path.name
    for suffix in DATA_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if stem.lower() in GENERIC_STEMS and path.parent.name:
        stem = path.parent.name
    return stem.lower() or "data"


def load_eval_dataset(
    spec: DataSpec | str,
    *,
    breakdown: Sequence[str] = (),
    limit: int | None = None,
) -> EvalDataset:
    """Load one dataset for evaluation.

    ``breakdown`` names pair-meta fields whose values form the subset (e.g. ``family`` and
    ``condition`` for the synthetic OOD set); each value is also kept in ``meta['groups']`` so the
    report can aggregate by every field separately. ``limit`` keeps the first N items.
    """
    if isinstance(spec, str):
        spec = parse_data_spec(spec)
    format_name = spec.format or detect_eval_format(spec.path)
    if format_name not in FORMATS:
        raise ConfigError(f"unknown evaluation format {format_name!r}; known: {', '.join(FORMATS)}")
    fmt = FORMATS[format_name]
    name = _dataset_name(spec, fmt)
    report = LoadReport(source=spec.path, format=format_name)
    loaded = fmt.load(spec.path, report=report)
    items: list[EvalItem] = []
    for entry in loaded:
        if isinstance(entry, EvalItem):
            same = entry.dataset == name and entry.format == format_name
            item = entry if same else dataclasses.replace(entry, dataset=name, format=format_name)
        else:
            item = item_from_pair(entry, name, _breakdown_subset(entry, breakdown), format=format_name)
            if breakdown:
                item.meta["groups"] = {key: str(entry.meta.get(key)) for key in breakdown}
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise DataError(spec.path, f"no usable evaluation items ({report.summary()})")
    if fmt.name != "pairs":
        report.kept = len(items)
    return EvalDataset(name=name, format=format_name, spec=spec.path, items=items, report=report)


def _breakdown_subset(pair: PreferencePair, breakdown: Sequence[str]) -> str | None:
    if not breakdown:
        return None
    missing = [key for key in breakdown if key not in pair.meta]
    if missing:
        raise DataError(pair.source or "pair", f"pair meta lacks breakdown field(s) {', '.join(missing)}")
    return "/".join(str(pair.meta[key]) for key in breakdown)
