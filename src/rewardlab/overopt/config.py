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
