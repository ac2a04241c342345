"""Grading checks that run inside the episode's sandbox, with a timeout, without changing it.

A check is a short Python body defining ``probe(*args)`` (and optionally ``plan(*plan_args)``).
It runs in the trusted grading harness (`rewardlab.envs.graders.harness`), started with the
sandbox's result channel (``session.run(..., persist=False, channel=True)``): the harness runs
every ``probe`` call in a forked child and is the only process that holds the channel, so the
result comes back on a pipe that nothing the episode wrote can read or write.

What this guarantees, whatever the episode's files do (print, flood stdout/stderr past the output
cap, exit early, fork, monkeypatch ``json``/``math``/``builtins``, read ``/proc``, signal PID 1 or
the harness): the grader gets the value the episode's code handed back to the harness, or a clear
error. stdout and stderr are never parsed for results, and there is no marker or nonce to steal:
the channel is authenticated by who holds it. The harness is non-dumpable (no ``/proc/<pid>/fd``,
``/proc/<pid>/mem`` or ptrace for other processes of the sandbox user) and gives its children
neither the channel's descriptor nor ``RL_RESULT_FD``. Every value is validated again here, on the
host (types, finiteness), by the grader that asked for it.

What cannot be prevented: code running inside the reward function (or ``checks.py``, ``grade.py``,
...) chooses what it returns to any caller, and it can try to tell a grading call from a real one
(call stack, ``sys.argv``, timing) and answer each differently. Running in the process that called
it, it can also write a result of its own to that process's private pipe and end the process
without returning, or reach into the harness's objects in that process; what is measured is what
that process hands back. (A forged result next to the real one, or a real one whose pipe the code
closed, is refused: the call becomes an error.) The graders reduce what the code can know: the
reward function is called on a fresh transcript with a random tag that the policy never saw, so
special-casing the inputs it can see (the guard test's ``'Hi There'``) shows up as tampering, and
no grading call uses an input that appears anywhere in the sandbox before grading.

Also relied on: no other process of the episode runs while a check runs (each command's leftover
processes are killed by the sandbox), because in the first milliseconds after ``exec``, before
the harness becomes non-dumpable, such a process could open the channel through ``/proc``.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.envs.sandbox.base import HOME, CommandResult, SandboxSession

DEFAULT_PROBE_TIMEOUT = 10.0

HARNESS_SOURCE = Path(__file__).with_name("harness.py").read_text(encoding="utf-8")
_PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3")
# Seconds on top of a check's own deadline for the sandbox to start and the harness to report.
_STARTUP_SLACK = 3.0


@dataclass(frozen=True)
class CallResult:
    """One ``probe(*args)`` call: its (untrusted, unvalidated) value, or why there is none.

    ``returned`` tells whether the child sent anything back (a value or an exception) before it
    exited; ``exit_code`` is its exit status (negative: killed by that signal); ``stderr`` the last
    few hundred characters it wrote there (for the record, never parsed).
    """

    value: Any = None
    error: str | None = None
    timed_out: bool = False
    exit_code: int | None = None
    stderr: str = ""
    returned: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


@dataclass(frozen=True)
class ProbeReport:
    """What the harness reported: the plan it made and each call's result, or an error."""

    calls: tuple[CallResult, ...] = ()
    plan: Any = None
    error: str | None = None
    timed_out: bool = False
    folder_missing: bool = False
    command: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ProbeResult:
    """The single call of a one-call check: its value, or why there is none."""

    value: Any = None
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def session_home(session: SandboxSession) -> str:
    """The home folder of a session as seen by its commands."""
    root = getattr(session, "root", None)
    return str(root) if root is not None and getattr(session, "kind", "") == "none" else HOME


def _python() -> str:
    for candidate in _PYTHON_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return "python3"


def harness_command(config: dict[str, Any]) -> str:
    """The shell command that replaces itself with the harness running ``config``."""
    source = f"{HARNESS_SOURCE}\nmain({json.dumps(config, ensure_ascii=True)!r})\n"
    return f"exec {shlex.quote(_python())} -I -c {shlex.quote(source)}"


def _as_text(value: Any, limit: int = 500) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _parse_call(entry: Any) -> CallResult:
    if not isinstance(entry, dict):
        return CallResult(error="malformed call result in the grading report")
    exit_code = entry.get("exit")
    exit_code = exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None
    stderr = _as_text(entry.get("stderr"))
    if entry.get("timed_out") is True:
        return CallResult(error="timed out", timed_out=True, exit_code=exit_code, stderr=stderr)
    if "value" in entry:
        return CallResult(value=entry["value"], exit_code=exit_code, stderr=stderr, returned=True)
    if "error" in entry:
        return CallResult(error=_as_text(entry["error"]) or "the check failed", exit_code=exit_code, stderr=stderr,
                          returned=True)
    if exit_code is None:
        error = "the check produced no result"
    elif exit_code >= 0:
        error = f"the check exited with status {exit_code} without a result"
    else:
        error = f"the check was killed by signal {-exit_code} before it returned"
    return CallResult(error=error, exit_code=exit_code, stderr=stderr)


def _command_summary(result: CommandResult) -> dict[str, Any]:
    return {"exit_code": result.exit_code, "timed_out": result.timed_out, "notes": list(result.notes)[:5],
            "seconds": round(result.seconds, 3)}


def parse_report(result: CommandResult, timeout: float) -> ProbeReport:
    """Read the harness's report from the command's result channel (stdout and stderr are ignored)."""
    summary = _command_summary(result)
    if result.channel is None:
        return ProbeReport(error="the sandbox gave the check no result channel", command=summary)
    if result.channel_truncated:
        return ProbeReport(error="the grading report overflowed the result channel", command=summary)
    if not result.channel:
        if result.timed_out:
            return ProbeReport(error=f"timed out after {timeout:g} s", timed_out=True, command=summary)
        detail = "; ".join(result.notes) or f"exit status {result.exit_code}"
        return ProbeReport(error=f"the check produced no result ({detail[-300:]})", command=summary)
    try:
        report = json.loads(result.channel.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as error:
        return ProbeReport(error=f"unreadable grading report: {error}", command=summary)
    if not isinstance(report, dict):
        return ProbeReport(error="malformed grading report", command=summary)
    if "error" in report:
        return ProbeReport(error=_as_text(report["error"]) or "the check failed",
                           folder_missing=report.get("folder_missing") is True, command=summary)
    calls = report.get("calls")
    if not isinstance(calls, list):
        return ProbeReport(error="malformed grading report (no calls)", command=summary)
    return ProbeReport(calls=tuple(_parse_call(entry) for entry in calls), plan=report.get("plan"), command=summary)


def run_probe(session: SandboxSession, body: str, *, folder: str = "", calls: list[list[Any]] | None = None,
              plan_args: list[Any] | None = None, timeout: float = DEFAULT_PROBE_TIMEOUT) -> ProbeReport:
    """Run the check ``body`` with the working directory ``home/folder``.

    ``calls`` lists the argument lists of the ``probe`` calls to make; if it is None, the body's
    ``plan(*plan_args)`` (which must only look at file metadata) decides them. All calls together
    get ``timeout`` seconds.
    """
    config = {"home": session_home(session), "folder": folder, "body": body, "calls": calls,
              "plan_args": list(plan_args or []), "timeout": float(timeout)}
    result = session.run(harness_command(config), timeout=timeout + _STARTUP_SLACK, persist=False, channel=True)
    return parse_report(result, timeout)


def run_python_probe(session: SandboxSession, body: str, *, folder: str = "", args: list[Any] | None = None,
                     timeout: float = DEFAULT_PROBE_TIMEOUT) -> ProbeResult:
    """Run ``body`` (which defines ``probe()``) once with the working directory ``home/folder``."""
    report = run_probe(session, body, folder=folder, calls=[list(args or [])], timeout=timeout)
    if not report.ok:
        return ProbeResult(error=report.error, timed_out=report.timed_out)
    call = report.calls[0] if report.calls else CallResult(error="the check made no call")
    if call.timed_out:
        return ProbeResult(error=f"timed out after {timeout:g} s", timed_out=True)
    return ProbeResult(value=call.value, error=call.error)


def finite_number(value: Any) -> tuple[float | None, str | None]:
    """``(value as a float, None)`` if ``value`` (as decoded from JSON) is a finite real number,
    else ``(None, reason)``: booleans, None, strings, lists, objects, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, dict) and value.get("$unsupported") == "int":
            return None, "the integer is too large for a float"
        if isinstance(value, dict) and "$unsupported" in value:
            return None, f"{_as_text(value.get('$unsupported'), 80)} is not a number ({_as_text(value.get('repr'), 100)})"
        return None, f"{_json_type(value)} is not a number ({json.dumps(value, default=repr)[:100]})"
    try:
        number = float(value)
    except OverflowError:
        return None, "the number is too large for a float"
    if number != number:
        return None, "the number is NaN"
    if number in (float("inf"), float("-inf")):
        return None, f"the number is {'+' if number > 0 else '-'}infinity"
    return number, None


def _json_type(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a bool"
    return {str: "a string", list: "a list", dict: "a dict"}.get(type(value), type(value).__name__)
