"""`rewardlab train | score | export | push | demo`: argument parsing only; the work happens in the library."""

from __future__ import annotations

import argparse
import os
import sys

from rewardlab.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the core commands."""
    _register_train(subparsers)
    _register_score(subparsers)
    _register_export(subparsers)
    _register_push(subparsers)
    _register_demo(subparsers)


# --- train -----------------------------------------------------------------------------------------


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a reward model (BT baseline or GRM)",
        description="Train a reward model. --model, --data and --output are required, as flags or in --config "
                    "(a YAML file of the same option names; TRL's learning_rate, output_dir, "
                    "per_device_train_batch_size, num_train_epochs and gradient_accumulation_steps are accepted "
                    "too). Flags override values from the file.",
    )
    p.add_argument("--model", help="required: smollm2-135m, tiny-random, a hub id or a local path")
    p.add_argument("--data", help="required: synthetic, synthetic:ood, a file (.jsonl/.json/.parquet) or a dataset name")
    p.add_argument("--output", help="required: output folder for the trained model")
    p.add_argument("--config", help="YAML file with training options")
    p.add_argument("--eval-data", dest="eval_data", help="pairs to report accuracy on during and after training")
    p.add_argument("--loss", choices=["bt", "margin", "label-smoothing"])
    p.add_argument("--reg", choices=["none", "sft", "sft-nll", "dpo", "dpo-noref"])
    p.add_argument("--alpha", type=float, help="regularizer weight α in (1-α)·reward + α·reg (default 0.01)")
    p.add_argument("--beta", type=float, help="β inside the SFT/DPO regularizers (default 0.1)")
    p.add_argument("--label-smoothing", dest="label_smoothing", type=float, help="ε for --loss label-smoothing")
    p.add_argument("--center-coefficient", dest="center_coefficient", type=float, help="reward centering weight")
    p.add_argument("--head", choices=["linear", "mlp"])
    p.add_argument("--head-dropout", dest="head_dropout", type=float, help="dropout before the reward head (default 0.1)")
    p.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None, help="LoRA on q,k,v,o (r=32, α=64)")
    p.add_argument("--lora-r", dest="lora_r", type=int)
    p.add_argument("--lora-alpha", dest="lora_alpha", type=int)
    p.add_argument(
        "--trainable-top-layers", dest="trainable_top_layers", type=int,
        help="freeze everything below the top N decoder layers (cheap CPU training)",
    )
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", dest="max_steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int, help="pairs per micro-batch")
    p.add_argument("--grad-accum", dest="grad_accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-length", dest="max_length", type=int)
    p.add_argument("--truncation", choices=["drop", "prompt-left"], help="over-length pairs: skip (default) or cut the prompt")
    p.add_argument("--train-limit", dest="train_limit", type=int, help="use only the first N training pairs")
    p.add_argument("--eval-limit", dest="eval_limit", type=int)
    p.add_argument("--eval-interval", dest="eval_interval", type=int, help="evaluate every N optimizer steps")
    p.add_argument("--log-interval", dest="log_interval", type=int,
                   help="log the mean losses and accuracy every N optimizer steps, to metrics.json and --report-to "
                        "(default 10)")
    p.add_argument("--save-steps", dest="save_steps", type=int, help="checkpoint every N optimizer steps")
    p.add_argument("--snapshot-steps", dest="snapshot_steps", type=int, nargs="+", metavar="STEP",
                   help="also save a loadable model after these optimizer steps, in OUTPUT/snapshots/step-N")
    p.add_argument("--lr-scheduler-type", dest="lr_scheduler_type", choices=["cosine", "linear", "constant_with_warmup"],
                   help="learning-rate schedule after warm-up (default: cosine)")
    p.add_argument("--seed", type=int)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--packing", action=argparse.BooleanOptionalAction, default=None,
        help="run each pair as one padding-free [prompt, chosen, rejected] row (default on; same losses as padding)",
    )
    p.add_argument(
        "--frozen-cache-gb", dest="frozen_cache_gb", type=float,
        help="with --trainable-top-layers: memory for reusing the frozen layers' outputs across epochs (default 2; 0: off)",
    )
    p.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint in --output")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace a finished run in --output")
    p.add_argument("--report-to", dest="report_to", choices=["none", "tensorboard", "wandb"],
                   help="log losses, accuracy, lr and pairs/s to an experiment tracker (default: none)")
    p.add_argument("--logging-dir", dest="logging_dir", help="TensorBoard event files (default: OUTPUT/runs)")
    p.add_argument("--push-to-hub", dest="push_to_hub", action="store_true", default=None,
                   help="upload the saved model to the Hugging Face Hub when training ends "
                        "(token: HF_TOKEN or `hf auth login`)")
    p.add_argument("--hub-model-id", dest="hub_model_id", metavar="ID",
                   help="Hub repository for --push-to-hub (default: the --output folder's name, in your namespace)")
    p.add_argument("--hub-private-repo", dest="hub_private_repo", action="store_true", default=None,
                   help="create the --push-to-hub repository as private")
    p.set_defaults(func=_run_train)


_TRAIN_FIELDS = (
    "model", "data", "output", "eval_data", "loss", "reg", "alpha", "beta", "label_smoothing", "center_coefficient",
    "head", "head_dropout", "lora", "lora_r", "lora_alpha", "trainable_top_layers", "epochs", "max_steps", "batch_size", "grad_accum",
    "lr", "lr_scheduler_type", "max_length", "truncation", "train_limit", "eval_limit", "eval_interval", "save_steps",
    "snapshot_steps", "seed", "bf16", "packing", "frozen_cache_gb", "resume", "overwrite", "log_interval",
    "report_to", "logging_dir", "push_to_hub", "hub_model_id", "hub_private_repo",
)


def _run_train(args: argparse.Namespace) -> int:
    from rewardlab.train.config import REQUIRED_FOR_CLI, TrainConfig
    from rewardlab.train.loop import train

    overrides = {name: getattr(args, name) for name in _TRAIN_FIELDS}
    config = TrainConfig.from_sources(args.config, required=REQUIRED_FOR_CLI, **overrides)
    result = train(config)
    ev = result.metrics.get("eval")
    if ev and os.environ.get("RANK", "0") == "0":  # under torchrun / accelerate launch: the main process only
        print(f"final eval accuracy: {ev['accuracy']:.4f} ({ev['n']} pairs)")
    return 0


# --- score -----------------------------------------------------------------------------------------


def _register_score(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="score pairs from a file, or one prompt/response",
        description="Score with a saved reward model. Over-length pairs follow the model's saved truncation "
                    "setting (drop: left unscored; prompt-left: the oldest prompt tokens are cut), and the summary "
                    "says how many; a single --prompt/--response is always cut from the left of the prompt if "
                    "too long, with a note.",
    )
    p.add_argument("model_dir", metavar="DIR", help="a saved rewardlab reward model folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="pairs to score (any format `train --data` accepts)")
    source.add_argument("--prompt", help="a user prompt (use with --response)")
    p.add_argument("--response", help="the assistant response to score")
    p.add_argument("--system", help="optional system message for --prompt")
    p.add_argument("--out", help="write per-pair scores as JSONL here (default: standard output)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    p.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from rewardlab.scoring import RewardScorer
    from rewardlab.workflows import score_file, score_one

    if args.prompt is not None and args.response is None:
        raise ConfigError("--prompt needs --response (the assistant reply to score)")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    scorer = RewardScorer.from_pretrained(args.model_dir, batch_size=args.batch_size)
    if args.prompt is not None:
        print(f"{score_one(scorer, args.prompt, args.response, system=args.system):.6f}")
        if scorer.truncation_counts["cut"]:
            print(f"note: longer than max_length {scorer.max_length} tokens: the oldest prompt tokens were cut "
                  "to fit (the response is scored whole)", file=sys.stderr)
        return 0
    summary = score_file(scorer, args.data, out=args.out)
    print(summary, file=sys.stderr if args.out is None else sys.stdout)
    return 0


# --- export ----------------------------------------------------------------------------------------


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a reward model to a standard Hugging Face format")
    p.add_argument("model_dir", metavar="DIR")
    p.add_argument("--to", choices=["seq-cls"], required=True, help="target format")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from rewardlab.models.persistence import export_seq_cls

    export_seq_cls(args.model_dir, args.out)
    print(f"exported {args.model_dir} as AutoModelForSequenceClassification to {args.out}")
    return 0


# --- push ------------------------------------------------------------------------------------------


def _register_push(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "push", help="upload a saved reward model folder to the Hugging Face Hub",
        description="Upload the model files of a saved reward model folder (weights or adapter, head, tokenizer, "
                    "rewardlab_config.json, the README.md model card, metrics.json and loss.png) in one commit; "
                    "checkpoints, snapshots and logs stay local. The repository is created if missing. Token: "
                    "--token, HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.",
    )
    p.add_argument("model_dir", metavar="DIR", help="a saved rewardlab reward model folder")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub repository, owner/name (or name, in your namespace)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", help="branch to commit to (created if missing; default: main)")
    p.add_argument("--token", help="a Hub write token (default: HF_TOKEN or the one `hf auth login` saved)")
    p.set_defaults(func=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from rewardlab.models.hub import push_reward_model

    result = push_reward_model(args.model_dir, args.repo_id, private=args.private, revision=args.revision,
                               token=args.token)
    print(f"pushed {len(result.files)} files from {args.model_dir} to {result.url}")
    print(f"commit: {result.commit_url}")
    return 0


# --- demo ------------------------------------------------------------------------------------------


def _register_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a BT baseline and a GRM on built-in data and compare them in and out of distribution",
    )
    p.add_argument("--output", default="demo-output", help="folder for the two models and the report")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--quick", action="store_true", help="tiny-random model and a few steps (a smoke test, not a result)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from rewardlab.demo import DemoConfig, run_demo

    config = DemoConfig.quick(args.output) if args.quick else DemoConfig(output=args.output, model=args.model)
    run_demo(config)
    return 0
