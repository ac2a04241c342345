"""`rewardlab rl-overopt run`: argument parsing only; the work happens in `rewardlab.overopt.rl_study`."""

from __future__ import annotations

import argparse
import shlex
import sys


def add_rl_arguments(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The `RLConfig` flags (``--rl-steps`` … when ``prefix`` is ``rl-``), shared with `repro overopt`."""
    import dataclasses

    from rewardlab.overopt.config import RL_TRAINERS, RLConfig

    d = {f.name: f.default for f in dataclasses.fields(RLConfig) if f.default is not dataclasses.MISSING}
    dest = prefix.replace("-", "_")

    def add(flag: str, name: str, **options: object) -> None:
        p.add_argument(f"--{prefix}{flag}", dest=f"{dest}{name}", default=d[name], **options)

    add("trainer", "trainer", choices=RL_TRAINERS,
        help="TRL trainer: grpo (GRPOTrainer, default: advantages standardized per prompt, so proxies' scales do not "
             "matter) or rloo (RLOOTrainer)")
    add("steps", "steps", type=int, help="optimizer steps per proxy (default: %(default)s)")
    add("batch-size", "batch_size", type=int, help="completions per step (default: %(default)s)")
    add("num-generations", "num_generations", type=int, help="completions per prompt (default: %(default)s)")
    add("lr", "lr", type=float, help="learning rate, constant (default: %(default)s)")
    add("beta", "beta", type=float, help="KL coefficient (default: %(default)s)")
    p.add_argument(f"--{prefix}full-finetune", dest=f"{dest}lora", action="store_false",
                   help="train every weight of the policy instead of a LoRA adapter")
    add("lora-r", "lora_r", type=int, help="LoRA rank (default: %(default)s)")
    add("eval-every", "eval_every", type=int, help="steps between held-out evaluations (default: %(default)s)")
    add("eval-prompts", "eval_prompts", type=int, help="held-out prompts per evaluation (default: %(default)s)")
    add("eval-samples", "eval_samples", type=int, help="samples per held-out prompt (default: %(default)s)")
    p.add_argument(f"--{prefix}bf16", dest=f"{dest}bf16", action="store_true", help="bf16 policy training (GPUs)")
    p.add_argument(f"--{prefix}vllm", dest=f"{dest}use_vllm", action="store_true",
                   help="TRL's vLLM generation (a GPU with vllm installed)")
    p.add_argument(f"--{prefix}gradient-checkpointing", dest=f"{dest}gradient_checkpointing", action="store_true",
                   help="recompute activations in the backward pass (large policies on small GPUs)")


def rl_config_from(args: argparse.Namespace, *, prefix: str = "", **fields: object) -> object:
    """The `RLConfig` of parsed `add_rl_arguments` flags, plus ``fields``."""
    from rewardlab.overopt.config import RLConfig

    dest = prefix.replace("-", "_")
    names = ("trainer", "steps", "batch_size", "num_generations", "lr", "beta", "lora", "lora_r", "eval_every",
             "eval_prompts", "eval_samples", "bf16", "use_vllm", "gradient_checkpointing")
    return RLConfig(**{name: getattr(args, dest + name) for name in names}, **fields)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `rl-overopt` and its `run` command."""
    import dataclasses

    from rewardlab.overopt.config import BonConfig

    d = {f.name: f.default for f in dataclasses.fields(BonConfig) if f.default is not dataclasses.MISSING}
    group = subparsers.add_parser("rl-overopt", help="RL over-optimization: optimize a policy against each proxy "
                                                     "with TRL and watch the gold")
    commands = group.add_subparsers(dest="rl_command", required=True)
    p = commands.add_parser(
        "run",
        help="train proxies (as `bon run` does), then RL against each; plot gold and proxy against KL",
        description=(
            "Train one proxy reward model per --proxy recipe on gold-labelled pairs of the policy's responses to "
            "synthetic-task prompts (exactly as `rewardlab bon run` does, reusing its folder), then optimize the "
            "policy against each proxy with TRL's GRPOTrainer (LoRA by default). Every --eval-every steps the "
            "held-out prompts' responses are scored by the proxy and the gold, with the KL to the initial policy. "
            "Writes OUT/rl/rl_curves.csv, rl_curves.png, rl_report.md and rl_report.json, and every evaluated "
            "generation to OUT/rl/RECIPE/generations.jsonl. Rerunning resumes from the last checkpoint."
        ),
    )
    p.add_argument("--policy", default="smollm2-135m",
                   help="causal LM to optimize, also the one whose samples train the proxies (default: %(default)s)")
    p.add_argument("--out", default="rl-overopt-output", help="output folder (default: %(default)s)")
    p.add_argument("--gold", default=d["gold"], help="synthetic (programmatic correctness) or a reward-model folder")
    p.add_argument("--proxy", dest="proxies", action="append", metavar="RECIPE",
                   help="proxy recipe, repeatable, as for `bon run` (default: bt and grm-sft)")
    p.add_argument("--proxy-model", dest="proxy_model", default=d["proxy_model"], help="base model of the proxies")
    p.add_argument("--families", type=lambda text: [f for f in text.split(",") if f],
                   default=["arithmetic", "capitals", "elements", "units", "list_count"],
                   help="task families (default: the five smollm2-135m sometimes solves)")
    p.add_argument("--train-prompts", dest="train_prompts", type=int, default=96,
                   help="prompts the proxies' pairs come from and RL trains on (default: %(default)s)")
    p.add_argument("--train-k", dest="train_k", type=int, default=16, help="samples per training prompt")
    p.add_argument("--label-noise", dest="label_noise", type=float, default=0.0,
                   help="fraction of proxy training labels flipped, e.g. 0.25")
    p.add_argument("--proxy-steps", dest="proxy_steps", type=int, default=d["proxy_steps"])
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=d["max_new_tokens"])
    p.add_argument("--seed", type=int, default=d["seed"])
    add_rl_arguments(p)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rewardlab.overopt.config import BonConfig
    from rewardlab.overopt.rl_study import rl_config_for, run_rl_study

    model = args.policy.removeprefix("hf:")
    study = BonConfig(policy=f"hf:{model}", out=args.out, gold=args.gold, proxy_model=args.proxy_model,
                      proxies=args.proxies or ["bt", "grm-sft"], families=args.families,
                      train_prompts=args.train_prompts, train_k=args.train_k, eval_prompts=max(1, args.eval_prompts),
                      label_noise=args.label_noise, proxy_steps=args.proxy_steps, max_new_tokens=args.max_new_tokens,
                      seed=args.seed, progress=args.progress)
    rl = rl_config_from(args, policy=model, max_new_tokens=args.max_new_tokens, seed=args.seed, progress=args.progress)
    run_rl_study(rl_config_for(study, rl), study, command="rewardlab " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None)
    return 0
