"""From every model's outcomes to the table's numbers: per method and column, seed-averaged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rewardlab.repro.evaluation import EvalPlan, ModelOutcomes
from rewardlab.repro.methods import BASELINE, Method
from rewardlab.repro.stats import Estimate, PairedBootstrap, column_estimate, correctness, difference, mean_estimate, seed_matrix

OOD_MEAN = "OOD mean"


@dataclass
class Analysis:
    """Estimates for the main table (dataset columns + OOD mean) and the subset details."""

    columns: list[str]
    ood_columns: list[str]
    estimates: dict[str, dict[str, Estimate]]
    differences: dict[str, dict[str, Estimate]]
    subsets: dict[str, dict[str, Estimate]]
    subset_columns: list[str]
    unscored: dict[str, int]
    not_applicable: dict[str, str] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()


def model_name(method: str, seed: int) -> str:
    return f"{method}-seed{seed}"


def analyze(
    plan: EvalPlan,
    outcomes: dict[str, ModelOutcomes],
    methods: Sequence[Method],
    seeds: Sequence[int],
    not_applicable: dict[str, str],
    samples: int,
) -> Analysis:
    """Seed-averaged estimates for every method that was trained, on the items every model scored."""
    trained = [m for m in methods if m.name not in not_applicable]
    names = {m.name: [model_name(m.name, s) for s in seeds] for m in trained}
    ood = [d.name for d in plan.out_of_distribution]
    columns = [d.name for d in plan.datasets]

    keep: dict[str, list[int]] = {}
    unscored: dict[str, int] = {}
    for dataset in plan.datasets:
        all_values = [correctness(outcomes[n].outcomes[dataset.name]) for ns in names.values() for n in ns]
        keep[dataset.name] = [i for i in range(len(dataset.items)) if all(values[i] is not None for values in all_values)]
        unscored[dataset.name] = len(dataset.items) - len(keep[dataset.name])

    subset_keys: dict[str, list[int]] = {}
    for dataset in plan.datasets:
        kept = keep[dataset.name]
        subsets = list(dict.fromkeys(dataset.items[i].subset for i in kept))
        if len(subsets) > 1:
            for subset in subsets:
                subset_keys[f"{dataset.name}/{subset}"] = [pos for pos, i in enumerate(kept) if dataset.items[i].subset == subset]

    sizes = {name: len(k) for name, k in keep.items()} | {name: len(k) for name, k in subset_keys.items()}
    bootstrap = PairedBootstrap(sizes, samples)
    estimates: dict[str, dict[str, Estimate]] = {}
    draws: dict[str, dict[str, tuple[Estimate, np.ndarray]]] = {}
    subsets_out: dict[str, dict[str, Estimate]] = {}
    for method in trained:
        draws[method.name] = {}
        subsets_out[method.name] = {}
        matrices = {}
        for dataset in plan.datasets:
            per_seed = [correctness(outcomes[n].outcomes[dataset.name]) for n in names[method.name]]
            matrices[dataset.name] = seed_matrix(per_seed, keep[dataset.name])
            draws[method.name][dataset.name] = column_estimate(matrices[dataset.name], bootstrap, dataset.name)
        scored_ood = [draws[method.name][c] for c in ood if keep[c]]
        if scored_ood:
            draws[method.name][OOD_MEAN] = mean_estimate(scored_ood)
        for key, positions in subset_keys.items():
            dataset_name = key.split("/", 1)[0]
            matrix = matrices[dataset_name][positions]
            subsets_out[method.name][key] = column_estimate(matrix, bootstrap, key)[0]
        estimates[method.name] = {c: e for c, (e, _) in draws[method.name].items()}

    differences: dict[str, dict[str, Estimate]] = {}
    if BASELINE in draws:
        for method in trained:
            if method.name != BASELINE:
                differences[method.name] = {
                    c: difference(draws[method.name][c], draws[BASELINE][c]) for c in draws[method.name]
                }
    all_columns = columns + ([OOD_MEAN] if ood and any(keep[c] for c in ood) else [])
    return Analysis(
        columns=all_columns,
        ood_columns=ood,
        estimates=estimates,
        differences=differences,
        subsets=subsets_out,
        subset_columns=list(subset_keys),
        unscored=unscored,
        not_applicable=dict(not_applicable),
        seeds=tuple(seeds),
    )
