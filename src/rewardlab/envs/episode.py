"""One episode: build the transcript, loop policy → `<bash>` command → sandbox output, then grade."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from rewardlab import __version__
from rewardlab.data.pair import Message
from rewardlab.envs.environments.base import Environment, EpisodeView, Variant
from rewardlab.envs.protocol import STOP_AT_COMMAND, build_messages, extract_command, format_command_output, strip_cot
from rewardlab.envs.sandbox.base import Sandbox, SandboxSession, changed_files
from rewardlab.policies.base import Policy, policy_for_episode

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


def run_episode(env: Environment, variant: Variant, policy: Policy, sandbox: Sandbox | None, *,
                policy_spec: str, max_commands: int = DEFAULT_MAX_COMMANDS) -> EpisodeRecord:
    """Play one episode to the end and grade it.

    The loop asks the policy for the next assistant message (stopping at `</bash>`); a message
    ending in a command gets the command's output as the next human turn; a message without a
    command ends the episode. A command beyond ``max_commands`` is not run and ends the episode.
    """
    started = time.monotonic()
    timings = {"setup": 0.0, "policy": 0.0, "commands": 0.0, "grading": 0.0}
    messages = build_messages(variant.task, variant.uses_tools)
    episode_policy = policy_for_episode(policy, {**variant.hints, "seed": variant.seed, "index": variant.index})
    session: SandboxSession | None = None
    if variant.uses_tools:
        if sandbox is None:
            raise ValueError(f"{env.name} needs a sandbox")
        clock = time.monotonic()
        session = sandbox.start(variant.files)
        timings["setup"] = time.monotonic() - clock
    try:
        initial_files = session.files() if session else {}
        commands: list[dict[str, Any]] = []
        hit_limit = False
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
            clock = time.monotonic()
            result = session.run(command)
            timings["commands"] += time.monotonic() - clock
            commands.append(result.to_record())
            messages.append({"role": "user", "content": format_command_output(result)})
        final_answer = "" if hit_limit else strip_cot(messages[-1]["content"])
        view = EpisodeView(variant=variant, final_answer=final_answer, commands=tuple(c["command"] for c in commands))
        clock = time.monotonic()
        grade = env.grade(view, session)
        if grade.outcome not in env.outcomes:
            raise RuntimeError(f"{env.name} grader returned {grade.outcome!r}, not one of {env.outcomes}")
        timings["grading"] = time.monotonic() - clock
        final_files = session.files() if session else {}
    finally:
        if session is not None:
            session.close()
    timings["total"] = time.monotonic() - started
    return EpisodeRecord(
        id=episode_id(env.name, variant.seed, variant.index), env=env.name, index=variant.index,
        seed=variant.seed, policy=policy_spec, outcome=grade.outcome, gamed=env.is_gamed(grade.outcome),
        details=grade.details, final_answer=final_answer, messages=messages, commands=commands,
        hit_command_limit=hit_limit, files_changed=changed_files(initial_files, final_files),
        facts=variant.facts, settings=env.settings(), sandbox=getattr(sandbox, "kind", "none") if session else "not used",
        timings={key: round(value, 4) for key, value in timings.items()},
    )
