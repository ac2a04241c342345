"""Experiment tracking (`report_to`: TensorBoard or Weights & Biases) through accelerate's trackers.

The trainer logs what it records in ``metrics.json`` at each logging step (`HISTORY_TAGS`) and each
evaluation (`EVAL_TAGS`), with the optimizer step as the step, on the main process only (accelerate's
trackers do nothing elsewhere). TensorBoard event files go to ``logging_dir`` (default
``OUTPUT/runs``), one subfolder per run, named as transformers names them (``Mon01_12-00-00_host``).

A resumed run keeps its run's name (stored in the checkpoint's trainer state) and continues in the same
TensorBoard folder or W&B run. The steps after the checkpoint were logged by the interrupted run too;
TensorBoard is told to drop them (``purge_step``), so every step is shown once, from the run that
finished it. W&B keeps the first value it got for a step.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from rewardlab.errors import ConfigError
from rewardlab.train.checkpoint import TrainerState
from rewardlab.train.config import TrainConfig

HISTORY_TAGS = {
    "loss": "train/loss",
    "reward_loss": "train/reward_loss",
    "reg_loss": "train/reg_loss",
    "train_accuracy": "train/accuracy",
    "lr": "train/learning_rate",
    "pairs_per_s": "train/pairs_per_s",
}
"""``metrics.json`` history key → tracker tag (transformers' ``train/…`` layout)."""

EVAL_TAGS = {"accuracy": "eval/accuracy", "n": "eval/pairs"}
"""``metrics.json`` eval key → tracker tag."""

_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb"}
WANDB_PROJECT = "rewardlab"


def require_tracker(report_to: str) -> None:
    """Refuse a tracker whose package is missing, in one line naming the pip extra."""
    module = _MODULES.get(report_to)
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(f"--report-to {report_to} needs the {module} package, which is not installed: "
                          f"pip install 'rewardlab[{report_to}]'")


def log_with(config: TrainConfig) -> dict[str, Any]:
    """`Accelerator` keyword arguments for the configured tracker (none: no tracker)."""
    if config.report_to == "none":
        return {}
    require_tracker(config.report_to)
    return {"log_with": config.report_to, "project_dir": str(config.tracking_dir())}


def default_run_name() -> str:
    """A new run's name, as transformers names its TensorBoard folders: ``Mon01_12-00-00_hostname``."""
    return f"{datetime.now():%b%d_%H-%M-%S}_{socket.gethostname()}"


def _numbered(name: str, number: int) -> str:
    """``name``, or ``name-N`` for the N-th run of that name in one logging folder."""
    return name if number == 1 else f"{name}-{number}"


def _hparams(config: TrainConfig) -> dict[str, Any]:
    """The config as trackers accept hyperparameters: numbers, strings and booleans."""
    values = {}
    for key, value in config.to_dict().items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        values[key] = "none" if value is None else value
    return values


def start_tracking(accelerator: Accelerator, config: TrainConfig, state: TrainerState) -> bool:
    """Start the configured tracker for this run (fresh or resumed at ``state.step``); False if there is none."""
    if config.report_to == "none":
        return False
    resumed = state.step > 0
    if state.run_name is None:
        name, number = default_run_name(), 1
        while (config.tracking_dir() / _numbered(name, number)).exists():  # two runs started in one second
            number += 1
        state.run_name = _numbered(name, number)
    kwargs: dict[str, Any] = {}
    if config.report_to == "tensorboard":
        project = state.run_name
        if resumed:  # later steps of the interrupted run are replaced by this run's
            kwargs = {"purge_step": state.step + 1}
    else:
        project = os.environ.get("WANDB_PROJECT", WANDB_PROJECT)
        folder = config.tracking_dir()
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
        kwargs = {"name": Path(config.output).resolve().name, "id": re.sub(r"[^A-Za-z0-9_-]", "-", state.run_name),
                  "resume": "allow", "dir": str(folder)}
    accelerator.init_trackers(project, config=None if resumed else _hparams(config),
                              init_kwargs={config.report_to: kwargs})
    return True


def log_history_entry(accelerator: Accelerator, entry: dict[str, Any]) -> None:
    """Log one ``metrics.json`` history entry at its step."""
    values = {tag: float(entry[key]) for key, tag in HISTORY_TAGS.items() if entry.get(key) is not None}
    accelerator.log(values, step=int(entry["step"]))


def log_eval(accelerator: Accelerator, step: int, result: dict[str, Any]) -> None:
    """Log one evaluation (``accuracy``, ``n``) at optimizer step ``step``."""
    values = {tag: float(result[key]) for key, tag in EVAL_TAGS.items() if result.get(key) is not None}
    accelerator.log(values, step=step)


def finish_tracking(accelerator: Accelerator) -> None:
    """Flush and close the trackers.

    Not ``accelerator.end_training()``: that also destroys the process group, which the trainer still
    needs after training (the final barrier) and which a process that trains several models (``repro``)
    needs for the next one.
    """
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []
