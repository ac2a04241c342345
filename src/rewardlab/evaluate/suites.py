"""Built-in evaluation suites, defined here and nowhere else.

A suite is a named list of sources: (dataset name, format, path or spec, subset breakdown). File
paths are relative to a data root: ``--data-root``, else ``$REWARDLAB_DATA_ROOT``, else
``../shared/data`` next to the current directory, else next to the repository root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rewardlab.data.loaders import DataError
from rewardlab.errors import ConfigError
from rewardlab.evaluate.formats import DataSpec, EvalDataset, load_eval_dataset

DATA_ROOT_ENV = "REWARDLAB_DATA_ROOT"
RELATIVE_DATA_ROOT = Path("..") / "shared" / "data"


@dataclass(frozen=True)
class SuiteSource:
    """One dataset of a suite. ``path`` is relative to the data root unless ``needs_files`` is False
    (then it is a core spec such as ``synthetic:ood``). ``breakdown`` names pair-meta fields that
    form the subsets."""

    name: str
    format: str
    path: str
    breakdown: tuple[str, ...] = ()
    needs_files: bool = True


SUITES: dict[str, tuple[SuiteSource, ...]] = {
    "synthetic-ood": (
        SuiteSource("synthetic-ood", "pairs", "synthetic:ood", breakdown=("family", "condition"), needs_files=False),
    ),
    "offline": (
        SuiteSource("hhh", "hhh-bigbench", "bigbench-hhh-alignment"),
        SuiteSource("llmbar-natural", "llmbar", "llmbar/Natural/dataset.json"),
        SuiteSource("mt-bench-human", "llmbar", "llmbar/Processed/MT-Bench/dataset.json"),
        SuiteSource("hh-rlhf-harmless-test", "pairs", "anthropic-hh-rlhf/harmless-base-test.jsonl.gz"),
    ),
    # The benchmarks by hub name (read with datasets.load_dataset, so they need the hub or its cache).
    "rewardbench": (SuiteSource("rewardbench", "rewardbench", "allenai/reward-bench", needs_files=False),),
    "rewardbench-2": (SuiteSource("rewardbench-2", "rewardbench-2", "allenai/reward-bench-2", needs_files=False),),
    "rm-bench": (SuiteSource("rm-bench", "rm-bench", "THU-KEG/RM-Bench", needs_files=False),),
}

SUITE_DESCRIPTIONS = {
    "synthetic-ood": "the core's synthetic:ood pairs (no files), broken down by task family and feature condition",
    "offline": "HHH-Alignment (221), LLMBar Natural (100), MT-Bench human via LLMBar (200), hh-rlhf harmless test (2,312 raw pairs)",
    "rewardbench": "RewardBench v1 from the hub (allenai/reward-bench, split filtered): subsets, sections, score",
    "rewardbench-2": "RewardBench 2 from the hub (allenai/reward-bench-2, split test): best-of-4 subsets, Ties, score",
    "rm-bench": "RM-Bench from the hub (THU-KEG/RM-Bench): hard/normal/easy per domain and the RM-Bench score",
}


def default_data_root() -> Path:
    """``$REWARDLAB_DATA_ROOT``, else the first existing ``../shared/data`` next to the current
    directory or the repository root (the cwd-relative path if neither exists)."""
    configured = os.environ.get(DATA_ROOT_ENV)
    if configured:
        return Path(configured).expanduser()
    candidates = [Path.cwd() / RELATIVE_DATA_ROOT, Path(__file__).resolve().parents[3] / RELATIVE_DATA_ROOT]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return candidates[0]


def suite_sources(name: str) -> tuple[SuiteSource, ...]:
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; built-in suites: {', '.join(SUITES)}")
    return SUITES[name]


def load_suite(name: str, *, data_root: str | Path | None = None, limit: int | None = None) -> list[EvalDataset]:
    """Load every dataset of a suite; a missing file is an error naming it and how to set the root."""
    sources = suite_sources(name)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    missing = [s for s in sources if s.needs_files and not (root / s.path).exists()]
    if missing:
        listed = ", ".join(f"{s.path} ({s.name})" for s in missing)
        raise DataError(
            str(root),
            f"suite {name!r} needs {listed} under the data root {root}, which is missing; "
            f"pass --data-root PATH or set {DATA_ROOT_ENV} to the folder that holds these files",
        )
    datasets = []
    for source in sources:
        path = str(root / source.path) if source.needs_files else source.path
        datasets.append(
            load_eval_dataset(DataSpec(path=path, format=source.format, name=source.name), breakdown=source.breakdown, limit=limit)
        )
    return datasets


def load_data_specs(specs: Sequence[str], *, limit: int | None = None) -> list[EvalDataset]:
    """Load ``--data`` values (``[NAME=][FORMAT:]PATH``); dataset names must be unique."""
    datasets = [load_eval_dataset(spec, limit=limit) for spec in specs]
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"several --data sources are named {', '.join(duplicates)}; name them with NAME=PATH")
    return datasets
