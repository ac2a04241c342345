"""Sandboxes that run policy commands: bubblewrap (the default) and an explicit unsandboxed mode."""

from __future__ import annotations

from rewardlab.envs.sandbox.base import (
    CHANNEL_BYTES,
    HOME,
    RESULT_FD_ENV,
    CommandResult,
    FileDigest,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxSession,
    SandboxUnavailable,
    SymlinkTarget,
    WorkspaceListing,
    changed_files,
)
from rewardlab.envs.sandbox.bwrap import INSTALL_HINT, BubblewrapSandbox, find_bwrap
from rewardlab.envs.sandbox.local import UNSANDBOXED_WARNING, UnsandboxedLocal

SANDBOX_KINDS = ("bwrap", "none")

__all__ = [
    "CHANNEL_BYTES", "HOME", "INSTALL_HINT", "RESULT_FD_ENV", "SANDBOX_KINDS", "UNSANDBOXED_WARNING",
    "BubblewrapSandbox", "CommandResult", "FileDigest", "Sandbox", "SandboxError", "SandboxLimits",
    "SandboxSession", "SandboxUnavailable", "SymlinkTarget", "UnsandboxedLocal", "WorkspaceListing",
    "changed_files", "find_bwrap", "make_sandbox",
]


def make_sandbox(kind: str = "bwrap", limits: SandboxLimits | None = None) -> Sandbox:
    """The sandbox named ``kind``: ``bwrap`` (isolated) or ``none`` (no isolation, scripted policies only)."""
    if kind == "bwrap":
        return BubblewrapSandbox(limits)
    if kind == "none":
        return UnsandboxedLocal(limits)
    raise ValueError(f"unknown sandbox {kind!r}; choose one of {', '.join(SANDBOX_KINDS)}")
