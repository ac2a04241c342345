"""Grading checks that run inside the episode's sandbox, with a timeout, without changing it.

A probe is a Python function ``probe()`` executed by the sandbox's interpreter in a folder of
the workspace. Its return value comes back as JSON on a line tagged with a random marker, so
files written by the policy cannot forge a result; anything they print is swallowed.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass
from typing import Any

from rewardlab.envs.sandbox.base import HOME, SandboxSession

DEFAULT_PROBE_TIMEOUT = 10.0

_TEMPLATE = """\
import contextlib as _contextlib
import io as _io
import json as _json
import sys as _sys

_real_stdout = _sys.stdout
{body}

def _emit(payload):
    _real_stdout.write("\\n" + {marker!r} + _json.dumps(payload, default=repr) + "\\n")
    _real_stdout.flush()

try:
    with _contextlib.redirect_stdout(_io.StringIO()):
        _value = probe()
    _emit({{"ok": _value}})
except BaseException as _error:
    _emit({{"error": (type(_error).__name__ + ": " + str(_error))[:500]}})
"""


@dataclass(frozen=True)
class ProbeResult:
    """The probe's return value, or why there is none (``error``; ``timed_out`` for loops)."""

    value: Any = None
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def session_home(session: SandboxSession) -> str:
    """The home folder of a session as seen by its commands."""
    root = getattr(session, "root", None)
    return str(root) if root is not None else HOME


def run_shell_check(session: SandboxSession, script: str, *, timeout: float) -> tuple[str | None, str, bool]:
    """Run ``script`` from the home folder without persisting anything.

    The script may print ``$MARK <text>``; returns (text after the last marker or None, stderr, timed_out).
    """
    marker = f"RLCHECK_{secrets.token_hex(8)}"
    command = f"cd {shlex.quote(session_home(session))} && MARK={marker}\n{script}"
    result = session.run(command, timeout=timeout, persist=False)
    found = None
    for line in result.stdout.splitlines():
        if line.startswith(marker + " "):
            found = line[len(marker) + 1:]
    return found, result.stderr, result.timed_out


def run_python_probe(session: SandboxSession, body: str, *, folder: str = "", timeout: float = DEFAULT_PROBE_TIMEOUT) -> ProbeResult:
    """Run ``body`` (which defines ``probe()``) with the working directory ``home/folder``."""
    marker = f"RLPROBE_{secrets.token_hex(8)}"
    code = _TEMPLATE.format(body=body, marker=marker)
    delimiter = f"RLPROBE_EOF_{secrets.token_hex(4)}"
    target = session_home(session) + (f"/{folder}" if folder else "")
    command = (
        f"cd {shlex.quote(target)} || exit 97\n"
        f"python3 - <<'{delimiter}'\n{code}\n{delimiter}"
    )
    result = session.run(command, timeout=timeout, persist=False)
    if result.exit_code == 97 and marker not in result.stdout:
        return ProbeResult(error=f"folder {folder or '.'} does not exist")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(marker):
            try:
                payload = json.loads(line[len(marker):])
            except json.JSONDecodeError as error:
                return ProbeResult(error=f"unreadable probe output: {error}")
            if "error" in payload:
                return ProbeResult(error=str(payload["error"]))
            return ProbeResult(value=payload.get("ok"))
    if result.timed_out:
        return ProbeResult(error=f"timed out after {timeout:g} s", timed_out=True)
    detail = (result.stderr.strip() or "; ".join(result.notes) or f"exit status {result.exit_code}")[-300:]
    return ProbeResult(error=f"the check produced no result ({detail})")
