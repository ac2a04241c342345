"""RewardBench results in the shape the RewardBench leaderboard reads.

The reference scripts (``scripts/run_rm.py`` for v1, ``scripts/run_v2.py`` for v2, ``run_dpo.py``
for DPO models) save one JSON object per model: ``model``, ``model_type`` (``Seq. Classifier``,
``Custom Classifier`` or ``DPO``, the latter with ``ref_model``), ``chat_template`` (``tokenizer``
when the tokenizer's chat template renders the conversations) and one key per subset present
holding its accuracy (v1) or score (v2, where ``Ties`` is the Ties score). The leaderboard computes
the section scores from those keys; here they are added under the names the reference code
prints and the leaderboard shows: ``Chat``, ``Chat Hard``, ``Safety``, ``Reasoning`` and ``Score``
for v1 (weighted as in `rewardlab.evaluate.rewardbench`), ``Score`` (mean of the subset scores)
for v2. Sections with no subset present are left out rather than set to 0, and the v1 ``Score``
is written only when all four sections are present (a mean over fewer would not be comparable).

Every number is the one in the evaluation report: accuracies use rewardlab's strict rule (a tie
is wrong).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardlab.evaluate.formats.rewardbench import REWARDBENCH2_FORMAT, REWARDBENCH_FORMAT
from rewardlab.evaluate.metrics import DATASET, SECTION, SUBSET
from rewardlab.evaluate.runner import EvalResult, ModelResult
from rewardlab.files import write_text_atomic

LEADERBOARD_FILE = "leaderboard.json"
SCORE_KEY = "Score"
MODEL_TYPES = {
    "rewardlab reward model": "Custom Classifier",
    "sequence classification": "Seq. Classifier",
    "implicit DPO reward": "DPO",
}
SCORE_LABELS = ("RewardBench score", "RewardBench 2 score")  # exact: "RewardBench score (2 of 4 sections)" is left out


def model_record(model: ModelResult, dataset: str) -> dict[str, Any]:
    """One model's leaderboard object for one RewardBench dataset of the evaluation."""
    info = model.info
    record: dict[str, Any] = {
        "model": info.get("path", model.name),
        "model_type": MODEL_TYPES.get(str(info.get("kind")), str(info.get("kind"))),
        "chat_template": info.get("chat_template", "tokenizer"),
    }
    if info.get("reference") is not None:
        record["ref_model"] = info["reference"]
    for row in model.rows:
        if row.dataset != dataset:
            continue
        if row.level in (SUBSET, SECTION):
            record[row.label] = row.accuracy
        elif row.level == DATASET and row.label in SCORE_LABELS:
            record[SCORE_KEY] = row.accuracy
    return record


def leaderboard_results(result: EvalResult) -> dict[str, list[dict[str, Any]]]:
    """Dataset name → one leaderboard object per model, for every RewardBench v1/v2 dataset evaluated."""
    formats = (REWARDBENCH_FORMAT, REWARDBENCH2_FORMAT)
    return {
        dataset.name: [model_record(model, dataset.name) for model in result.models]
        for dataset in result.datasets
        if dataset.format in formats
    }


def write_leaderboard(result: EvalResult, out_dir: str | Path) -> Path | None:
    """Write ``leaderboard.json`` (atomically) when a RewardBench dataset was evaluated; its path or None.

    Without one, a ``leaderboard.json`` left by an earlier run into the same folder is removed, so it
    never sits next to a report it does not belong to."""
    results = leaderboard_results(result)
    path = Path(out_dir) / LEADERBOARD_FILE
    if not results:
        path.unlink(missing_ok=True)
        return None
    write_text_atomic(path, json.dumps(results, indent=4, sort_keys=True, ensure_ascii=False) + "\n")
    return path
