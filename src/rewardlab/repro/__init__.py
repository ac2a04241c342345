"""Reproduce the GRM paper's Table 1 in miniature: BT baselines and GRM variants trained on the same
data and seeds, evaluated in and out of distribution, with seed-averaged accuracies and intervals.

Entry points: `run_repro_grm(ReproConfig(...))` (`rewardlab repro grm`; `resolve_repro_config` applies a
preset such as ``paper-gemma2b``) and `run_grm_map(MapConfig(...))` (`rewardlab repro grm-map`: GRM − BT
over a grid of depth, pairs, length and α, with hidden-state drift).
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so that building the CLI parser stays fast.
_EXPORTS = {
    "BUDGET_NOTE": "config",
    "ReproConfig": "config",
    "METHODS": "methods",
    "Method": "methods",
    "ReproResult": "workflow",
    "run_repro_grm": "workflow",
    "MapConfig": "grm_map.config",
    "run_grm_map": "grm_map.run",
    "PRESETS": "presets",
    "resolve_repro_config": "presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardlab.repro' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rewardlab.repro.{_EXPORTS[name]}"), name)
