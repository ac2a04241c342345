"""`run_evaluation`: the whole `rewardlab eval` job as one library call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewardlab.errors import ConfigError
from rewardlab.evaluate.report import write_report
from rewardlab.evaluate.runner import EvalResult, evaluate_models, parse_model_spec
from rewardlab.evaluate.suites import load_data_specs, load_suite

SCORE_CACHE_FOLDER = "scores"


def run_evaluation(
    models: Sequence[str],
    *,
    suite: str | None = None,
    data: Sequence[str] = (),
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 16,
    reference: str | None = None,
    device: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Load a suite or ``--data`` sources, score them with every model and (with ``out_dir``)
    write the report files. Scores are cached under ``out_dir/scores`` so a rerun resumes."""
    if (suite is None) == (not data):
        raise ConfigError("give exactly one of a suite or data sources")
    if not models:
        raise ConfigError("give at least one model")
    datasets = load_suite(suite, data_root=data_root, limit=limit) if suite else load_data_specs(data, limit=limit)
    cache_dir = Path(out_dir) / SCORE_CACHE_FOLDER if out_dir is not None else None
    result = evaluate_models(
        [parse_model_spec(m) for m in models],
        datasets,
        reference=reference,
        device=device,
        batch_size=batch_size,
        cache_dir=cache_dir,
        progress=progress,
    )
    if out_dir is not None:
        write_report(result, out_dir)
    return result
