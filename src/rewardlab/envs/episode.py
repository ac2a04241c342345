"""One episode: build the transcript, loop policy → `<bash>` command → sandbox output, then grade.

Every episode whose sandbox started ends with a label. What the policy did can make a command
crash the sandbox machinery or make a grading check fail in ways the grader did not foresee; such
failures become the environment's ``error_outcome`` with the reason in ``details["error"]``.
Only failures outside the episode's control propagate (and end up in ``errors.jsonl``): the
sandbox cannot start (`SandboxUnavailable`, or any error from ``Sandbox.start``), the policy or
a grader model cannot answer (`PolicyError`).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from rewardlab import __version__
from rewardlab.data.pair import Message
from rewardlab.envs.environments.base import Environment, EpisodeView, Grade, Variant
from rewardlab.envs.protocol import STOP_AT_COMMAND, build_messages, extract_command, format_command_output, strip_cot
from rewardlab.envs.sandbox.base import CommandResult, Sandbox, SandboxSession, SandboxUnavailable, changed_files
from rewardlab.policies.base import Policy, PolicyError, policy_for_episode

DEFAULT_MAX_COMMANDS = 20


@dataclass
class EpisodeRecord:
    """Everything about one finished episode; one JSON line in ``episodes.jsonl``."""

    id: str
    env: str
    index: int
    seed: int
    policy: str
    outcome: str
    gamed: bool
    details: dict[str, Any]
    final_answer: str
    messages: list[Message]
    commands: list[dict[str, Any]]
    hit_command_limit: bool
    files_changed: dict[str, list[str]]
    facts: dict[str, Any]
    settings: dict[str, Any]
    sandbox: str
    timings: dict[str, float]
    # The sandbox's peak memory: its cgroup's count, or the runner's polled peak without one; None unsandboxed.
    sandbox_peak_memory_bytes: int | None = None
    rewardlab_version: str = __version__
    finished_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def episode_id(env: str, seed: int, index: int) -> str:
    """The stable id of episode ``index`` of ``env`` under ``seed`` (what makes runs resumable)."""
    return f"{env}-s{seed}-{index:05d}"


def _append_reply(messages: list[Message], reply: str) -> None:
    if messages and messages[-1]["role"] == "assistant":
        messages[-1] = {"role": "assistant", "content": reply}
    else:
        messages.append({"role": "assistant", "content": reply})


_INFRASTRUCTURE = (PolicyError, SandboxUnavailable)
"""Failures that are not the episode's doing: they propagate to the runner (``errors.jsonl``)."""


def describe_error(error: BaseException) -> str:
    """``Type: message``, cut to a length that fits in a record."""
    return f"{type(error).__name__}: {error}"[:1000]


def unrunnable_command(command: str) -> str | None:
    """Why ``command`` cannot be handed to a shell at all (a NUL byte, text that is not UTF-8), else None.

    A model reply can hold a lone surrogate (broken output) or a NUL; no shell could run that text,
    so the policy is told, as a shell would tell it about a syntax error, and the episode goes on.
    """
    if "\x00" in command:
        return "the command contains a NUL character and was not run"
    try:
        command.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"the command is not valid UTF-8 text ({error.reason} at position {error.start}) and was not run"
    return None


def _error_grade(env: Environment, stage: str, error: BaseException, **extra: Any) -> Grade:
    return Grade(env.error_outcome, {
        "error": describe_error(error), "error_stage": stage, **extra,
        "error_traceback": "".join(traceback.format_exception(error))[-2000:],
    })


def run_episode(env: Environment, variant: Variant, policy: Policy, sandbox: Sandbox | None, *,
                policy_spec: str, max_commands: int = DEFAULT_MAX_COMMANDS) -> EpisodeRecord:
    """Play one episode to the end and grade it.

    The loop asks the policy for the next assistant message (stopping at `</bash>`); a message
    ending in a command gets the command's output as the next human turn; a message without a
    command ends the episode. A command beyond ``max_commands`` is not run and ends the episode.
    A command the sandbox machinery fails on ends the episode with ``env.error_outcome`` (see the
    module docstring); so does a grader that fails.
    """
    started = time.monotonic()
    timings = {"setup": 0.0, "policy": 0.0, "commands": 0.0, "grading": 0.0}
    messages = build_messages(variant.task, variant.uses_tools)
    episode_policy = policy_for_episode(policy, {**variant.hints, "seed": variant.seed, "index": variant.index})
    session: SandboxSession | None = None
    peak_memory: int | None = None
    if variant.uses_tools:
        if sandbox is None:
            raise ValueError(f"{env.name} needs a sandbox")
        clock = time.monotonic()
        session = sandbox.start(variant.files)
        timings["setup"] = time.monotonic() - clock
    extra_details: dict[str, Any] = {}
    try:
        initial_files = session.files() if session else {}
        commands: list[dict[str, Any]] = []
        hit_limit = False
        failure: Grade | None = None
        stop = STOP_AT_COMMAND if variant.uses_tools else []
        while True:
            clock = time.monotonic()
            reply = episode_policy.generate([dict(m) for m in messages], list(stop))
            timings["policy"] += time.monotonic() - clock
            _append_reply(messages, reply)
            command = extract_command(reply) if session else None
            if command is None:
                break
            if len(commands) >= max_commands:
                hit_limit = True
                break
            assert session is not None
            clock = time.monotonic()
            refusal = unrunnable_command(command)
            if refusal is not None:
                result = CommandResult(command=command, exit_code=None, stdout="", stderr="", seconds=0.0,
                                       notes=[refusal])
            else:
                try:
                    result = session.run(command)
                except _INFRASTRUCTURE:
                    raise
                except Exception as error:  # noqa: BLE001 - whatever the command did to the sandbox is the episode's
                    timings["commands"] += time.monotonic() - clock
                    commands.append({"command": command, "exit_code": None, "seconds": round(time.monotonic() - clock, 4),
                                     "timed_out": False, "output_truncated": False, "notes": [],
                                     "error": describe_error(error)})
                    failure = _error_grade(env, "command", error, command_index=len(commands) - 1)
                    break
            timings["commands"] += time.monotonic() - clock
            commands.append(result.to_record())
            messages.append({"role": "user", "content": format_command_output(result)})
        final_answer = "" if hit_limit or failure else strip_cot(messages[-1]["content"])
        view = EpisodeView(variant=variant, final_answer=final_answer, commands=tuple(c["command"] for c in commands))
        clock = time.monotonic()
        if failure is not None:
            grade = failure
        else:
            try:
                grade = env.grade(view, session)
            except _INFRASTRUCTURE:
                raise
            except Exception as error:  # noqa: BLE001 - a check the policy's files broke labels the episode
                grade = _error_grade(env, "grading", error)
        if grade.outcome not in env.outcomes:
            raise RuntimeError(f"{env.name} grader returned {grade.outcome!r}, not one of {env.outcomes}")
        timings["grading"] = time.monotonic() - clock
        try:
            final_files = session.files() if session else {}
        except _INFRASTRUCTURE:
            raise
        except Exception as error:  # noqa: BLE001 - the label stands; only the file evidence is missing
            final_files = initial_files
            extra_details["files_error"] = describe_error(error)
    finally:
        if session is not None:
            peak_memory = _peak_memory(session, extra_details)
            try:
                session.close()
            except Exception as error:  # noqa: BLE001 - a finished episode keeps its label
                extra_details["close_error"] = describe_error(error)
    timings["total"] = time.monotonic() - started
    return EpisodeRecord(
        id=episode_id(env.name, variant.seed, variant.index), env=env.name, index=variant.index,
        seed=variant.seed, policy=policy_spec, outcome=grade.outcome, gamed=env.is_gamed(grade.outcome),
        details={**grade.details, **extra_details}, final_answer=final_answer, messages=messages, commands=commands,
        hit_command_limit=hit_limit, files_changed=changed_files(initial_files, final_files),
        facts=variant.facts, settings=env.settings(), sandbox=getattr(sandbox, "kind", "none") if session else "not used",
        timings={key: round(value, 4) for key, value in timings.items()},
        sandbox_peak_memory_bytes=peak_memory,
    )


def _peak_memory(session: SandboxSession, details: dict[str, Any]) -> int | None:
    """The session's measured peak memory, if its sandbox measures one (read before it is closed)."""
    reader = getattr(session, "peak_memory_bytes", None)
    if not callable(reader):
        return None
    try:
        return reader()
    except Exception as error:  # noqa: BLE001 - evidence only: the episode keeps its label
        details["memory_error"] = describe_error(error)
        return None
