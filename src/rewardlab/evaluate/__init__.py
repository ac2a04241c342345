"""Evaluate reward models in and out of distribution: formats, suites, scorers and reports.

Typical use is the CLI (`rewardlab eval`); the library entry point is `run_evaluation`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported on first use, so that building the CLI parser stays fast.
_EXPORTS = {
    "FORMATS": "formats",
    "HUB_BENCHMARKS": "formats",
    "DataSpec": "formats",
    "EvalDataset": "formats",
    "load_eval_dataset": "formats",
    "parse_data_spec": "formats",
    "EvalItem": "items",
    "Outcome": "items",
    "item_from_pair": "items",
    "judge": "items",
    "leaderboard_results": "leaderboard",
    "write_leaderboard": "leaderboard",
    "Row": "metrics",
    "summarize": "metrics",
    "EvalResult": "runner",
    "ModelResult": "runner",
    "ModelSpec": "runner",
    "evaluate_models": "runner",
    "parse_model_spec": "runner",
    "StyleMatrix": "rmbench",
    "style_matrix": "rmbench",
    "ImplicitDPOScorer": "scorers",
    "RewardModelScorer": "scorers",
    "Scorer": "scorers",
    "SeqClsScorer": "scorers",
    "load_scorer": "scorers",
    "wilson_interval": "stats",
    "SUITES": "suites",
    "SuiteSource": "suites",
    "default_data_root": "suites",
    "load_suite": "suites",
    "run_evaluation": "workflow",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardlab.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rewardlab.evaluate.{_EXPORTS[name]}"), name)


# `rewardlab.evaluate(models, suite=... | data=[...])` runs `run_evaluation` (see `rewardlab.callable_package`).
from rewardlab.callable_package import make_callable  # noqa: E402

make_callable(__name__, "rewardlab.evaluate.workflow:run_evaluation")
