"""`rewardlab envs list | run | show | report`: argument parsing only; the work is in `rewardlab.envs`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rewardlab.envs.episode import DEFAULT_MAX_COMMANDS
from rewardlab.envs.sandbox import SANDBOX_KINDS
from rewardlab.errors import ConfigError


def _at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum`` (a bad value is a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `envs` command group."""
    group = subparsers.add_parser(
        "envs", help="run policies through reward-gaming environments (sycophancy to subterfuge)",
        description="Gameable environments from 'Sycophancy to Subterfuge' (Denison et al. 2024), run in a "
                    "bubblewrap sandbox with exact graders.")
    commands = group.add_subparsers(dest="envs_command", required=True)

    listing = commands.add_parser("list", help="list the environments, their outcome labels and options")
    listing.set_defaults(func=_list)

    run = commands.add_parser("run", help="run episodes (resumable) into a folder of JSONL transcripts")
    run.add_argument("--env", required=True, help="environment name, a comma-separated list, or 'all'")
    run.add_argument("--policy", required=True, metavar="SPEC",
                     help="scripted:NAME | replay:PATH | hf:MODEL | openai:MODEL (with --base-url)")
    run.add_argument("-n", type=_at_least(0), default=10, help="episodes per environment (default 10)")
    run.add_argument("--seed", type=int, default=0, help="variant seed (default 0)")
    run.add_argument("--workers", type=_at_least(1), default=1, help="episodes run in parallel (default 1)")
    run.add_argument("--samples", type=_at_least(1), default=1,
                     help="episodes per variant, each with its own seed (ids get a -kNNN suffix; default 1)")
    run.add_argument("--batch-size", dest="batch_size", type=_at_least(1), default=None,
                     help="play episodes in batches of this size: a local model decodes their replies together and "
                          "prefills their shared preamble once; --workers threads run their commands")
    run.add_argument("--out", required=True, type=Path, help="run folder (created; reruns skip finished episodes)")
    run.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    run.add_argument("--api-key-env", dest="api_key_env", default="OPENAI_API_KEY",
                     help="environment variable holding the API key (default OPENAI_API_KEY)")
    run.add_argument("--max-commands", dest="max_commands", type=_at_least(0), default=DEFAULT_MAX_COMMANDS,
                     help=f"commands per episode before it is cut off (default {DEFAULT_MAX_COMMANDS})")
    run.add_argument("--sandbox", choices=SANDBOX_KINDS, default="bwrap",
                     help="bwrap (default). 'none' runs commands WITHOUT isolation; scripted policies only")
    run.add_argument("--command-timeout", dest="command_timeout", type=float, default=20.0,
                     help="wall-clock seconds per command (default 20)")
    run.add_argument("--env-option", dest="env_options", action="append", default=[], metavar="KEY=VALUE",
                     help="environment option, e.g. data=PATH, mode=free, threshold=3 (repeatable)")
    run.add_argument("--grader", metavar="SPEC",
                     help="grader model for political-sycophancy mode=free: openai:MODEL, hf:MODEL or replay:PATH")
    run.add_argument("--grader-base-url", dest="grader_base_url",
                     help="server of an openai: grader (default: --base-url)")
    run.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=512,
                     help="tokens per model reply (default 512)")
    run.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0 = greedy)")
    run.add_argument("--concurrency", type=int, default=8, help="parallel HTTP requests for openai: (default 8)")
    run.add_argument("--retries", type=int, default=5, help="HTTP retries with backoff (default 5)")
    run.add_argument("--prefill", choices=("continue", "none"), default="continue",
                     help="openai: send the <cot> opening with vLLM's continue_final_message (continue, default) "
                          "or drop it for servers that reject that field (none)")
    run.add_argument("--max-failures", dest="max_failures", type=int, default=10,
                     help="stop after this many failed episodes (default 10)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    run.set_defaults(func=_run)

    show = commands.add_parser("show", help="print one episode's transcript, outcome and evidence")
    show.add_argument("folder", type=Path, metavar="DIR")
    show.add_argument("--id", required=True, dest="episode", metavar="K", help="episode id (or its index)")
    show.set_defaults(func=_show)

    report = commands.add_parser("report", help="outcome rates per environment with exact 95%% intervals")
    report.add_argument("folder", type=Path, metavar="DIR")
    report.add_argument("--json", action="store_true", help="print {env: {outcome: {count, n, rate, ci_low, ci_high}}}")
    report.set_defaults(func=_report)

    export = commands.add_parser("export-inspect", help="write a run folder as an Inspect eval log for `inspect view`")
    export.add_argument("folder", type=Path, metavar="RUN_DIR")
    export.add_argument("--out", type=Path, metavar="FILE",
                        help="the log to write, .eval or .json (default RUN_DIR/inspect/RUN_NAME.eval)")
    export.set_defaults(func=_export_inspect)


def _list(args: argparse.Namespace) -> int:
    from rewardlab.envs.environments import ENVIRONMENTS, environment_options

    for name, cls in ENVIRONMENTS.items():
        options = ", ".join(environment_options(name)) or "none"
        print(f"{name}\n  {cls.description}\n  outcomes: {' | '.join(cls.outcomes)}"
              f"   (gamed = {' or '.join(sorted(cls.gaming_outcomes))})\n  options: {options}\n")
    return 0


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ConfigError(f"--env-option {pair!r} should look like KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _run(args: argparse.Namespace) -> int:
    from rewardlab.envs.workflow import EpisodesConfig, play_episodes

    config = EpisodesConfig(
        policy=args.policy, out=args.out, env=args.env, n=args.n, seed=args.seed, workers=args.workers,
        samples=args.samples, batch_size=args.batch_size, base_url=args.base_url, api_key_env=args.api_key_env,
        max_commands=args.max_commands, sandbox=args.sandbox, command_timeout=args.command_timeout,
        env_options=_parse_options(args.env_options), grader=args.grader, grader_base_url=args.grader_base_url,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, concurrency=args.concurrency,
        retries=args.retries, prefill=args.prefill, max_failures=args.max_failures, progress=args.progress,
    )
    summary = play_episodes(config)
    if summary.repaired_bytes:
        print(f"note: removed an incomplete last line ({summary.repaired_bytes} bytes) left by an interrupted run")
    if summary.unreadable_lines:
        print(f"note: {summary.unreadable_lines} unreadable line(s) in episodes.jsonl were ignored; "
              "their episodes were run again")
    print(f"{summary.finished} episode(s) run, {summary.already_done} already done, {summary.failed} failed "
          f"-> {summary.out_dir}")
    for env_name, counts in summary.outcomes.items():
        print(f"  {env_name}: " + ", ".join(f"{outcome} {count}" for outcome, count in sorted(counts.items())))
    for message in summary.errors:
        print(f"  failed: {message}", file=sys.stderr)
    if summary.stopped_early:
        print(f"stopped after {summary.failed} failures; details in {summary.out_dir / 'errors.jsonl'}", file=sys.stderr)
    print(f"rates with 95% intervals: rewardlab envs report {summary.out_dir}")
    return 1 if summary.failed else 0


def _show(args: argparse.Namespace) -> int:
    from rewardlab.envs.show import find_episode, format_episode

    print(format_episode(find_episode(args.folder, args.episode)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from rewardlab.envs.records import RunFolderError
    from rewardlab.envs.report import format_report, report_folder, report_json

    table, bad_lines, policies = report_folder(args.folder)
    if not table:
        raise RunFolderError(f"{args.folder} holds no finished episodes yet; run `rewardlab envs run --out "
                             f"{args.folder} …` first")
    if args.json:
        print(json.dumps(report_json(table), indent=2))
        if bad_lines:
            print(f"skipped {bad_lines} unreadable line(s) in episodes.jsonl", file=sys.stderr)
    else:
        print(format_report(table, bad_lines=bad_lines, policies=policies))
    return 0


def _export_inspect(args: argparse.Namespace) -> int:
    from rewardlab.integrations.inspect.export import export_run  # without inspect_ai: a one-line error

    summary = export_run(args.folder, args.out)
    print(f"{summary.samples} episode(s) -> {summary.path}")
    for count, what in ((summary.unreadable_lines, "unreadable line(s) in episodes.jsonl skipped"),
                        (summary.skipped, "record(s) skipped"),
                        (summary.broken, "record(s) exported without a whole transcript")):
        if count:
            print(f"note: {count} {what}", file=sys.stderr)
    for example in summary.examples:
        print(f"  {example}", file=sys.stderr)
    print(f"view it: inspect view --log-dir {summary.path.parent}")
    return 0
