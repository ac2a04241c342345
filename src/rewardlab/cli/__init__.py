"""Command-line entry point: parses arguments and calls library functions, nothing else.

Each command group lives in its own module with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import sys

from rewardlab import __version__
from rewardlab.cli import bon, core, curriculum, envs, evaluate, repro, rl, serve
from rewardlab.errors import RewardlabError
from rewardlab.verbosity import quiet_libraries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rewardlab",
        description="Train generalizable reward models and catch reward gaming.",
    )
    parser.add_argument("--version", action="version", version=f"rewardlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument(
        "--verbose", action="store_true",
        help="also show the libraries' own progress bars and warnings (transformers, huggingface_hub, datasets)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for group in (core, envs, serve, evaluate, repro, bon, rl, curriculum):
        group.register(subparsers)
    return parser


USAGE_ERROR_STATUS = 2


def main(argv: list[str] | None = None) -> int:
    """Run one command. A `RewardlabError` (something the user can fix) prints one message and exits 2.

    So does an operating-system error about a named path (permission denied, not a folder, disk
    full …): the file system, not the code, is what needs fixing. ``--debug`` re-raises both.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RewardlabError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    except OSError as exc:
        if args.debug or exc.filename is None:
            raise
        target = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        print(f"error: {exc.strerror or exc}: {target}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
