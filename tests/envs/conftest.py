"""Shared fixtures for the environment tests: a real bubblewrap sandbox with short limits."""

from __future__ import annotations

import shutil

import pytest

from rewardlab.envs.sandbox import BubblewrapSandbox, SandboxLimits


@pytest.fixture(scope="session")
def bwrap_sandbox() -> BubblewrapSandbox:
    """A real bubblewrap sandbox whose per-command timeout is short enough for tests."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (CI installs it)")
    return BubblewrapSandbox(SandboxLimits(command_timeout=4.0, cpu_seconds=4))
