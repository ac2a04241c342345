"""One configuration dataclass for reward-model training (TRL style), loadable from YAML.

Values are converted to the field's declared type wherever they come from, so a YAML ``lr: 1e-4``
(a string to PyYAML, which wants ``1.0e-4``) is the float it looks like; a value that cannot be
converted is a `ConfigError` naming the file and the option. TRL's option names are accepted as
aliases (`TRL_ALIASES`), so a TRL ``RewardConfig`` YAML mostly works as it is.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardlab.errors import ConfigError, RewardlabError, UserFileError
from rewardlab.losses import LossConfig

TRL_ALIASES = {
    "learning_rate": "lr",
    "output_dir": "output",
    "per_device_train_batch_size": "batch_size",
    "num_train_epochs": "epochs",
    "gradient_accumulation_steps": "grad_accum",
    "logging_steps": "log_interval",
}
"""TRL ``RewardConfig`` names → rewardlab names (``max_length``, ``max_steps``, ``seed``, ``bf16`` are shared)."""

LR_SCHEDULERS = ("cosine", "linear", "constant_with_warmup")
"""Learning-rate schedules, named as transformers' ``lr_scheduler_type`` names them."""

REPORT_TO = ("none", "tensorboard", "wandb")
"""Experiment trackers (transformers' ``report_to`` names), driven through accelerate's trackers."""

LOGGING_DIR = "runs"
"""Where TensorBoard event files go inside ``output`` unless ``logging_dir`` says otherwise (as transformers')."""

REQUIRED_FOR_CLI = ("model", "data", "output")
"""What `rewardlab train` needs from flags or --config: a run never falls back to a demo model or data."""

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass
class TrainConfig:
    """Everything a training run needs; CLI flags override values from a YAML file.

    Defaults follow the GRM paper where it has one (α=0.01, β=0.1, SFT regularizer, MLP head,
    LoRA r=32/α=64 on q,k,v,o) and are sized for a small model otherwise.
    """

    model: str = "tiny-random"
    data: str = "synthetic"
    output: str = "runs/reward-model"
    eval_data: str | None = None
    # losses
    loss: str = "bt"
    reg: str = "sft"
    alpha: float = 0.01
    beta: float = 0.1
    label_smoothing: float = 0.1
    center_coefficient: float = 0.0
    # model
    head: str = "mlp"
    head_dropout: float | None = None  # dropout before the reward head (None: the head's default, 0.1)
    lora: bool = False
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    trainable_top_layers: int | None = None
    # optimisation
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"  # as in transformers: cosine, linear or constant_with_warmup
    max_grad_norm: float = 5.0
    bf16: bool = False
    packing: bool = True  # [prompt, chosen, rejected] in one padding-free row; same losses, less compute
    frozen_cache_gb: float = 2.0  # with frozen lower layers: keep their outputs per pair for reuse (0: off)
    # data handling
    max_length: int = 1024
    truncation: str = "drop"
    train_limit: int | None = None
    eval_limit: int | None = 500
    # bookkeeping
    seed: int = 42
    eval_interval: int | None = None
    save_steps: int = 100
    snapshot_steps: list[int] = field(default_factory=list)  # save a loadable model at these steps (snapshots/step-N)
    log_interval: int = 10
    resume: bool = False
    overwrite: bool = False  # replace a finished run in `output` (refused otherwise)
    progress: bool = True
    # experiment tracking and the Hub (transformers' names)
    report_to: str = "none"  # none, tensorboard or wandb, through accelerate's trackers
    logging_dir: str | None = None  # TensorBoard event files (None: OUTPUT/runs)
    push_to_hub: bool = False  # upload the saved model folder when training ends
    hub_model_id: str | None = None  # the Hub repository (None: the output folder's name, in your namespace)
    hub_private_repo: bool = False

    def __post_init__(self) -> None:
        hints = _field_types()
        for f in dataclasses.fields(self):
            setattr(self, f.name, convert_value(f.name, getattr(self, f.name), hints[f.name]))
        if self.max_steps == -1:  # TRL's "no step limit"
            self.max_steps = None
        try:
            self.loss_config()  # validates loss names and weights early
        except RewardlabError:
            raise
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if self.head not in ("linear", "mlp"):
            raise ConfigError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        if self.truncation not in ("drop", "prompt-left"):
            raise ConfigError(f"truncation must be 'drop' or 'prompt-left', got {self.truncation!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"batch_size and grad_accum must be at least 1, got {self.batch_size} and {self.grad_accum}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1 (or -1 / unset for no limit), got {self.max_steps}")
        if self.max_length < 1:
            raise ConfigError(f"max_length must be at least 1 token, got {self.max_length}")
        if self.lr <= 0 or self.epochs <= 0:
            raise ConfigError(f"lr and epochs must be positive, got lr={self.lr} and epochs={self.epochs}")
        if self.frozen_cache_gb < 0:
            raise ConfigError(f"frozen_cache_gb must be 0 (off) or more, got {self.frozen_cache_gb}")
        if self.lora and self.trainable_top_layers is not None:
            raise ConfigError("choose LoRA or trainable_top_layers (frozen lower layers), not both")
        if self.lr_scheduler_type not in LR_SCHEDULERS:
            raise ConfigError(f"lr_scheduler_type must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler_type!r}")
        if self.log_interval < 1:
            raise ConfigError(f"log_interval must be at least 1 optimizer step, got {self.log_interval}")
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"report_to must be one of {', '.join(REPORT_TO)}, got {self.report_to!r}")
        if self.hub_model_id is not None:
            from rewardlab.models.hub import check_repo_id

            check_repo_id(self.hub_model_id, what="hub_model_id")
        if any(step < 1 for step in self.snapshot_steps):
            raise ConfigError(f"snapshot_steps must be optimizer steps of 1 or more, got {self.snapshot_steps}")

    def loss_config(self) -> LossConfig:
        return LossConfig(
            loss=self.loss,
            reg=self.reg,
            alpha=self.alpha,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            center_coefficient=self.center_coefficient,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changed_options(self) -> dict[str, Any]:
        """The options that differ from the defaults, plus model and data: what reproduces this run."""
        defaults = TrainConfig()
        skip = {"output", "resume", "overwrite", "progress", "logging_dir", "report_to", "push_to_hub", "hub_model_id",
                "hub_private_repo"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip and (
            f.name in ("model", "data") or getattr(self, f.name) != getattr(defaults, f.name))}

    def tracking_dir(self) -> Path:
        """Where the trackers write: ``logging_dir``, or ``output/runs``."""
        return Path(self.logging_dir) if self.logging_dir else Path(self.output) / LOGGING_DIR

    def hub_repo_id(self) -> str:
        """The Hub repository ``push_to_hub`` uploads to: ``hub_model_id``, else the output folder's name."""
        return self.hub_model_id or Path(self.output).resolve().name

    @classmethod
    def from_sources(
        cls, yaml_path: str | Path | None = None, *, required: Sequence[str] = (), **overrides: Any
    ) -> "TrainConfig":
        """Build from an optional YAML file, then apply non-None overrides (CLI flags win).

        ``required`` names options that must be given by one of the two (the CLI passes
        `REQUIRED_FOR_CLI`); missing ones are one `ConfigError` naming them all.
        """
        values: dict[str, Any] = {}
        if yaml_path is not None:
            values.update(load_yaml_config(yaml_path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        missing = [name for name in required if values.get(name) in (None, "")]
        if missing:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in missing)
            raise ConfigError(f"missing {flags}: give {'it' if len(missing) == 1 else 'them'} as flags or in the "
                              "--config YAML, e.g. rewardlab train --model tiny-random --data synthetic "
                              "--output runs/rm")
        return cls(**values)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _describe(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args) + " (or null)"
    if typing.get_origin(hint) is list:
        return "a list of " + _describe(args[0]) + "s" if args else "a list"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string"}.get(hint, str(hint))


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint``; raises ValueError (or TypeError) when it is not one."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            try:
                return _convert(value, option)
            except (TypeError, ValueError):
                continue
        raise ValueError(value)
    if origin is list:
        (item,) = typing.get_args(hint) or (str,)
        items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise TypeError(value)
        return [_convert(v, item) for v in items]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(value)
    if hint is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
        raise ValueError(value)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, (int, float)) and math.isfinite(number):
            return float(number)
        raise ValueError(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    return value


def convert_value(name: str, value: Any, hint: Any, *, where: str | None = None) -> Any:
    """Convert one option value to its declared type, or raise a `ConfigError` naming the option (and file)."""
    try:
        return _convert(value, hint)
    except (TypeError, ValueError):
        place = f"{where}: " if where else ""
        raise ConfigError(f"{place}option {name!r} must be {_describe(hint)}, got {value!r}") from None


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of TrainConfig fields (TRL names accepted), each converted to its declared type.

    A missing file is a `UserFileError`; invalid YAML, unknown keys and values of the wrong type are a
    `ConfigError` naming the file and the key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserFileError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UserFileError(f"--config {path} is a folder; give a YAML file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    hints = _field_types()
    normalized: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        name = TRL_ALIASES.get(key, key)
        if name not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{path}: unknown option {raw_key!r}; known: {known} (and TRL's "
                              f"{', '.join(sorted(TRL_ALIASES))})")
        if name in normalized:
            raise ConfigError(f"{path}: option {name!r} is given twice (as {raw_key!r} and another name)")
        normalized[name] = convert_value(name, value, hints[name], where=str(path))
    return normalized
