"""From the grid's measurement results to the map: per cell, each variant's accuracy, GRM − BT, drift, verdict.

A cell is (depth, pairs, epochs). Within it, every variant (BT, each GRM method at each α) is
seed-averaged over the seeds it shares with BT in that cell, on the items every measured model of
the map could score; intervals are paired percentile bootstraps over items, the same resamples for
every model (`repro.stats`), so GRM − BT differences are paired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.repro.evaluation import EvalPlan
from rewardlab.repro.grm_map.config import BASELINE, MapConfig
from rewardlab.repro.stats import Estimate, PairedBootstrap, column_estimate, correctness, difference, mean_estimate, seed_matrix

OOD_MEAN = "OOD mean"
HELPS, HURTS, UNCLEAR = "helps", "hurts", "cannot be told apart"
RESULTS_FOLDER = "results"


def result_path(out_dir: Path, name: str) -> Path:
    """Where one measured model's result lives; its presence means the measurement is finished."""
    return out_dir / RESULTS_FOLDER / f"{name}.json"


def verdict(diff: Estimate) -> str:
    """``helps`` when the 95% interval of GRM − BT lies above 0, ``hurts`` below, else ``cannot be told apart``."""
    if math.isnan(diff.value):
        return UNCLEAR
    if diff.low > 0:
        return HELPS
    if diff.high < 0:
        return HURTS
    return UNCLEAR


@dataclass
class VariantResult:
    variant: str
    seeds: tuple[int, ...]
    accuracy: dict[str, Estimate]
    difference: dict[str, Estimate] | None  # None for BT
    drift: dict[str, float]
    verdicts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "seeds": list(self.seeds),
            "accuracy": {k: v.to_dict() for k, v in self.accuracy.items()},
            "difference_vs_bt": None if self.difference is None else {k: v.to_dict() for k, v in self.difference.items()},
            "drift": self.drift, "verdicts": self.verdicts,
        }


@dataclass
class Cell:
    depth: str
    pairs: int
    epoch: int
    steps: int
    variants: list[VariantResult]

    @property
    def label(self) -> str:
        return f"{self.depth}, {self.pairs} pairs, {self.epoch} ep"

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "pairs": self.pairs, "epochs": self.epoch, "steps": self.steps,
                "variants": [v.to_dict() for v in self.variants]}


@dataclass
class MapAnalysis:
    columns: list[str]
    ood_columns: list[str]
    cells: list[Cell]
    measured: int
    planned: int
    unscored: dict[str, int]


def load_results(out_dir: Path, config: MapConfig) -> dict[str, dict[str, Any]]:
    """The results on disk of the grid's measurements, by name (missing ones are simply absent)."""
    found = {}
    for training, epoch in config.measurements():
        path = result_path(out_dir, training.measurement(epoch))
        if path.is_file():
            found[training.measurement(epoch)] = json.loads(path.read_text(encoding="utf-8"))
    return found


def analyze_map(config: MapConfig, plan: EvalPlan, results: dict[str, dict[str, Any]]) -> MapAnalysis:
    """Every cell with BT and at least one other measured variant, in grid order."""
    columns = [d.name for d in plan.datasets]
    ood = [d.name for d in plan.out_of_distribution]
    keep: dict[str, list[int]] = {}
    for dataset in plan.datasets:
        values = [correctness(r["outcomes"][dataset.name]) for r in results.values()]
        keep[dataset.name] = [i for i in range(len(dataset.items)) if all(v[i] is not None for v in values)]
    unscored = {name: len(d.items) - len(keep[name]) for name, d in zip(columns, plan.datasets)}
    bootstrap = PairedBootstrap({name: len(k) for name, k in keep.items()}, config.bootstrap_samples)

    def estimates(names: list[str]) -> dict[str, tuple[Estimate, np.ndarray]]:
        out = {}
        for column in columns:
            per_seed = [correctness(results[n]["outcomes"][column]) for n in names]
            out[column] = column_estimate(seed_matrix(per_seed, keep[column]), bootstrap, column)
        scored = [out[c] for c in ood if keep[c]]
        if scored:
            out[OOD_MEAN] = mean_estimate(scored)
        return out

    cells = []
    trainings = config.trainings()
    for depth in config.depths:
        for pairs in config.pairs:
            for epoch in config.sorted_epochs:
                group = [t for t in trainings if t.depth == depth and t.pairs == pairs]
                by_variant: dict[str, dict[int, str]] = {}
                for t in group:
                    name = t.measurement(epoch)
                    if name in results:
                        by_variant.setdefault(t.variant, {})[t.seed] = name
                if BASELINE not in by_variant or len(by_variant) < 2:
                    continue
                variants = []
                for variant, names_by_seed in by_variant.items():
                    seeds = tuple(s for s in config.seeds if s in names_by_seed and s in by_variant[BASELINE])
                    if not seeds:
                        continue
                    own = estimates([names_by_seed[s] for s in seeds])
                    drifts = [results[names_by_seed[s]]["drift"] for s in seeds]
                    drift = {k: float(np.mean([d[k] for d in drifts])) for k in ("nll_change", "cka_response", "cka_last")}
                    diff = None
                    verdicts: dict[str, str] = {}
                    if variant != BASELINE:
                        base = estimates([by_variant[BASELINE][s] for s in seeds])
                        diff = {c: difference(own[c], base[c]) for c in own}
                        verdicts = {c: verdict(d) for c, d in diff.items()}
                    variants.append(VariantResult(variant, seeds, {c: e for c, (e, _) in own.items()}, diff, drift,
                                                  verdicts))
                variants.sort(key=lambda v: (v.variant != BASELINE, v.variant))
                cells.append(Cell(depth, pairs, epoch, epoch * config.steps_per_epoch(pairs), variants))
    all_columns = columns + ([OOD_MEAN] if ood else [])
    return MapAnalysis(all_columns, ood, cells, len(results), len(config.measurements()), unscored)
