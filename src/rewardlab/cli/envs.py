"""`rewardlab envs …` commands (owned by the environments work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `envs` command group."""
