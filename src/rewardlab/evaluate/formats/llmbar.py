"""LLMBar (Zeng et al. 2023): ``{"input", "output_1", "output_2", "label"}`` records.

``label`` (1 or 2) names the better output: chosen = ``output_{label}``, rejected = the other;
the prompt is one user turn. The same layout holds LLMBar's processed MT-Bench set (human
judgments, turn 1 only, ties removed, 200 pairs).
"""

from __future__ import annotations

from pathlib import Path

from rewardlab.data.loaders import DataError, LoadReport
from rewardlab.data.pair import PreferencePair
from rewardlab.evaluate.formats.common import read_records, require, require_str


def load_llmbar(path: str | Path, *, report: LoadReport | None = None) -> list[PreferencePair]:
    """Load an LLMBar ``dataset.json`` (or JSONL/parquet with the same fields)."""
    pairs: list[PreferencePair] = []
    for location, record in read_records(path):
        prompt = require_str(record, "input", location)
        outputs = {1: require_str(record, "output_1", location), 2: require_str(record, "output_2", location)}
        label = require(record, "label", location)
        if isinstance(label, str) and label.strip() in ("1", "2"):
            label = int(label)
        if label not in (1, 2) or isinstance(label, bool):
            raise DataError(location, f"field 'label' must be 1 or 2, got {label!r}")
        pairs.append(
            PreferencePair(
                prompt=({"role": "user", "content": prompt},),
                chosen=outputs[label],
                rejected=outputs[3 - label],
                source=location,
                meta={"label": label},
            )
        )
    return pairs
