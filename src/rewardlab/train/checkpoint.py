"""Training checkpoints: trainable weights, optimizer, scheduler and RNG state, written atomically.

Frozen weights are not stored: they are re-created exactly from the base model, so a checkpoint
of a LoRA or frozen-lower-layers run stays small. Every process's random-number streams are kept
(one entry per rank), so a resumed run, on one process or several, ends where an uninterrupted run
of the same seed would. Under several processes the main process writes the checkpoint and every
process reads it back.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rewardlab.files import create_temp_dir, honour_umask
from rewardlab.models.persistence import CheckpointError

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
RNG_FILE = "rng.pt"


@dataclass
class TrainerState:
    """Where training is: optimizer steps taken, the log history so far, and the run's shape.

    ``num_processes`` and ``pairs_per_step`` let a resume check it continues the same run;
    ``run_name`` lets it continue the same tracker run (TensorBoard folder, W&B run id).
    """

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    num_processes: int = 1
    pairs_per_step: int | None = None
    run_name: str | None = None


def rng_state() -> dict[str, Any]:
    """This process's random-number streams (Python, NumPy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainerState,
    keep: int = 1,
    *,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step-N`` atomically and keep only the newest ``keep``.

    ``rng_states`` holds every process's RNG state in rank order (default: this process's only).
    """
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = create_temp_dir(root, prefix=".tmp-")  # mode follows the umask, unlike mkdtemp
    try:
        save_file(trainable_state_dict(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"ranks": rng_states if rng_states is not None else [rng_state()]}, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
        honour_umask(tmp)  # safetensors writes owner-only files
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    root = run_dir / CHECKPOINT_DIR
    done = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def read_trainer_state(path: Path) -> TrainerState:
    """The `TrainerState` stored in checkpoint folder ``path``."""
    raw = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    known = set(TrainerState.__dataclass_fields__)
    return TrainerState(**{k: v for k, v in raw.items() if k in known})


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *, process_index: int = 0
) -> TrainerState:
    """Restore weights, optimizer, scheduler and this process's RNG streams from ``path``.

    A checkpoint written by fewer processes has no streams for ``process_index``; they are then
    left as they are (the caller has seeded them), and the caller should say so.
    """
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise CheckpointError(
            f"checkpoint {path} does not match this run's trainable parameters "
            f"(missing {missing[:5]}, unexpected {extra[:5]}); was it made with other model/LoRA/freeze settings?"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=False))
    restore_rng(path, process_index)
    return read_trainer_state(path)


def restore_rng(path: Path, process_index: int = 0) -> bool:
    """Restore this process's RNG streams from checkpoint ``path``; False if it holds none for this rank."""
    saved = torch.load(path / RNG_FILE, map_location="cpu", weights_only=False)
    ranks = saved["ranks"] if "ranks" in saved else [saved]  # older checkpoints: one process's streams
    if process_index >= len(ranks):
        return False
    _restore_rng(ranks[process_index])
    return True
