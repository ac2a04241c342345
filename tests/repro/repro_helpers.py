"""Helpers shared by the repro tests (a uniquely named module, importable from any test file)."""

from __future__ import annotations

import json
from pathlib import Path

from rewardlab.data.synthetic import generate


def write_pairs(path: Path, n: int, *, margins: bool | str, seed: int = 0) -> Path:
    """TRL standard-format pairs from the synthetic generator; ``margins`` True, False or "half"."""
    lines = []
    for index, pair in enumerate(generate(split="id", n=n, seed=seed)):
        record = {"prompt": pair.prompt[-1]["content"], "chosen": pair.chosen, "rejected": pair.rejected}
        if margins is True or (margins == "half" and index % 2 == 0):
            record["margin"] = 0.5 + (index % 3)
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
