"""The settings of a best-of-N study (`rewardlab bon run`): one config dataclass, TRL style.

Kept free of heavy imports so that the command line can show its defaults without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewardlab.errors import ConfigError
from rewardlab.policies.base import SamplingSettings

if TYPE_CHECKING:
    from rewardlab.train.config import TrainConfig


@dataclass
class BonConfig:
    """Everything one best-of-N study needs (one config dataclass, TRL style)."""

    policy: str = "hf:smollm2-135m"
    out: str = "bon-output"
    gold: str = "synthetic"  # or a rewardlab reward-model folder / seq-cls checkpoint
    proxies: list[str] = field(default_factory=lambda: ["bt", "grm-sft"])
    proxy_model: str = "smollm2-135m"
    # prompts and samples
    eval_prompts: int = 32
    train_prompts: int = 64
    families: list[str] | None = None
    k: int = 64
    train_k: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    seed: int = 0
    base_url: str | None = None  # openai: policies (e.g. a vLLM server)
    policy_dtype: str = "auto"  # hf: policies: auto (bfloat16 on a GPU that supports it, else float32), float32, ...
    samples_dir: str | None = None  # where the sample stores live (default OUT/samples); studies may share one
    # proxies
    pairs_per_prompt: int | None = 8
    longer_chosen: float | None = None  # length-biased pair selection: this share with the longer response chosen
    label_noise: float = 0.0
    proxy_steps: int = 64
    proxy_batch_size: int = 8
    proxy_lr: float = 1e-4
    proxy_trainable_top_layers: int | None = 4
    proxy_lora: bool = False
    proxy_bf16: bool = False  # bf16 mixed precision for proxy training (GPUs)
    proxy_max_length: int = 512
    frozen_cache_gb: float = 4.0  # proxies' frozen lower layers computed once per sample and pair (0: off)
    # curves
    ns: list[int] | None = None  # default: about 16 values of N spaced evenly in sqrt(KL), 1 and K included
    bootstrap: int = 1000
    baseline: str | None = None  # recipe the others are compared with (default: the first)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.eval_prompts < 1 or self.train_prompts < 1:
            raise ConfigError("eval_prompts and train_prompts must be at least 1")
        if self.k < 2 or self.train_k < 2:
            raise ConfigError(f"k and train_k must be at least 2 (got {self.k}, {self.train_k})")
        if self.longer_chosen is not None and not 0.0 <= self.longer_chosen <= 1.0:
            raise ConfigError(f"longer_chosen must be in [0, 1], got {self.longer_chosen}")
        if not 0.0 <= self.label_noise <= 0.5:
            raise ConfigError(f"label_noise must be in [0, 0.5], got {self.label_noise}")
        if not self.proxies:
            raise ConfigError("name at least one proxy recipe")
        if self.policy_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"policy_dtype must be auto, float32, bfloat16 or float16, got {self.policy_dtype!r}")
        from rewardlab.overopt.gold import FAMILIES  # imported here: the CLI reads the defaults without torch
        from rewardlab.overopt.proxies import resolve_recipe

        unknown = sorted(set(self.families or ()) - set(FAMILIES))
        if unknown:
            raise ConfigError(f"unknown task families {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        labels = [resolve_recipe(spec).label for spec in self.proxies]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"proxy recipes repeat: {', '.join(labels)}")
        if self.baseline is not None and resolve_recipe(self.baseline).label not in labels:
            raise ConfigError(f"baseline {self.baseline!r} is not one of the proxies ({', '.join(labels)})")

    def sampling(self, *, training: bool) -> SamplingSettings:
        """Sampling settings of the evaluation or (with another seed) the training samples."""
        return SamplingSettings(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                                seed=self.seed + (1_000_003 if training else 0))

    def proxy_training(self) -> TrainConfig:
        """The trainer settings every proxy shares (each recipe adds its own loss settings)."""
        from rewardlab.train.config import TrainConfig

        return TrainConfig(
            model=self.proxy_model, data="unused", output="unused", head="linear", lora=self.proxy_lora,
            trainable_top_layers=None if self.proxy_lora else self.proxy_trainable_top_layers,
            max_steps=self.proxy_steps, batch_size=self.proxy_batch_size, lr=self.proxy_lr,
            max_length=self.proxy_max_length, truncation="prompt-left", seed=self.seed, save_steps=16, bf16=self.proxy_bf16,
            eval_limit=None, progress=self.progress,
        )

    def identity(self) -> dict[str, Any]:
        """The settings that define the study's results (a rerun with others is refused)."""
        values = dataclasses.asdict(self)
        for name in ("out", "progress", "base_url", "samples_dir", "frozen_cache_gb", "policy_dtype"):
            values.pop(name)
        for name, unset in _ADDED_LATER.items():  # unset: the same identity as studies made before the option
            if values[name] == unset:
                values.pop(name)
        return values


_ADDED_LATER = {"longer_chosen": None, "proxy_bf16": False}
"""Settings added after the first studies were written, with the value those studies implicitly had."""


RL_TRAINERS = ("grpo", "rloo")


@dataclass
class RLConfig:
    """Everything one RL over-optimization run needs besides its proxies (`rewardlab rl-overopt run`).

    The policy is optimized against each proxy with TRL's `GRPOTrainer` (``trainer="rloo"``: `RLOOTrainer`);
    every ``eval_every`` steps ``eval_samples`` responses to each of ``eval_prompts`` held-out prompts are
    drawn and scored by the proxy and the gold, with the KL to the initial policy. The defaults fit a 2-core
    CPU: `smollm2-135m` with LoRA, 16 completions of at most 48 tokens per step.
    """

    policy: str = "smollm2-135m"  # any causal LM: an alias, a hub id or a folder
    out: str = "rl-output"
    trainer: str = "grpo"
    steps: int = 60
    batch_size: int = 16  # completions per optimizer step (prompts per step: batch_size / num_generations)
    num_generations: int = 4
    lr: float = 5e-4
    beta: float = 0.01  # KL coefficient (TRL's); > 0, so TRL computes and logs its KL estimate
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    max_new_tokens: int = 48
    temperature: float = 1.0
    eval_every: int = 10
    eval_prompts: int = 24
    eval_samples: int = 4
    seed: int = 0
    bf16: bool = False  # GPUs
    use_vllm: bool = False  # TRL's vLLM generation (GPUs with vllm installed)
    gradient_checkpointing: bool = False  # TRL's default is on; off is faster for small policies
    progress: bool = True

    def __post_init__(self) -> None:
        if self.trainer not in RL_TRAINERS:
            raise ConfigError(f"trainer must be one of {', '.join(RL_TRAINERS)}, got {self.trainer!r}")
        for name in ("steps", "batch_size", "eval_every", "eval_prompts", "max_new_tokens", "lora_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_generations < 2 or self.eval_samples < 1:
            raise ConfigError(f"num_generations must be at least 2 and eval_samples at least 1 "
                              f"(got {self.num_generations}, {self.eval_samples})")
        if self.batch_size % self.num_generations:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of num_generations "
                              f"({self.num_generations}): each prompt gets num_generations completions")
        if self.beta < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ConfigError(f"beta must be >= 0 and lr, temperature > 0 (got {self.beta}, {self.lr}, "
                              f"{self.temperature})")

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size // self.num_generations

    def eval_sampling(self) -> SamplingSettings:
        """The held-out sampling settings: the same seeds at every evaluation, so steps compare sample by sample."""
        return SamplingSettings(temperature=self.temperature, top_p=1.0, max_new_tokens=self.max_new_tokens,
                                seed=self.seed + 2_000_003)

    def identity(self) -> dict[str, Any]:
        """The settings that define a run's results (a rerun with others is refused)."""
        values = dataclasses.asdict(self)
        for name in ("out", "progress", "steps", "use_vllm", "gradient_checkpointing"):  # more steps extend a run
            values.pop(name)
        return values
