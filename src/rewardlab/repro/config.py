"""Settings of `rewardlab repro grm`, with defaults sized for a 2-core CPU in under two hours.

`BUDGET_NOTE` (printed in the command's help) gives the measured budget of the defaults.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.errors import ConfigError
from rewardlab.repro.methods import METHODS

if TYPE_CHECKING:
    from rewardlab.train.config import TrainConfig

HH_RLHF_HARMLESS = "hh-rlhf-harmless"
HH_RLHF_HARMLESS_FILE = "anthropic-hh-rlhf/harmless-base-test.jsonl.gz"
TRAIN_DATA_ALIASES = {HH_RLHF_HARMLESS: HH_RLHF_HARMLESS_FILE}
UNIFIED_FEEDBACK_40K = "unified-feedback-40k"
UNIFIED_FEEDBACK_HUB = "llm-blender/Unified-Feedback"
HUB_TRAIN_DATA = {UNIFIED_FEEDBACK_40K: (UNIFIED_FEEDBACK_HUB, "all", 20)}
"""GRM's 40K training set: Unified-Feedback's ``all``/``train`` pairs without equal ratings, every 20th one."""

BUDGET_NOTE = (
    "Budget of the defaults, measured on an otherwise idle 2-core AMD EPYC with torch's default 2 threads: "
    "10 models (5 methods x 2 seeds; BT+margin is n/a on hh-rlhf, which has no margins), each trained for "
    "32 steps of 8 pairs of at most 256 tokens (top 4 of 30 layers trainable) and scored on 80 held-out "
    "pairs plus 40 sampled pairs each of HHH, LLMBar Natural and MT-Bench human at up to 512 tokens. "
    "All models share the frozen lower layers' outputs, so only the first model runs them (about 5 min "
    "for its training and scoring); each later one takes 1-2 min. The whole run took 17.9 min "
    "(57 min before the layers' outputs were shared). On a machine shared with other jobs pass --threads 1. "
    "On a GPU raise --steps, --train-pairs, --max-length and --eval-limit, or use --lora."
)


@dataclass(frozen=True)
class ReproConfig:
    """Everything one `rewardlab repro grm` run needs. Fields in `IDENTITY` fix what the trained
    models are; a rerun into the same ``out`` folder must keep them, while methods, seeds, suites
    and the evaluation limit may change (finished work is reused)."""

    out: str = "repro-grm"
    model: str = "smollm2-135m"
    train_data: str = HH_RLHF_HARMLESS
    train_pairs: int = 256
    heldout_pairs: int = 80
    data_seed: int = 0
    steps: int = 32
    batch_size: int = 8
    lr: float = 1e-4
    alpha: float = 0.01
    beta: float = 0.1
    label_smoothing: float = 0.1
    lora: bool = False
    trainable_top_layers: int | None = 4
    max_length: int = 256
    eval_max_length: int = 512
    bf16: bool = False
    seeds: tuple[int, ...] = (0, 1)
    methods: tuple[str, ...] = tuple(METHODS)
    suites: tuple[str, ...] | None = None
    eval_limit: int | None = 40
    eval_batch_size: int = 16
    data_root: str | None = None
    device: str | None = None
    threads: int | None = None
    bootstrap_samples: int = 2000

    IDENTITY = (
        "model", "train_data", "train_pairs", "heldout_pairs", "data_seed", "steps", "batch_size", "lr", "alpha",
        "beta", "label_smoothing", "lora", "trainable_top_layers", "max_length", "eval_max_length", "bf16",
    )

    def __post_init__(self) -> None:
        positive = ("train_pairs", "heldout_pairs", "steps", "batch_size", "max_length", "eval_max_length", "eval_batch_size",
                    "bootstrap_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"--eval-limit must be at least 1, got {self.eval_limit}")
        if self.eval_max_length < self.max_length:
            raise ConfigError(
                f"--eval-max-length ({self.eval_max_length}) must be at least --max-length ({self.max_length})"
            )
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.lora and self.trainable_top_layers is not None:
            raise ConfigError("choose --lora or --trainable-top-layers, not both")
        if self.trainable_top_layers is not None and self.trainable_top_layers < 0:
            raise ConfigError(f"--trainable-top-layers must be 0 or more, got {self.trainable_top_layers}")
        if not self.seeds:
            raise ConfigError("give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"a seed is listed twice in {list(self.seeds)}")
        if not self.methods:
            raise ConfigError("give at least one method")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
        from rewardlab.train.config import TrainConfig

        # Validate the loss settings once, through the trainer's own checks.
        TrainConfig(alpha=self.alpha, beta=self.beta, label_smoothing=self.label_smoothing)

    @property
    def is_synthetic(self) -> bool:
        return self.train_data.startswith("synthetic")

    @property
    def suite_names(self) -> tuple[str, ...]:
        """The OOD suites: as given, else ``offline`` (plus ``synthetic-ood`` for synthetic training data)."""
        if self.suites is not None:
            return self.suites
        return ("synthetic-ood", "offline") if self.is_synthetic else ("offline",)

    def identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.IDENTITY}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["suites"] = list(self.suite_names)
        return data

    def backbone_description(self) -> str:
        if self.lora:
            return "LoRA r=32, α=64 on q,k,v,o (base weights frozen)"
        if self.trainable_top_layers is None:
            return "all weights trained"
        layers = "layer" if self.trainable_top_layers == 1 else "layers"
        return f"top {self.trainable_top_layers} decoder {layers} + final norm trained, lower layers and embeddings frozen"

    def to_command(self) -> str:
        """The full command line that reproduces this run, every setting spelled out."""
        args = ["rewardlab", "repro", "grm", "--out", self.out, "--model", self.model, "--train-data", self.train_data,
                "--train-pairs", str(self.train_pairs), "--heldout-pairs", str(self.heldout_pairs),
                "--data-seed", str(self.data_seed), "--steps", str(self.steps), "--batch-size", str(self.batch_size),
                "--lr", str(self.lr), "--alpha", str(self.alpha), "--beta", str(self.beta),
                "--label-smoothing", str(self.label_smoothing)]
        if self.lora:
            args.append("--lora")
        else:
            args += ["--trainable-top-layers", "all" if self.trainable_top_layers is None else str(self.trainable_top_layers)]
        args += ["--max-length", str(self.max_length), "--eval-max-length", str(self.eval_max_length)]
        if self.bf16:
            args.append("--bf16")
        args += ["--seeds", *map(str, self.seeds), "--methods", *self.methods, "--suites", *self.suite_names]
        args += ["--eval-limit", "none" if self.eval_limit is None else str(self.eval_limit)]
        if self.data_root is not None:
            args += ["--data-root", self.data_root]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        return shlex.join(args)

    def train_config(self, method_name: str, seed: int, train_file: Path, output: Path) -> "TrainConfig":
        """The trainer settings of one (method, seed) model.

        Training pairs were already filtered to ``max_length`` tokens, so the model is saved with
        ``eval_max_length`` and ``prompt-left`` truncation: the length and policy it is scored with
        during evaluation (scoring honours a model's saved truncation setting).
        """
        from rewardlab.train.config import TrainConfig

        method = METHODS[method_name]
        return TrainConfig(
            model=self.model,
            data=str(train_file),
            output=str(output),
            loss=method.loss,
            reg=method.reg,
            alpha=self.alpha,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            head=method.head,
            lora=self.lora,
            trainable_top_layers=None if self.lora else self.trainable_top_layers,
            max_steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_ratio=0.1,
            bf16=self.bf16,
            max_length=self.eval_max_length,
            truncation="prompt-left",
            seed=seed,
            save_steps=max(1, self.steps // 4),
            log_interval=max(1, min(10, self.steps // 8)),
            resume=True,
        )


def identity_differences(
    stored: dict[str, Any], current: dict[str, Any], fields: tuple[str, ...] = ReproConfig.IDENTITY
) -> list[str]:
    """Fields (of a run's identity) whose stored value differs from the current one, as ``name: stored -> current``."""
    diffs = []
    for name in fields:
        old, new = stored.get(name), current.get(name)
        if isinstance(new, tuple):
            new = list(new)
        if old != new:
            diffs.append(f"{name}: {old!r} -> {new!r}")
    return diffs

