"""Named settings of `rewardlab repro grm`: the paper's own scale, ready for an accelerator.

A preset fills every setting it names; options given on the command line override it, so
``--preset paper-gemma2b --model tiny-random --steps 2`` is the same configuration on a tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewardlab.errors import ConfigError
from rewardlab.repro.config import UNIFIED_FEEDBACK_40K, ReproConfig
from rewardlab.repro.methods import METHODS


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any]


PAPER_GEMMA2B = Preset(
    name="paper-gemma2b",
    description=(
        "GRM paper Table 1, 40K setting (Yang et al. 2024, train_grm_lora.sh): gemma-2b-it, LoRA r=32/α=64 on "
        "q,k,v,o, 40K Unified-Feedback pairs (every 20th of all/train without equal ratings), 2 epochs of 24 pairs "
        "per step (the paper's 1 pair × 4 accumulation × 6 GPUs) = 3,333 steps at lr 1e-5, α=0.01, β=0.1, "
        "max length 1024, bf16; evaluated on 1,000 held-out pairs of the same stream (the paper uses Unified-Feedback's "
        "val split) and the full offline OOD sets. Never run by the project: its cost is not measured."
    ),
    values={
        "out": "repro-grm-paper-gemma2b",
        "model": "google/gemma-2b-it",
        "train_data": UNIFIED_FEEDBACK_40K,
        "train_pairs": 40_000,
        "heldout_pairs": 1_000,
        "steps": 3_333,
        "batch_size": 24,
        "lr": 1e-5,
        "alpha": 0.01,
        "beta": 0.1,
        "lora": True,
        "trainable_top_layers": None,
        "max_length": 1024,
        "eval_max_length": 1024,
        "bf16": True,
        "seeds": (0,),
        "methods": tuple(METHODS),  # Unified-Feedback has ratings, so BT + margin runs too
        "suites": ("offline",),
        "eval_limit": None,
        "eval_batch_size": 8,
    },
)

PRESETS: dict[str, Preset] = {p.name: p for p in (PAPER_GEMMA2B,)}


def resolve_repro_config(preset: str | None, options: dict[str, Any]) -> ReproConfig:
    """The configuration of ``preset`` (or the defaults) with ``options`` (given on the command line) on top."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        values.update(PRESETS[preset].values)
    values.update(options)
    if values.get("lora") and "trainable_top_layers" not in values:
        values["trainable_top_layers"] = None
    if values.get("lora") and "trainable_top_layers" in options and "lora" not in options:
        values["lora"] = False  # --trainable-top-layers N|all on the command line replaces the preset's LoRA
    return ReproConfig(**values)
