"""`rewardlab train | score | export | demo` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the core commands."""
