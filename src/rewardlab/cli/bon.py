"""`rewardlab bon run`: argument parsing only; the work happens in `rewardlab.overopt.study`."""

from __future__ import annotations

import argparse
import shlex
import sys


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bon` and its `run` command."""
    import dataclasses
    from types import SimpleNamespace

    from rewardlab.overopt.config import BonConfig

    d = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(BonConfig)
                           if f.default is not dataclasses.MISSING})
    group = subparsers.add_parser("bon", help="best-of-N over-optimization: proxy vs gold reward as N grows")
    commands = group.add_subparsers(dest="bon_command", required=True)
    p = commands.add_parser(
        "run",
        help="sample K responses per prompt, train proxy reward models, plot gold and proxy of best-of-N",
        description=(
            "Sample K responses per prompt of the built-in synthetic task families from --policy, score them with "
            "the gold reward, train one proxy reward model per --proxy recipe on gold-labelled pairs of other "
            "prompts' responses, and estimate the gold and proxy score of each proxy's best-of-N choice for N = 1..K "
            "(unbiased estimator over all K samples, bootstrap intervals over prompts). Writes bon_curves.csv, "
            "bon_curves.png, bon_report.md and bon_report.json to --out. Rerunning resumes: samples, scores and "
            "proxies are reused."
        ),
    )
    p.add_argument("--policy", default=d.policy, help="hf:MODEL, openai:MODEL (with --base-url) or replay:FILE "
                                                      "(default: %(default)s)")
    p.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server for openai: policies (e.g. vLLM)")
    p.add_argument("--policy-dtype", dest="policy_dtype", default=d.policy_dtype,
                   choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights of an hf: policy (default auto: bfloat16 on a GPU that supports it, else float32)")
    p.add_argument("--out", default=d.out, help="output folder (default: %(default)s)")
    p.add_argument("--samples-dir", dest="samples_dir",
                   help="folder of the sample stores (default OUT/samples); another study's, e.g. "
                        "repro-overopt/samples, is reused where its policy and sampling settings match")
    p.add_argument("--gold", default=d.gold,
                   help="synthetic (programmatic correctness) or a reward-model folder / seq-cls checkpoint")
    p.add_argument("--proxy", dest="proxies", action="append", metavar="RECIPE",
                   help="proxy recipe, repeatable: bt, bt-margin, bt-label-smoothing, ensemble (ensemble?k=3&combine=min"
                        "|mean|uncertainty&lambda=1), grm-sft, grm-dpo-noref, or saved:PATH (default: bt and grm-sft)")
    p.add_argument("--proxy-model", dest="proxy_model", default=d.proxy_model, help="base model of the proxies")
    p.add_argument("--eval-prompts", dest="eval_prompts", type=int, default=d.eval_prompts)
    p.add_argument("--train-prompts", dest="train_prompts", type=int, default=d.train_prompts)
    p.add_argument("--families", type=lambda text: [f for f in text.split(",") if f], help="task families (default all)")
    p.add_argument("-k", "--k", dest="k", type=int, default=d.k, help="samples per evaluation prompt (default %(default)s)")
    p.add_argument("--train-k", dest="train_k", type=int, default=d.train_k, help="samples per training prompt")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", dest="top_p", type=float, default=d.top_p)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--pairs-per-prompt", dest="pairs_per_prompt", type=int, default=d.pairs_per_prompt)
    p.add_argument("--longer-chosen", dest="longer_chosen", type=float,
                   help="length-biased pairs: draw this share of each prompt's pairs from those whose chosen (higher-"
                        "gold) response is the longer one, as length-biased preference data is (labels stay the gold's)")
    p.add_argument("--label-noise", dest="label_noise", type=float, default=d.label_noise,
                   help="fraction of proxy training labels flipped (exactly, seeded), e.g. 0.25")
    p.add_argument("--proxy-steps", dest="proxy_steps", type=int, default=d.proxy_steps)
    p.add_argument("--proxy-batch-size", dest="proxy_batch_size", type=int, default=d.proxy_batch_size)
    p.add_argument("--proxy-lr", dest="proxy_lr", type=float, default=d.proxy_lr)
    p.add_argument("--proxy-trainable-top-layers", dest="proxy_trainable_top_layers", type=int,
                   default=d.proxy_trainable_top_layers)
    p.add_argument("--proxy-lora", dest="proxy_lora", action="store_true", help="train the proxies with LoRA")
    p.add_argument("--proxy-bf16", dest="proxy_bf16", action="store_true",
                   help="bf16 mixed precision for proxy training (GPUs)")
    p.add_argument("--ns", type=_int_list, help="values of N (default: about 16 spaced evenly in sqrt(KL))")
    p.add_argument("--bootstrap", type=int, default=d.bootstrap, help="bootstrap resamples of the prompts")
    p.add_argument("--baseline", help="recipe the others are compared with (default: the first --proxy)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rewardlab.overopt.config import BonConfig
    from rewardlab.overopt.study import run_bon

    fields = {name: getattr(args, name) for name in (
        "policy", "base_url", "policy_dtype", "out", "samples_dir", "gold", "proxy_model", "eval_prompts", "train_prompts",
        "families", "k", "train_k", "temperature", "top_p", "max_new_tokens", "seed", "pairs_per_prompt",
        "longer_chosen", "label_noise", "proxy_steps", "proxy_batch_size", "proxy_lr", "proxy_trainable_top_layers",
        "proxy_lora", "proxy_bf16", "ns", "bootstrap", "baseline", "progress")}
    if args.proxies:
        fields["proxies"] = args.proxies
    config = BonConfig(**fields)
    run_bon(config, command="rewardlab " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None)
    return 0
