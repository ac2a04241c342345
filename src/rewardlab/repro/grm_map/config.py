"""Settings and grid of `rewardlab repro grm-map`: where does GRM's regularizer pay?

The grid crosses trainable depth × training pairs × training length × regularizer weight α,
for BT and the GRM variants, over several seeds. Within a (depth, pairs, seed) group every model
sees the same pairs in the same order; the lengths are snapshots of one run with a constant
learning rate after a warm-up of a tenth of the first epoch, so the epoch-k snapshot is exactly
what a k-epoch run would have been.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rewardlab.errors import ConfigError
from rewardlab.repro.config import HH_RLHF_HARMLESS
from rewardlab.repro.methods import METHODS

if TYPE_CHECKING:
    from pathlib import Path

    from rewardlab.train.config import TrainConfig

BASELINE = "bt"
REGULARIZED = ("grm-sft-linear", "grm-dpo-noref")
"""Methods compared with BT in each cell; each differs from BT only in its regularizer (linear heads)."""
METHOD_ALIASES = {"grm-sft": "grm-sft-linear"}
DEPTH_PATTERN = re.compile(r"^(top-(\d+)|lora|full)$")

BUDGET_NOTE = (
    "The default grid: depths top-4 and top-12 of smollm2-135m's 30 layers, 256 training pairs, lengths 1 and 4 "
    "epochs (32 and 128 steps of 8 pairs, lr 1e-4), BT and GRM-SFT (linear head) at α 0.01 and 0.1, seeds 0 and 1: "
    "12 trainings and 24 evaluated models, each scored on 200 held-out pairs and the full offline OOD sets (HHH "
    "221, LLMBar Natural 100, MT-Bench human 200) at up to 512 tokens. Measured: 96 min on an otherwise idle 2-core "
    "AMD EPYC (top-4 trainings 1.7-3.1 min, top-12 5.3-6.5 min; scoring 0.8 min (top-4) and 2.2-2.6 min (top-12) "
    "per model, 5-6 min for the first of each depth). A bigger grid on a GPU: --depths top-4 top-12 lora full "
    "--pairs 256 1024 --epochs 1 2 4 --alphas 0.01 0.05 0.1 --methods grm-sft grm-dpo-noref --seeds 0 1 2 --bf16."
)


def parse_depth(text: str) -> str:
    """``top-N`` (the top N decoder layers train), ``lora`` (LoRA on every layer) or ``full``."""
    match = DEPTH_PATTERN.match(text)
    if not match or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ConfigError(f"unknown depth {text!r}: use top-N (N ≥ 1), lora or full")
    return text


def depth_settings(depth: str) -> dict[str, Any]:
    """The trainer settings a depth stands for."""
    if depth == "lora":
        return {"lora": True, "trainable_top_layers": None}
    if depth == "full":
        return {"lora": False, "trainable_top_layers": None}
    return {"lora": False, "trainable_top_layers": int(depth.removeprefix("top-"))}


def describe_depth(depth: str) -> str:
    if depth == "lora":
        return "LoRA r=32, α=64 on q,k,v,o of every layer"
    if depth == "full":
        return "all weights but the embeddings"
    return f"top {depth.removeprefix('top-')} layers"


@dataclass(frozen=True)
class Training:
    """One reward-model training of the grid; its snapshots are the grid's length axis."""

    depth: str
    pairs: int
    method: str
    alpha: float | None  # None for BT, which has no regularizer
    seed: int

    @property
    def variant(self) -> str:
        """The method with its α, e.g. ``bt`` or ``grm-sft-linear@0.1``."""
        return self.method if self.alpha is None else f"{self.method}@{self.alpha:g}"

    @property
    def name(self) -> str:
        alpha = "" if self.alpha is None else f"-a{self.alpha:g}"
        return f"{self.depth}-p{self.pairs}-{self.method}{alpha}-s{self.seed}"

    def measurement(self, epoch: int) -> str:
        """The name of this training's model after ``epoch`` epochs."""
        return f"{self.name}-e{epoch}"


@dataclass(frozen=True)
class MapConfig:
    """Everything one `rewardlab repro grm-map` run needs.

    ``IDENTITY`` fields fix what every model is; a rerun into the same folder must keep them. The
    axes (depths, pairs, epochs, alphas, methods, seeds) may grow or shrink: finished models are reused.
    """

    out: str = "repro-grm-map"
    model: str = "smollm2-135m"
    train_data: str = HH_RLHF_HARMLESS
    depths: tuple[str, ...] = ("top-4", "top-12")
    pairs: tuple[int, ...] = (256,)
    epochs: tuple[int, ...] = (1, 4)
    alphas: tuple[float, ...] = (0.01, 0.1)
    methods: tuple[str, ...] = ("grm-sft-linear",)
    seeds: tuple[int, ...] = (0, 1)
    heldout_pairs: int = 200
    data_seed: int = 0
    batch_size: int = 8
    lr: float = 1e-4
    beta: float = 0.1
    max_length: int = 256
    eval_max_length: int = 512
    bf16: bool = False
    suites: tuple[str, ...] = ("offline",)
    eval_batch_size: int = 16
    data_root: str | None = None
    device: str | None = None
    threads: int | None = None
    frozen_cache_gb: float = 6.0
    keep_models: bool = False
    bootstrap_samples: int = 2000

    IDENTITY = ("model", "train_data", "heldout_pairs", "data_seed", "batch_size", "lr", "beta", "max_length",
                "eval_max_length", "bf16", "suites")

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(METHOD_ALIASES.get(m, m) for m in self.methods))
        for name in ("depths", "pairs", "epochs", "alphas", "methods", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"--{name} needs at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"a value is listed twice in --{name} {' '.join(map(str, values))}")
        for depth in self.depths:
            parse_depth(depth)
        unknown = [m for m in self.methods if m not in REGULARIZED]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)} for --methods; choose from grm-sft, "
                              f"{', '.join(REGULARIZED)} (BT is always trained)")
        for name in ("heldout_pairs", "batch_size", "max_length", "eval_max_length", "eval_batch_size",
                     "bootstrap_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if any(p < self.batch_size for p in self.pairs):
            raise ConfigError(f"every --pairs value must be at least --batch-size ({self.batch_size}), got {list(self.pairs)}")
        if any(e < 1 for e in self.epochs):
            raise ConfigError(f"--epochs values must be at least 1, got {list(self.epochs)}")
        if any(not 0 < a < 1 for a in self.alphas):
            raise ConfigError(f"--alphas values must lie strictly between 0 and 1, got {list(self.alphas)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.eval_max_length < self.max_length:
            raise ConfigError(f"--eval-max-length ({self.eval_max_length}) must be at least --max-length ({self.max_length})")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.frozen_cache_gb < 0:
            raise ConfigError(f"--frozen-cache-gb must be 0 (off) or more, got {self.frozen_cache_gb}")

    @property
    def sorted_epochs(self) -> tuple[int, ...]:
        return tuple(sorted(self.epochs))

    def steps_per_epoch(self, pairs: int) -> int:
        return pairs // self.batch_size

    def trainings(self) -> list[Training]:
        """Every training of the grid, grouped so that the frozen-layer cache is reused: by depth, then pairs,
        then seed, BT first."""
        variants: list[tuple[str, float | None]] = [(BASELINE, None)]
        variants += [(m, a) for m in self.methods for a in self.alphas]
        return [Training(d, p, m, a, s) for d in self.depths for p in self.pairs for s in self.seeds for m, a in variants]

    def measurements(self) -> list[tuple[Training, int]]:
        """Every (training, epoch) the map evaluates."""
        return [(t, e) for t in self.trainings() for e in self.sorted_epochs]

    def identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.IDENTITY}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_command(self) -> str:
        """The command line that reproduces this grid, every setting spelled out."""
        args = ["rewardlab", "repro", "grm-map", "--out", self.out, "--model", self.model, "--train-data", self.train_data,
                "--depths", *self.depths, "--pairs", *map(str, self.pairs), "--epochs", *map(str, self.epochs),
                "--alphas", *(f"{a:g}" for a in self.alphas), "--methods", *self.methods,
                "--seeds", *map(str, self.seeds), "--heldout-pairs", str(self.heldout_pairs),
                "--data-seed", str(self.data_seed), "--batch-size", str(self.batch_size), "--lr", f"{self.lr:g}",
                "--beta", f"{self.beta:g}", "--max-length", str(self.max_length),
                "--eval-max-length", str(self.eval_max_length), "--suites", *self.suites]
        if self.bf16:
            args.append("--bf16")
        if self.data_root is not None:
            args += ["--data-root", self.data_root]
        return shlex.join(args)

    def train_config(self, training: Training, train_file: "Path", output: "Path") -> "TrainConfig":
        """The trainer settings of one training: constant lr after a warm-up of a tenth of the first epoch,
        snapshots after every epoch of the length axis but the last (the finished model is the last)."""
        from rewardlab.train.config import TrainConfig

        method = METHODS[training.method]
        per_epoch = self.steps_per_epoch(training.pairs)
        total = per_epoch * self.sorted_epochs[-1]
        return TrainConfig(
            model=self.model,
            data=str(train_file),
            output=str(output),
            loss=method.loss,
            reg=method.reg,
            alpha=training.alpha if training.alpha is not None else 0.01,
            beta=self.beta,
            head=method.head,
            **depth_settings(training.depth),
            max_steps=total,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_scheduler_type="constant_with_warmup",
            warmup_ratio=(round(0.1 * per_epoch) + 0.5) / total,  # the trainer takes int(ratio × total) steps
            bf16=self.bf16,
            max_length=self.eval_max_length,
            truncation="prompt-left",
            seed=training.seed,
            snapshot_steps=[e * per_epoch for e in self.sorted_epochs[:-1]],
            save_steps=max(1, per_epoch // 2),
            log_interval=max(1, min(10, per_epoch // 4)),
            frozen_cache_gb=self.frozen_cache_gb,
            resume=True,
        )

