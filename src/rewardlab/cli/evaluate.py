"""`rewardlab eval`: argument parsing only; the work happens in `rewardlab.evaluate`."""

from __future__ import annotations

import argparse
import json
import sys

from rewardlab.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` command."""
    from rewardlab.evaluate.formats import FORMATS
    from rewardlab.evaluate.formats.rewardbench import REWARDBENCH2_HUB, REWARDBENCH_HUB
    from rewardlab.evaluate.formats.rmbench import RMBENCH_HUB
    from rewardlab.evaluate.suites import DATA_ROOT_ENV, SUITE_DESCRIPTIONS, SUITES

    HUB_NAMES = (REWARDBENCH_HUB, REWARDBENCH2_HUB, RMBENCH_HUB)

    suites = "; ".join(f"{name}: {text}" for name, text in SUITE_DESCRIPTIONS.items())
    p = subparsers.add_parser(
        "eval",
        help="evaluate reward models in and out of distribution (accuracy with 95%% intervals)",
        description=(
            "Score preference data with one or more reward models, side by side. An item is correct iff "
            "reward(chosen) > reward(rejected) strictly; ties count as wrong and are reported. Intervals are "
            f"95% Wilson score intervals. Suites: {suites}. Put the models before --data."
        ),
    )
    p.add_argument(
        "models", metavar="MODEL", nargs="+",
        help="[NAME=]PATH of a rewardlab reward model, an exported or third-party sequence-classification "
             "checkpoint, or (with --implicit-dpo) a DPO-trained causal LM",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", help=f"a built-in suite: {', '.join(SUITES)}")
    source.add_argument(
        "--data", nargs="+", metavar="SPEC",
        help=f"[NAME=][FORMAT:]PATH; FORMAT is one of {', '.join(FORMATS)} (detected from the columns if left "
             f"out); PATH is a file, a folder or a hub name, and the hub names {', '.join(HUB_NAMES)} pick "
             "their format; ?split=NAME picks a split",
    )
    p.add_argument("--out", help="write report.md, report.json, accuracy.png (and leaderboard.json for RewardBench) "
                                 "and a resumable score cache here")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of Markdown")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16, help="conversations per forward pass")
    p.add_argument("--implicit-dpo", dest="implicit_dpo", action="store_true",
                   help="score each MODEL by its implicit DPO reward log π(y|x) − log π_ref(y|x) (needs --ref)")
    p.add_argument("--ref", help="reference model for --implicit-dpo (alias, hub id or path)")
    p.add_argument("--data-root", dest="data_root",
                   help=f"folder holding the suite files (default: ${DATA_ROOT_ENV}, else ../shared/data)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--limit", type=int, help="use only the first N items of each dataset (quick checks)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from rewardlab.evaluate.report import to_json, to_markdown
    from rewardlab.evaluate.workflow import run_evaluation

    if args.implicit_dpo != (args.ref is not None):
        raise ConfigError("--implicit-dpo and --ref go together: the implicit DPO reward needs the reference model")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ConfigError("--batch-size and --limit must be positive")
    result = run_evaluation(
        args.models,
        suite=args.suite,
        data=args.data or (),
        data_root=args.data_root,
        out_dir=args.out,
        batch_size=args.batch_size,
        reference=args.ref,
        device=args.device,
        limit=args.limit,
        progress=args.progress,
    )
    if args.json:
        print(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        print(to_markdown(result), end="")
    if args.out:
        from rewardlab.evaluate.leaderboard import leaderboard_results

        extra = " and leaderboard.json" if leaderboard_results(result) else ""
        print(f"wrote report.md, report.json, accuracy.png{extra} to {args.out}", file=sys.stderr)
    return 0
