"""One configuration dataclass for reward-model training (TRL style), loadable from YAML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardlab.losses import LossConfig


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
    log_interval: int = 10
    resume: bool = False
    overwrite: bool = False  # replace a finished run in `output` (refused otherwise)
    progress: bool = True

    def __post_init__(self) -> None:
        self.loss_config()  # validates loss names and weights early
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        if self.truncation not in ("drop", "prompt-left"):
            raise ValueError(f"truncation must be 'drop' or 'prompt-left', got {self.truncation!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be at least 1")
        if self.frozen_cache_gb < 0:
            raise ValueError(f"frozen_cache_gb must be 0 (off) or more, got {self.frozen_cache_gb}")
        if self.lora and self.trainable_top_layers is not None:
            raise ValueError("choose LoRA or trainable_top_layers (frozen lower layers), not both")

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

    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, **overrides: Any) -> "TrainConfig":
        """Build from an optional YAML file, then apply non-None overrides (CLI flags win)."""
        values: dict[str, Any] = {}
        if yaml_path is not None:
            values.update(load_yaml_config(yaml_path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of TrainConfig fields; unknown keys are an error naming the key and file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    normalized = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(normalized) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return normalized
