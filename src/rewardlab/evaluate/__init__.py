"""Evaluate reward models in and out of distribution: formats, suites, scorers and reports.

Typical use is the CLI (`rewardlab eval`); the library entry point is `run_evaluation`.
"""

from rewardlab.evaluate.formats import FORMATS, DataSpec, EvalDataset, load_eval_dataset, parse_data_spec
from rewardlab.evaluate.items import EvalItem, Outcome, item_from_pair, judge
from rewardlab.evaluate.metrics import Row, summarize
from rewardlab.evaluate.runner import EvalResult, ModelResult, ModelSpec, evaluate_models, parse_model_spec
from rewardlab.evaluate.scorers import ImplicitDPOScorer, RewardModelScorer, Scorer, SeqClsScorer, load_scorer
from rewardlab.evaluate.stats import wilson_interval
from rewardlab.evaluate.suites import SUITES, SuiteSource, default_data_root, load_suite
from rewardlab.evaluate.workflow import run_evaluation

__all__ = [
    "FORMATS",
    "SUITES",
    "DataSpec",
    "EvalDataset",
    "EvalItem",
    "EvalResult",
    "ImplicitDPOScorer",
    "ModelResult",
    "ModelSpec",
    "Outcome",
    "RewardModelScorer",
    "Row",
    "Scorer",
    "SeqClsScorer",
    "SuiteSource",
    "default_data_root",
    "evaluate_models",
    "item_from_pair",
    "judge",
    "load_eval_dataset",
    "load_scorer",
    "load_suite",
    "parse_data_spec",
    "parse_model_spec",
    "run_evaluation",
    "summarize",
    "wilson_interval",
]
