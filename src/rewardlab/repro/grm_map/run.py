"""`run_grm_map`: train every model of the grid, measure accuracy and drift of every snapshot, report.

Top to bottom: check the settings against the folder's `run.json`; draw the pair pool and the
held-out set once (`data/`); plan the evaluation (the held-out pairs and the full OOD suites); run
the base model once over the held-out chosen conversations (the drift reference); then for each
training of the grid (grouped by depth so the frozen layers' outputs are reused): train it with a
snapshot after each epoch of the length axis, score each snapshot on every dataset, measure its
drift, and write its result to `results/<name>.json`. A result on disk is a finished measurement,
so a rerun of the same command continues where the last one stopped, inside a training too (the
trainer resumes from its checkpoint). Model weights are removed once measured unless
``keep_models``. Finally `report.write_map` rebuilds the summary from the results on disk.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardlab.errors import ConfigError
from rewardlab.files import read_json_store, write_json_atomic, write_text_atomic
from rewardlab.repro.grm_map.analysis import result_path
from rewardlab.repro.config import identity_differences
from rewardlab.repro.grm_map.config import MapConfig, Training, depth_settings, describe_depth

RUN_FILE = "run.json"
RUNS_FOLDER = "runs"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class MapResult:
    out_dir: Path
    paths: dict[str, Path]
    measured_now: list[str]
    trained_now: list[str]


def _check_identity(out_dir: Path, config: MapConfig) -> dict[str, Any]:
    """Record the settings that define the models, or refuse a rerun that changes them; the run record."""
    path = out_dir / RUN_FILE
    current = {k: list(v) if isinstance(v, tuple) else v for k, v in config.identity().items()}
    record = read_json_store(path)
    if record:
        diffs = identity_differences(record.get("identity", {}), current, MapConfig.IDENTITY)
        if diffs:
            raise ConfigError(f"{out_dir} holds a grid with other settings ({'; '.join(diffs)}); rerun with the same "
                              "settings to continue it, or choose another --out")
    else:
        record = {"identity": current, "invocations": []}
    return record


def _split_config(config: MapConfig):
    """The `repro grm` settings whose data split this map shares: a pool of the largest --pairs value."""
    from rewardlab.repro.config import ReproConfig

    return ReproConfig(out=config.out, model=config.model, train_data=config.train_data, train_pairs=max(config.pairs),
                       heldout_pairs=config.heldout_pairs, data_seed=config.data_seed, max_length=config.max_length,
                       eval_max_length=config.eval_max_length, methods=("bt",), data_root=config.data_root)


def _pairs_file(train_file: Path, pairs: int) -> Path:
    """The first ``pairs`` pairs of the (already shuffled) pool, so every smaller set is inside every larger one."""
    path = train_file.with_name(f"train-{pairs}.jsonl")
    lines = train_file.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) < pairs:
        raise ConfigError(f"{train_file} holds {len(lines)} pairs, fewer than --pairs {pairs}")
    text = "".join(lines[:pairs])
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return path


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(f.suffix in WEIGHT_SUFFIXES for f in folder.iterdir())


def _drop_weights(folder: Path) -> None:
    """Remove a measured model's weights, keeping its small files (config, metrics, tokenizer)."""
    for file in folder.iterdir():
        if file.is_file() and file.suffix in WEIGHT_SUFFIXES:
            file.unlink()


def _model_dir(run_dir: Path, config: MapConfig, training: Training, epoch: int) -> Path:
    from rewardlab.train.loop import snapshot_dir

    if epoch == config.sorted_epochs[-1]:
        return run_dir
    return snapshot_dir(run_dir, epoch * config.steps_per_epoch(training.pairs))


def _history_until(metrics: dict[str, Any], step: int) -> list[dict[str, Any]]:
    return [entry for entry in metrics.get("history", []) if entry["step"] <= step]


def run_grm_map(config: MapConfig, *, echo: Callable[[str], None] = print, progress: bool = True) -> MapResult:
    """Run (or finish) the grid and write ``map.md``, ``map.json``, ``map.png`` and ``drift.png`` to ``config.out``."""
    import torch

    previous = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, echo, progress)
    finally:
        torch.set_num_threads(previous)


def _run(config: MapConfig, echo: Callable[[str], None], progress: bool) -> MapResult:
    from datetime import datetime, timezone

    from rewardlab.machine import describe_machine
    from rewardlab.models.frozen_cache import FrozenLayerCache
    from rewardlab.models.registry import load_tokenizer
    from rewardlab.repro.data import prepare_split
    from rewardlab.repro.drift import base_pass, model_drift
    from rewardlab.repro.evaluation import evaluate_model, plan_evaluation
    from rewardlab.repro.grm_map.report import write_map
    from rewardlab.train.loop import train

    began = time.perf_counter()
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _check_identity(out_dir, config)
    invocation = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": 0.0,
                  "command": config.to_command(), "machine": describe_machine(("torch", "transformers", "peft"))}
    record["invocations"].append(invocation)

    def save_record() -> None:
        invocation["wall_s"] = round(time.perf_counter() - began, 1)
        write_json_atomic(out_dir / RUN_FILE, record)

    save_record()
    split = prepare_split(_split_config(config), out_dir, load_tokenizer(config.model), echo=echo)
    plan = plan_evaluation(split, config.suites, data_root=config.data_root, limit=None, seed=config.data_seed)
    for name, reason in plan.excluded.items():
        echo(f"evaluation: {name} left out: {reason}")
    echo(f"evaluation: in-distribution {len(plan.in_distribution.items)} pairs; out-of-distribution "
         + (", ".join(f"{d.name} {len(d.items)}" for d in plan.out_of_distribution) or "none"))

    trainings = config.trainings()
    pending = [t for t in trainings
               if any(not result_path(out_dir, t.measurement(e)).is_file() for e in config.sorted_epochs)]
    echo(f"grid: {len(trainings)} trainings, {len(config.measurements())} measured models "
         f"({len(pending)} trainings still to do)")
    measured_now: list[str] = []
    trained_now: list[str] = []
    if pending:
        echo("drift reference: the base model over the held-out chosen conversations")
        reference = base_pass(config.model, split.heldout_file, config.max_length, device=config.device)
        record["base_nll_per_token"] = reference.nll_per_token
        save_record()
        # Every model of a depth shares the base's frozen lower layers: their outputs run once per pair and conversation.
        cache = FrozenLayerCache(max(1, int(config.frozen_cache_gb * 2**30)))
    for number, training in enumerate(pending, start=1):
        run_dir = out_dir / RUNS_FOLDER / training.name
        train_config = config.train_config(training, _pairs_file(split.train_file, training.pairs), run_dir)
        metrics_file = run_dir / "metrics.json"
        if metrics_file.is_file():
            unmeasured = [e for e in config.sorted_epochs if not result_path(out_dir, training.measurement(e)).is_file()]
            if json.loads(metrics_file.read_text(encoding="utf-8")).get("steps") != train_config.max_steps:
                echo(f"{run_dir} was trained for other lengths; training it again")
                shutil.rmtree(run_dir)
            elif not all(_has_weights(_model_dir(run_dir, config, training, e)) for e in unmeasured):
                echo(f"{run_dir}: the weights of an unmeasured epoch were removed; training it again")
                shutil.rmtree(run_dir)
        finished_before = metrics_file.is_file()
        echo(f"\n[{number}/{len(pending)}] {training.name}: {training.variant}, {describe_depth(training.depth)}, "
             f"{training.pairs} pairs, {config.sorted_epochs[-1]} epochs")
        started = time.perf_counter()
        result = train(train_config, echo=echo, progress_desc=f"train {training.name}", frozen_cache=cache)
        train_seconds = time.perf_counter() - started
        if not finished_before:
            trained_now.append(training.name)
        for epoch in config.sorted_epochs:
            name = training.measurement(epoch)
            if result_path(out_dir, name).is_file():
                continue
            model_dir = _model_dir(run_dir, config, training, epoch)
            started = time.perf_counter()
            outcomes = evaluate_model(name, model_dir, plan, out_dir, device=config.device,
                                      batch_size=config.eval_batch_size, progress=progress, frozen_cache=cache)
            drift = model_drift(model_dir, reference, split.heldout_file, config.max_length,
                                trainable_top_layers=depth_settings(training.depth)["trainable_top_layers"],
                                device=config.device, frozen_cache=cache)
            step = epoch * config.steps_per_epoch(training.pairs)
            write_json_atomic(result_path(out_dir, name), {
                "name": name, "training": asdict(training), "variant": training.variant, "epoch": epoch, "step": step,
                "outcomes": outcomes.outcomes, "drift": drift.to_dict(),
                "train_history": _history_until(result.metrics, step),
                "train_s": None if finished_before else round(train_seconds, 1),
                "eval_s": round(time.perf_counter() - started, 1),
            })
            measured_now.append(name)
            echo(f"{name}: drift NLL {drift.nll_change:+.4f} nat/token, CKA {drift.cka_response:.4f} (response) "
                 f"{drift.cka_last:.4f} (last token); scored in {time.perf_counter() - started:.0f} s")
            if not config.keep_models:
                _drop_weights(model_dir)
            save_record()
    save_record()
    paths = write_map(config, plan, out_dir, record)
    save_record()
    echo(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return MapResult(out_dir, paths, measured_now, trained_now)
