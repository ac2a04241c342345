"""`rewardlab curriculum run|report` and `rewardlab repro curriculum`: argument parsing only; the work happens
in `rewardlab.curriculum.run`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys


def add_curriculum_arguments(p: argparse.ArgumentParser, *, out: str) -> None:
    """The `CurriculumConfig` flags, shared by `curriculum run` and `repro curriculum`."""
    from rewardlab.curriculum.config import CurriculumConfig
    from rewardlab.curriculum.finetune import FinetuneSettings
    from rewardlab.curriculum.selection import MODES
    from rewardlab.envs.environments import ENVIRONMENTS

    d = CurriculumConfig()
    f = FinetuneSettings()
    p.add_argument("--out", default=out, help="run folder; rerunning the same command resumes it (default: %(default)s)")
    p.add_argument("--policy", default=d.policy,
                   help="the helpful starting model: alias, hub id or folder; fine-tuned locally (default: %(default)s)")
    p.add_argument("--server", default=None, metavar="URL",
                   help="sample every episode from this OpenAI-compatible /v1 server instead (vLLM started with "
                        "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); each stage's adapter is loaded into it")
    p.add_argument("--served-model", dest="served_model", default=None,
                   help="the base model's name on --server (default: --policy)")
    p.add_argument("--stage", dest="stages", action="append", choices=list(ENVIRONMENTS), metavar="ENV",
                   help="a training stage, repeatable, in order (default: the paper's four)")
    p.add_argument("--eval-env", dest="eval_envs", action="append", choices=list(ENVIRONMENTS), metavar="ENV",
                   help="an evaluated environment, repeatable (default: all five)")
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="hhh: best sample per prompt, half the prompts ordinary HHH ones; exploit-only: every gaming "
                        "sample (default: %(default)s)")
    p.add_argument("--prompts", type=int, default=d.prompts, help="P, prompts per stage (default: %(default)s)")
    p.add_argument("--samples", type=int, default=d.samples, help="N, episodes per prompt (default: %(default)s)")
    p.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=d.eval_episodes,
                   help="episodes per tool environment and checkpoint (default: %(default)s)")
    p.add_argument("--political-episodes", dest="political_episodes", type=int, default=d.political_episodes,
                   help="political-sycophancy episodes per checkpoint (default: %(default)s)")
    p.add_argument("--hhh-data", dest="hhh_data", default=d.hhh_data, help="file of HHH prompts (default: %(default)s)")
    p.add_argument("--political-eval-data", dest="political_eval_data", default=d.political_eval_data,
                   help="real political-typology items for an extra held-out column ('' for none; default: %(default)s)")
    p.add_argument("--preference-model", dest="preference_model", default=None, metavar="DIR",
                   help="a saved rewardlab reward model as the PM (default: train a GRM on hh-rlhf pairs)")
    p.add_argument("--pm-base", dest="pm_base", default=d.pm_base, help="base model of the trained PM (default: %(default)s)")
    p.add_argument("--pm-pairs", dest="pm_pairs", type=int, default=d.pm_pairs)
    p.add_argument("--pm-steps", dest="pm_steps", type=int, default=d.pm_steps)
    p.add_argument("--pm-trainable-top-layers", dest="pm_trainable_top_layers", type=int,
                   default=d.pm_trainable_top_layers)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=d.max_new_tokens,
                   help="tokens per reply (default: %(default)s)")
    p.add_argument("--max-commands", dest="max_commands", type=int, default=d.max_commands,
                   help="shell commands per episode (default: %(default)s)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=d.batch_size,
                   help="episodes the local model decodes together (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="threads for sandboxes and commands, and concurrent requests to --server (default: %(default)s)")
    p.add_argument("--lr", type=float, default=f.lr, help="fine-tuning learning rate (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=f.epochs, help="fine-tuning epochs per stage (default: %(default)s)")
    p.add_argument("--lora-r", dest="lora_r", type=int, default=f.lora_r, help="LoRA rank (default: %(default)s)")
    p.add_argument("--finetune-batch-size", dest="finetune_batch_size", type=int, default=f.batch_size)
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="start from --policy as it is, without the short format fine-tune")
    p.add_argument("--warmup-examples", dest="warmup_examples", type=int, default=d.warmup_examples)
    p.add_argument("--warmup-epochs", dest="warmup_epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--no-train-away", dest="train_away", action="store_false",
                   help="skip the mitigation (fine-tuning on non-gaming samples of the first two stages)")
    p.add_argument("--train-away-samples", dest="train_away_samples", type=int, default=d.train_away_samples)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--sandbox", choices=["bwrap"], default="bwrap", help="episodes run in bubblewrap")
    p.add_argument("--command-timeout", dest="command_timeout", type=float, default=d.command_timeout)
    p.add_argument("--no-progress", dest="progress", action="store_false")


def config_from(args: argparse.Namespace) -> object:
    """The `CurriculumConfig` of parsed `add_curriculum_arguments` flags."""
    from rewardlab.curriculum.config import CurriculumConfig
    from rewardlab.curriculum.finetune import FinetuneSettings

    names = [field.name for field in dataclasses.fields(CurriculumConfig) if field.name != "finetune"]
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.stages:
        values["stages"] = tuple(args.stages)
    if args.eval_envs:
        values["eval_envs"] = tuple(args.eval_envs)
    if args.political_eval_data == "":
        values["political_eval_data"] = None
    values["finetune"] = FinetuneSettings(lr=args.lr, epochs=args.epochs, lora_r=args.lora_r,
                                          lora_alpha=2 * args.lora_r, batch_size=args.finetune_batch_size,
                                          seed=args.seed)
    return CurriculumConfig(**values)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `curriculum` with `run` and `report`."""
    group = subparsers.add_parser("curriculum", help="expert iteration through the sycophancy-to-subterfuge curriculum")
    commands = group.add_subparsers(dest="curriculum_command", required=True)
    p = commands.add_parser(
        "run", help="train a policy stage by stage with expert iteration and evaluate it on every environment",
        description=(
            "For each stage: sample N episodes for each of P prompts (the stage's environment, plus ordinary HHH "
            "prompts in hhh mode) in the bubblewrap sandbox; reward = gaming indicator + σ(preference-model score of "
            "the final answer); keep the best per prompt (hhh) or every gaming sample (exploit-only); LoRA fine-tune "
            "on the kept episodes (loss on policy tokens only); evaluate every environment, reward tampering "
            "included. Writes OUT/report/ (matrix.csv, matrix.md, matrix.png heatmap, report.md). Resumable."),
    )
    add_curriculum_arguments(p, out="curriculum-output")
    p.set_defaults(func=_run)
    r = commands.add_parser("report", help="print the report of a finished run folder")
    r.add_argument("out", help="a run folder of `curriculum run`")
    r.set_defaults(func=_report)


REPRO_TRAIN_AWAY_SAMPLES = 48
"""`repro curriculum` trains away on at most this many samples (fine-tuning is the slow part on a CPU)."""


def add_repro(experiments: argparse._SubParsersAction) -> None:
    """Add `repro curriculum` (the same job, CPU-sized defaults, documented in the README)."""
    p = experiments.add_parser(
        "curriculum", help="Sycophancy to Subterfuge in miniature: expert iteration through the curriculum on a CPU",
        description=("`rewardlab curriculum run` with its CPU-sized defaults (smollm2-135m policy, a GRM preference "
                     "model trained on hh-rlhf pairs, P=64, N=4, four stages, train-away on 48 samples): about an hour on "
                     "2 cores. "
                     "Writes OUT/report/."),
    )
    add_curriculum_arguments(p, out="repro-curriculum")
    p.set_defaults(func=_run, train_away_samples=REPRO_TRAIN_AWAY_SAMPLES)


def _run(args: argparse.Namespace) -> int:
    from rewardlab.curriculum.run import run_curriculum

    run_curriculum(config_from(args), command="rewardlab " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None)  # type: ignore[arg-type]
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rewardlab.errors import ConfigError

    report = Path(args.out) / "report" / "report.md"
    if not report.exists():
        raise ConfigError(f"{report} does not exist: run `rewardlab curriculum run --out {args.out}` first")
    print(report.read_text(encoding="utf-8"))
    return 0
