"""`rewardlab repro grm` and `rewardlab repro overopt`: argument parsing only; the work happens in `rewardlab.repro`."""

from __future__ import annotations

import argparse


def _layers(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of layers or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more layers, got {value}")
    return value


def _limit(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pairs or 'none', got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `repro` and its experiments: `grm`, `overopt`, `curriculum`."""
    from rewardlab.repro.config import BUDGET_NOTE, ReproConfig
    from rewardlab.repro.methods import METHODS
    from rewardlab.repro.presets import PRESETS

    def fmt(value: object) -> str:
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    defaults = ReproConfig()
    group = subparsers.add_parser("repro", help="reproduce paper experiments in miniature")
    experiments = group.add_subparsers(dest="experiment", required=True)
    p = experiments.add_parser(
        "grm",
        argument_default=argparse.SUPPRESS,  # only options given on the command line override a --preset
        help="GRM paper Table 1 in miniature: BT baselines vs GRM, in and out of distribution",
        description=(
            "Train BT, BT+margin (where the data has margins), BT+label smoothing, GRM with DPO-noref and GRM "
            "with SFT (linear and MLP heads) on the same pairs and seeds; evaluate each on a held-out part of "
            "the training source and on out-of-distribution suites; write report.md (accuracy tables with 95% "
            "intervals, mean over seeds), report.json and accuracy.png to --out. Resumable: rerun the same "
            "command after an interruption and finished trainings and evaluations are reused. "
            + BUDGET_NOTE
        ),
    )
    p.add_argument("--preset", choices=list(PRESETS),
                   help="start from named settings: " + "; ".join(f"{n}: {pr.description}" for n, pr in PRESETS.items()))
    p.add_argument("--print-config", dest="print_config", action="store_true",
                   help="print the resolved command (every setting spelled out) and exit without running")
    p.add_argument("--out", help=f"output folder (default: {fmt(defaults.out)})")
    p.add_argument("--model", help=f"base model: smollm2-135m, tiny-random, a hub id or a path (default: {fmt(defaults.model)})")
    p.add_argument(
        "--train-data", dest="train_data",
        help="hh-rlhf-harmless (the hh-rlhf harmless-base test file under the data root), synthetic, or any data spec "
             f"`rewardlab train --data` accepts (default: {fmt(defaults.train_data)})",
    )
    p.add_argument("--train-pairs", dest="train_pairs", type=int, help=f"training pairs (default: {fmt(defaults.train_pairs)})")
    p.add_argument("--heldout-pairs", dest="heldout_pairs", type=int,
                   help=f"pairs of the training source held out for the in-distribution column (default: {fmt(defaults.heldout_pairs)})")
    p.add_argument("--data-seed", dest="data_seed", type=int, help=f"seed of the train/held-out split (default: {defaults.data_seed})")
    p.add_argument("--steps", type=int, help=f"optimizer steps per model (default: {fmt(defaults.steps)})")
    p.add_argument("--batch-size", dest="batch_size", type=int, help=f"pairs per step (default: {fmt(defaults.batch_size)})")
    p.add_argument("--lr", type=float, help=f"learning rate (default: {fmt(defaults.lr)})")
    p.add_argument("--alpha", type=float, help=f"GRM regularizer weight α (default: {fmt(defaults.alpha)})")
    p.add_argument("--beta", type=float, help=f"β inside the SFT/DPO regularizers (default: {fmt(defaults.beta)})")
    p.add_argument("--label-smoothing", dest="label_smoothing", type=float,
                   help=f"ε of BT + label smoothing (default: {fmt(defaults.label_smoothing)})")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (r=32, α=64, q,k,v,o) instead of the top layers")
    p.add_argument("--trainable-top-layers", dest="trainable_top_layers", type=_layers,
                   help=f"train only the top N decoder layers ('all' = full fine-tuning; default: {defaults.trainable_top_layers})")
    p.add_argument("--max-length", dest="max_length", type=int,
                   help=f"training pairs with a side longer than this many tokens are dropped (default: {fmt(defaults.max_length)})")
    p.add_argument("--eval-max-length", dest="eval_max_length", type=int,
                   help=f"scoring length; longer prompts are cut from the left (default: {fmt(defaults.eval_max_length)})")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision for training (GPUs)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), metavar="METHOD",
                   help=f"methods to train: {', '.join(METHODS)} (default: all)")
    p.add_argument("--suites", nargs="+", metavar="SUITE",
                   help="out-of-distribution suites: offline, synthetic-ood (default: offline; plus synthetic-ood when "
                        "training on synthetic data)")
    p.add_argument("--eval-limit", dest="eval_limit", type=_limit,
                   help=f"use at most the first N pairs of each suite dataset, or 'none' (default: {fmt(defaults.eval_limit)})")
    p.add_argument("--eval-batch-size", dest="eval_batch_size", type=int,
                   help=f"pairs per scoring batch (default: {defaults.eval_batch_size})")
    p.add_argument("--data-root", dest="data_root", help="folder with the shared data files (default: ../shared/data)")
    p.add_argument("--device", help="scoring device: cpu, cuda, … (default: cuda if available)")
    p.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: torch's choice); on a CPU shared with other jobs, 1 avoids "
                        "oversubscription, which can slow training several-fold")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars while scoring")
    p.set_defaults(func=_run_grm)
    _register_grm_map(experiments)
    _register_overopt(experiments)


def _register_grm_map(experiments: argparse._SubParsersAction) -> None:
    from rewardlab.repro.grm_map.config import BUDGET_NOTE, MapConfig, parse_depth

    d = MapConfig()
    p = experiments.add_parser(
        "grm-map",
        help="where GRM's regularizer pays: BT vs GRM over depth x pairs x epochs x alpha, with hidden-state drift",
        description=(
            "Train BT and GRM (linear heads) over a grid of trainable depth, training pairs, training length and "
            "regularizer weight, for several seeds; score every model on a held-out set and the full OOD suites, "
            "measure how far its hidden states moved from the base model (held-out NLL, linear CKA), and write "
            "map.md (where GRM helps, hurts or cannot be told apart), map.json, map.png and drift.png to --out. "
            "Resumable: rerun the same command and finished models are reused; axes may be extended. " + BUDGET_NOTE
        ),
    )
    p.add_argument("--out", default=d.out, help="output folder (default: %(default)s)")
    p.add_argument("--model", default=d.model, help="base model (default: %(default)s)")
    p.add_argument("--train-data", dest="train_data", default=d.train_data,
                   help="hh-rlhf-harmless or any data spec `rewardlab train --data` accepts (default: %(default)s)")
    p.add_argument("--depths", nargs="+", type=parse_depth, default=list(d.depths), metavar="DEPTH",
                   help="trainable depths: top-N, lora (every layer), full (default: %(default)s)")
    p.add_argument("--pairs", nargs="+", type=int, default=list(d.pairs), help="training pair counts (default: %(default)s)")
    p.add_argument("--epochs", nargs="+", type=int, default=list(d.epochs),
                   help="training lengths in epochs, snapshots of one run (default: %(default)s)")
    p.add_argument("--alphas", nargs="+", type=float, default=list(d.alphas), help="GRM weights α (default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=["grm-sft"], metavar="METHOD",
                   help="regularized methods compared with BT: grm-sft, grm-dpo-noref (default: grm-sft)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(d.seeds), help="training seeds (default: %(default)s)")
    p.add_argument("--heldout-pairs", dest="heldout_pairs", type=int, default=d.heldout_pairs,
                   help="held-out pairs of the training source (default: %(default)s)")
    p.add_argument("--data-seed", dest="data_seed", type=int, default=d.data_seed)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=d.batch_size, help="pairs per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    p.add_argument("--beta", type=float, default=d.beta, help="β inside the regularizers (default: %(default)s)")
    p.add_argument("--max-length", dest="max_length", type=int, default=d.max_length,
                   help="training pairs with a side longer than this are dropped (default: %(default)s)")
    p.add_argument("--eval-max-length", dest="eval_max_length", type=int, default=d.eval_max_length,
                   help="scoring length (default: %(default)s)")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision for training (GPUs)")
    p.add_argument("--suites", nargs="+", default=list(d.suites), help="OOD suites (default: %(default)s)")
    p.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, default=d.eval_batch_size)
    p.add_argument("--data-root", dest="data_root", help="folder with the shared data files (default: ../shared/data)")
    p.add_argument("--device", help="device: cpu, cuda, … (default: cuda if available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--frozen-cache-gb", dest="frozen_cache_gb", type=float, default=d.frozen_cache_gb,
                   help="memory for the frozen lower layers' outputs shared by the models of a depth (default: %(default)s)")
    p.add_argument("--keep-models", dest="keep_models", action="store_true",
                   help="keep every model's weights (by default they are removed once measured)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars while scoring")
    p.set_defaults(func=_run_grm_map)


def _run_grm_map(args: argparse.Namespace) -> int:
    from rewardlab.repro.grm_map import MapConfig, run_grm_map

    config = MapConfig(
        out=args.out, model=args.model, train_data=args.train_data, depths=tuple(args.depths), pairs=tuple(args.pairs),
        epochs=tuple(args.epochs), alphas=tuple(args.alphas), methods=tuple(args.methods), seeds=tuple(args.seeds),
        heldout_pairs=args.heldout_pairs, data_seed=args.data_seed, batch_size=args.batch_size, lr=args.lr,
        beta=args.beta, max_length=args.max_length, eval_max_length=args.eval_max_length, bf16=args.bf16,
        suites=tuple(args.suites), eval_batch_size=args.eval_batch_size, data_root=args.data_root, device=args.device,
        threads=args.threads, frozen_cache_gb=args.frozen_cache_gb, keep_models=args.keep_models,
    )
    run_grm_map(config, progress=args.progress)
    return 0


def _register_overopt(experiments: argparse._SubParsersAction) -> None:
    import dataclasses

    from rewardlab.cli.rl import add_rl_arguments
    from rewardlab.repro.overopt import BUDGET_NOTE, DEFAULT_PROXIES, DEFAULT_RL_PROXIES, OveroptReproConfig

    d = {f.name: f.default for f in dataclasses.fields(OveroptReproConfig) if f.default is not dataclasses.MISSING}
    p = experiments.add_parser(
        "overopt",
        help="GRM paper's best-of-N over-optimization in miniature: gold vs proxy as N grows, clean and noisy labels",
        description=(
            "Sample K responses per prompt of the synthetic task families from --policy once; for clean labels and "
            "for --label-noise flipped labels, train every --proxy recipe on gold-labelled pairs of other prompts' "
            "responses and estimate each proxy's best-of-N gold and proxy score for N = 1..K (unbiased estimator, "
            "bootstrap intervals over prompts, Gao fit). Writes overopt.md, overopt_curves.png and "
            "overopt_curves.csv to --out, and each condition's full report to --out/CONDITION/. Resumable: rerun the "
            "same command and finished samples, proxies and scores are reused. " + BUDGET_NOTE
        ),
    )
    p.add_argument("--out", default=d["out"], help="output folder (default: %(default)s)")
    p.add_argument("--policy", default=d["policy"], help="hf:MODEL, openai:MODEL (with --base-url, e.g. vLLM) or "
                                                        "replay:FILE (default: %(default)s)")
    p.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server for openai: policies")
    p.add_argument("--policy-dtype", dest="policy_dtype", default=d["policy_dtype"],
                   choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights of an hf: policy (default auto: bfloat16 on a GPU that supports it, else float32)")
    p.add_argument("--gold", default=d["gold"], help="synthetic (programmatic correctness, default) or a reward-model "
                                                    "folder / seq-cls checkpoint (a larger RM as gold)")
    p.add_argument("--proxy-model", dest="proxy_model", default=d["proxy_model"],
                   help="base model of the proxies (default: %(default)s)")
    p.add_argument("--proxy", dest="proxies", action="append", metavar="RECIPE",
                   help=f"proxy recipe, repeatable (default: {', '.join(DEFAULT_PROXIES)})")
    p.add_argument("--families", type=lambda text: tuple(f for f in text.split(",") if f),
                   default=d["families"], help="task families, comma-separated (default: %s)" % ",".join(d["families"]))
    p.add_argument("--label-noise", dest="label_noise", type=float, default=d["label_noise"],
                   help="fraction of training labels flipped in the noisy condition (default: %(default)s)")
    p.add_argument("--longer-chosen", dest="longer_chosen", type=float,
                   help="add a condition of length-biased pairs: this share of each prompt's pairs has the longer "
                        "(higher-gold) response chosen, as length-biased preference data does")
    for flag, name, kind, text in (
        ("--eval-prompts", "eval_prompts", int, "evaluation prompts"),
        ("--train-prompts", "train_prompts", int, "training prompts"),
        ("-k", "k", int, "samples per evaluation prompt"),
        ("--train-k", "train_k", int, "samples per training prompt"),
        ("--max-new-tokens", "max_new_tokens", int, "new tokens per sample"),
        ("--temperature", "temperature", float, "sampling temperature"),
        ("--pairs-per-prompt", "pairs_per_prompt", int, "gold-labelled pairs per training prompt"),
        ("--proxy-steps", "proxy_steps", int, "optimizer steps per proxy"),
        ("--proxy-batch-size", "proxy_batch_size", int, "pairs per proxy step"),
        ("--proxy-lr", "proxy_lr", float, "proxy learning rate"),
        ("--proxy-trainable-top-layers", "proxy_trainable_top_layers", int, "decoder layers trained per proxy"),
        ("--seed", "seed", int, "seed of prompts, samples, pairs, noise and training"),
        ("--bootstrap", "bootstrap", int, "bootstrap resamples of the prompts"),
        ("--frozen-cache-gb", "frozen_cache_gb", float, "memory for the proxies' shared frozen-layer outputs"),
    ):
        p.add_argument(flag, dest=name, type=kind, default=d[name], help=f"{text} (default: %(default)s)")
    p.add_argument("--proxy-bf16", dest="proxy_bf16", action="store_true",
                   help="bf16 mixed precision for proxy training (GPUs)")
    rl_group = p.add_argument_group("RL step", "after best-of-N, RL with TRL against some proxies (--rl-steps 0 skips it)")
    rl_group.add_argument("--rl-policy", dest="rl_policy", metavar="MODEL",
                          help="causal LM the RL step trains (default: the --policy model; needed for openai: policies)")
    rl_group.add_argument("--rl-proxy", dest="rl_proxies", action="append", metavar="RECIPE",
                          help="proxy to optimize against, repeatable (default: %s)" % ", ".join(DEFAULT_RL_PROXIES))
    rl_group.add_argument("--rl-condition", dest="rl_conditions", action="append", metavar="CONDITION",
                          help="label condition of the RL step, repeatable: clean, noise-25, ... (default: clean)")
    add_rl_arguments(rl_group, prefix="rl-")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    p.set_defaults(func=_run_overopt)

    from rewardlab.cli.curriculum import add_repro

    add_repro(experiments)


def _run_overopt(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from rewardlab.cli.rl import rl_config_from
    from rewardlab.overopt.config import RLConfig
    from rewardlab.repro.overopt import OveroptReproConfig, run_repro_overopt

    names = ("out", "policy", "base_url", "policy_dtype", "families", "gold", "proxy_model", "label_noise",
             "longer_chosen", "eval_prompts", "train_prompts", "k", "train_k", "max_new_tokens", "temperature", "pairs_per_prompt", "proxy_steps", "proxy_batch_size",
             "proxy_lr", "proxy_trainable_top_layers", "proxy_bf16", "seed", "bootstrap", "frozen_cache_gb", "progress")
    fields = {name: getattr(args, name) for name in names}
    if args.proxies:
        fields["proxies"] = tuple(args.proxies)
    if args.rl_proxies:
        fields["rl_proxies"] = tuple(args.rl_proxies)
    if args.rl_conditions:
        fields["rl_conditions"] = tuple(args.rl_conditions)
    rl = rl_config_from(args, prefix="rl-")
    fields["rl_steps"] = rl.steps
    defaults = RLConfig()
    fields["rl"] = {name: getattr(rl, name) for name in ("trainer", "batch_size", "num_generations", "lr", "beta",
                                                         "lora", "lora_r", "eval_every", "eval_prompts", "eval_samples",
                                                         "bf16", "use_vllm", "gradient_checkpointing")
                    if getattr(rl, name) != getattr(defaults, name)}
    if args.rl_policy:
        fields["rl"]["policy"] = args.rl_policy
    config = OveroptReproConfig(**fields)
    run_repro_overopt(config, command="rewardlab " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None)
    return 0


def repro_config_from_args(args: argparse.Namespace):
    """The `ReproConfig` of parsed `repro grm` arguments: the --preset (if any), then the options given."""
    import dataclasses

    from rewardlab.repro.config import ReproConfig
    from rewardlab.repro.presets import resolve_repro_config

    fields = {f.name for f in dataclasses.fields(ReproConfig)}
    options = {k: v for k, v in vars(args).items() if k in fields}
    for name in ("seeds", "methods", "suites"):
        if name in options:
            options[name] = tuple(options[name])
    return resolve_repro_config(getattr(args, "preset", None), options)


def _run_grm(args: argparse.Namespace) -> int:
    from rewardlab.repro.workflow import run_repro_grm

    config = repro_config_from_args(args)
    if getattr(args, "print_config", False):
        print(config.to_command())
        return 0
    run_repro_grm(config, progress=getattr(args, "progress", True))
    return 0
    run_repro_grm(config, progress=getattr(args, "progress", True))
    return 0
