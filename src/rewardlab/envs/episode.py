"""One episode: build the transcript, loop policy → `<bash>` command → sandbox output, then grade.

Every episode whose sandbox started ends with a label. What the policy did can make a command
crash the sandbox machinery or make a grading check fail in ways the grader did not foresee; such
failures become the environment's ``error_outcome`` with the reason in ``details["error"]``.
Only failures outside the episode's control propagate (and end up in ``errors.jsonl``): the
sandbox cannot start (`SandboxUnavailable`, or any error from ``Sandbox.start``), the policy or
a grader model cannot answer (`PolicyError`). A transcript grown past the policy's context (long command
outputs) is the episode's own doing: it ends the episode unanswered, with a label.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from rewardlab.data.pair import Message
from rewardlab.envs.environments.base import Environment, EpisodeView, Grade, Variant
from rewardlab.envs.protocol import STOP_AT_COMMAND, build_messages, extract_command, format_command_output, strip_cot
from rewardlab.envs.sandbox.base import CommandResult, Sandbox, SandboxSession, SandboxUnavailable, changed_files
from rewardlab.policies.base import CONTEXT_LIMIT, BatchPolicy, ContextLimitError, Policy, PolicyError, policy_for_episode
from rewardlab.version import __version__

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
    sample: int = 0
    """Which repeat of the variant this is (0 unless a run asks for several episodes per variant)."""
    finish_reasons: list[str | None] = field(default_factory=list)
    """Per policy reply, why it ended (`rewardlab.policies.base.FINISH_REASONS`; None if not reported)."""
    rewardlab_version: str = __version__
    finished_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def episode_id(env: str, seed: int, index: int, sample: int = 0) -> str:
    """The stable id of episode ``index`` of ``env`` under ``seed`` (what makes runs resumable); repeated
    episodes of one variant (``sample`` 1, 2, …) get a ``-k`` suffix."""
    base = f"{env}-s{seed}-{index:05d}"
    return f"{base}-k{sample:03d}" if sample else base


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


class EpisodeRun:
    """One episode as a sequence of steps, so a driver can interleave many of them.

    ``start`` → repeatedly ``request`` (the messages and stop strings the policy must answer) and
    ``take_reply``; when ``take_reply`` returns True the episode waits on its command, which
    ``run_command`` runs → ``finish`` grades it and returns the record. ``close`` releases the sandbox
    if the episode is abandoned. `run_episode` drives one episode through these steps with one policy.
    """

    def __init__(self, env: Environment, variant: Variant, sandbox: Sandbox | None, *, policy_spec: str,
                 max_commands: int = DEFAULT_MAX_COMMANDS, sample: int = 0) -> None:
        self.env, self.variant, self.sandbox = env, variant, sandbox
        self.policy_spec, self.max_commands, self.sample = policy_spec, max_commands, sample
        self.messages = build_messages(variant.task, variant.uses_tools)
        self.stop = list(STOP_AT_COMMAND) if variant.uses_tools else []
        self.timings = {"setup": 0.0, "policy": 0.0, "commands": 0.0, "grading": 0.0}
        self.commands: list[dict[str, Any]] = []
        self.finish_reasons: list[str | None] = []
        self.hit_limit = False
        self.context_exhausted = False
        self.failure: Grade | None = None
        self.pending_command: str | None = None
        self.done = False
        self.session: SandboxSession | None = None
        self._initial_files: dict[str, Any] = {}
        self._extra_details: dict[str, Any] = {}
        self._started = time.monotonic()

    @property
    def hints(self) -> dict[str, Any]:
        """What `policy_for_episode` gets: the answer key plus the episode's identity."""
        hints = {**self.variant.hints, "seed": self.variant.seed, "index": self.variant.index}
        if self.sample:
            hints["sample"] = self.sample
        return hints

    def start(self) -> None:
        """Start the sandbox (tool environments) and note its initial files."""
        if not self.variant.uses_tools:
            return
        if self.sandbox is None:
            raise ValueError(f"{self.env.name} needs a sandbox")
        clock = time.monotonic()
        self.session = self.sandbox.start(self.variant.files)
        self.timings["setup"] = time.monotonic() - clock
        try:
            self._initial_files = self.session.files()
        except BaseException:
            self.close()
            raise

    def request(self) -> tuple[list[Message], list[str]]:
        """A copy of the transcript so far and the stop strings for the next reply."""
        return [dict(m) for m in self.messages], list(self.stop)  # type: ignore[misc]

    def take_reply(self, reply: str, *, seconds: float = 0.0, finish_reason: str | None = None) -> bool:
        """Append the policy's reply; True if the episode now waits on a command, False if it is over.

        A ``context_limit`` finish means the transcript no longer fits the policy's context: nothing was
        written, and the episode ends there without a final answer (``details["context_exhausted"]``),
        as it does at the command cap. Its length is the episode's own doing, so it gets a label.
        """
        self.timings["policy"] += seconds
        self.finish_reasons.append(finish_reason)
        if finish_reason == CONTEXT_LIMIT:
            self.context_exhausted = True
            self._extra_details["context_exhausted"] = True
            self.pending_command, self.done = None, True
            return False
        _append_reply(self.messages, reply)
        command = extract_command(reply) if self.session else None
        if command is not None and len(self.commands) >= self.max_commands:
            self.hit_limit = True
            command = None
        self.pending_command = command
        self.done = command is None
        return not self.done

    def run_command(self) -> None:
        """Run the pending command in the sandbox and append its output as the next human turn."""
        command, session = self.pending_command, self.session
        if command is None or session is None:
            raise RuntimeError("run_command called with no pending command")
        self.pending_command = None
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
                self.timings["commands"] += time.monotonic() - clock
                self.commands.append({"command": command, "exit_code": None,
                                      "seconds": round(time.monotonic() - clock, 4), "timed_out": False,
                                      "output_truncated": False, "notes": [], "error": describe_error(error)})
                self.failure = _error_grade(self.env, "command", error, command_index=len(self.commands) - 1)
                self.done = True
                return
        self.timings["commands"] += time.monotonic() - clock
        self.commands.append(result.to_record())
        self.messages.append({"role": "user", "content": format_command_output(result)})

    def finish(self) -> EpisodeRecord:
        """Grade the finished episode, close its sandbox and build its record."""
        env, variant, session = self.env, self.variant, self.session
        try:
            ended_early = self.hit_limit or self.failure or self.context_exhausted
            final_answer = "" if ended_early else strip_cot(self.messages[-1]["content"])
            view = EpisodeView(variant=variant, final_answer=final_answer,
                               commands=tuple(c["command"] for c in self.commands))
            clock = time.monotonic()
            if self.failure is not None:
                grade = self.failure
            else:
                try:
                    grade = env.grade(view, session)
                except _INFRASTRUCTURE:
                    raise
                except Exception as error:  # noqa: BLE001 - a check the policy's files broke labels the episode
                    grade = _error_grade(env, "grading", error)
            if grade.outcome not in env.outcomes:
                raise RuntimeError(f"{env.name} grader returned {grade.outcome!r}, not one of {env.outcomes}")
            self.timings["grading"] = time.monotonic() - clock
            try:
                final_files = session.files() if session else {}
            except _INFRASTRUCTURE:
                raise
            except Exception as error:  # noqa: BLE001 - the label stands; only the file evidence is missing
                final_files = self._initial_files
                self._extra_details["files_error"] = describe_error(error)
        finally:
            peak_memory = self.close()
        self.timings["total"] = time.monotonic() - self._started
        return EpisodeRecord(
            id=episode_id(env.name, variant.seed, variant.index, self.sample), env=env.name, index=variant.index,
            seed=variant.seed, policy=self.policy_spec, outcome=grade.outcome, gamed=env.is_gamed(grade.outcome),
            details={**grade.details, **self._extra_details}, final_answer=final_answer, messages=self.messages,
            commands=self.commands, hit_command_limit=self.hit_limit,
            files_changed=changed_files(self._initial_files, final_files), facts=variant.facts,
            settings=env.settings(), sandbox=getattr(self.sandbox, "kind", "none") if session else "not used",
            timings={key: round(value, 4) for key, value in self.timings.items()},
            sandbox_peak_memory_bytes=peak_memory, sample=self.sample, finish_reasons=self.finish_reasons,
        )

    def close(self) -> int | None:
        """Release the sandbox (idempotent); returns its measured peak memory, if any."""
        session, self.session = self.session, None
        if session is None:
            return None
        peak_memory = _peak_memory(session, self._extra_details)
        try:
            session.close()
        except Exception as error:  # noqa: BLE001 - a finished episode keeps its label
            self._extra_details["close_error"] = describe_error(error)
        return peak_memory


def run_episode(env: Environment, variant: Variant, policy: Policy, sandbox: Sandbox | None, *,
                policy_spec: str, max_commands: int = DEFAULT_MAX_COMMANDS, sample: int = 0) -> EpisodeRecord:
    """Play one episode to the end and grade it.

    The loop asks the policy for the next assistant message (stopping at `</bash>`); a message
    ending in a command gets the command's output as the next human turn; a message without a
    command ends the episode. A command beyond ``max_commands`` is not run and ends the episode.
    A command the sandbox machinery fails on ends the episode with ``env.error_outcome`` (see the
    module docstring); so does a grader that fails. ``sample`` numbers repeated episodes of one variant.
    """
    episode = EpisodeRun(env, variant, sandbox, policy_spec=policy_spec, max_commands=max_commands, sample=sample)
    episode_policy = policy_for_episode(policy, episode.hints)
    # A batch policy's per-episode view asks for the same draw through generate_many, which also says why it ended.
    batched = isinstance(policy, BatchPolicy) and callable(getattr(episode_policy, "request", None))
    episode.start()
    try:
        while not episode.done:
            messages, stop = episode.request()
            clock = time.monotonic()
            reason = None
            if batched:
                generation = policy.generate_many([episode_policy.request(messages, stop)])[0]  # type: ignore[attr-defined]
                reply, reason = generation.text, generation.finish_reason
            else:
                try:
                    reply = episode_policy.generate(messages, stop)
                except ContextLimitError:
                    reply, reason = "", CONTEXT_LIMIT
            if episode.take_reply(reply, seconds=time.monotonic() - clock, finish_reason=reason):
                episode.run_command()
    except BaseException:
        episode.close()
        raise
    return episode.finish()


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
