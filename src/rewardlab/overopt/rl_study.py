"""The RL over-optimization study, readable top to bottom (`rewardlab rl-overopt run`, a step of `repro overopt`).

1. proxies: the best-of-N study's proxies for the same settings (`train_study_proxies`: its training samples,
   gold-labelled pairs and recipes; found trained when a best-of-N study in the same folder made them);
2. prompts: RL trains on the study's training prompts and is evaluated on the first ``eval_prompts`` of its
   evaluation prompts, which neither the proxies nor the policy ever trained on;
3. RL: `rewardlab.overopt.rl.run_rl`, one resumable run per proxy in ``<study>/rl/<recipe>/``;
4. report: `rewardlab.overopt.rl_report` curves, CSV, PNG and Markdown in ``<study>/rl/``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.machine import describe_machine
from rewardlab.overopt.config import BonConfig, RLConfig
from rewardlab.overopt.rl import RLRun, run_rl
from rewardlab.overopt.rl_report import RLCurve, rl_curve, write_rl_report
from rewardlab.overopt.study import gold_scorer, study_prompts, train_study_proxies

RL_FOLDER = "rl"


@dataclass
class RLStudyResult:
    """Each proxy's run and curve, and the report's files."""

    runs: dict[str, RLRun]
    curves: dict[str, RLCurve]
    paths: dict[str, Path]
    wall_time_s: float
    notes: list[str]


def rl_config_for(study: BonConfig, rl: RLConfig) -> RLConfig:
    """``rl`` with its output inside the study's folder (``<study>/rl``)."""
    return dataclasses.replace(rl, out=str(Path(study.out) / RL_FOLDER))


def run_rl_study(rl: RLConfig, study: BonConfig, *, echo: Callable[[str], None] = print, command: str | None = None,
                 policy: Any = None, frozen_cache: Any = None, proxies: Sequence[str] | None = None,
                 title: str | None = None) -> RLStudyResult:
    """Train (or find) the study's proxies, optimize the policy against each of ``proxies`` (default: all the
    study's recipes) and write the RL report into ``rl.out``; resumable at every step."""
    started = time.perf_counter()
    _, trained = train_study_proxies(study, echo=echo, policy=policy, frozen_cache=frozen_cache)
    wanted = list(proxies) if proxies is not None else list(trained)
    missing = [label for label in wanted if label not in trained]
    if missing:
        from rewardlab.errors import ConfigError

        raise ConfigError(f"RL proxies {', '.join(missing)} are not among the study's recipes ({', '.join(trained)})")
    # Samples of a policy being trained are new every time: the frozen-layer cache would only fill up with them.
    scorers = {label: trained[label].scorer(progress=False) for label in wanted}
    train_prompts, eval_prompts = study_prompts(study)
    runs = run_rl(rl, scorers, gold_scorer(study), train_prompts, eval_prompts[: rl.eval_prompts], echo=echo)
    curves = {label: rl_curve(run) for label, run in runs.items()}
    wall = time.perf_counter() - started
    machine = describe_machine(("torch", "transformers", "trl", "peft"))
    notes = [
        f"Command: `{command or 'rewardlab rl-overopt run'}`. Policy `{rl.policy}` "
        f"({'LoRA r=%d' % rl.lora_r if rl.lora else 'full fine-tuning'}) optimized with TRL's "
        f"{'GRPOTrainer' if rl.trainer == 'grpo' else 'RLOOTrainer'} against each proxy for {rl.steps} steps of "
        f"{rl.batch_size} completions ({rl.num_generations} per prompt, at most {rl.max_new_tokens} tokens, "
        f"temperature {rl.temperature}), learning rate {rl.lr:g} (constant), KL coefficient β = {rl.beta:g}, seed "
        f"{rl.seed}; {len(train_prompts)} training prompts. Held out: {len(eval_prompts[: rl.eval_prompts])} prompts "
        f"x {rl.eval_samples} samples every {rl.eval_every} steps, the same sample seeds each time. Proxies from "
        f"`{study.proxy_model}` trained on gold-labelled pairs of {study.train_prompts} prompts x {study.train_k} "
        f"samples, {study.label_noise:.0%} of labels flipped; gold `{study.gold}`.",
        "Versions and hardware: " + ", ".join(f"{k}={v}" for k, v in machine.items())
        + f". Wall time of this invocation: {wall / 60:.1f} min ("
        + ", ".join(f"{label} {run.wall_time_s / 60:.1f} min" for label, run in runs.items())
        + "; finished steps of earlier invocations are reused, not redone).",
    ]
    paths = write_rl_report(curves, rl.out, notes=notes, **({"title": title} if title else {}))
    echo(f"RL report: {paths['markdown']}, plot: {paths['plot']}, curves: {paths['csv']}")
    return RLStudyResult(runs, curves, paths, wall, notes)
