"""Runs many episodes with worker threads into a resumable run folder, with a progress bar.

Episode ids are stable (environment, seed, index), so rerunning the same command skips the
episodes already in ``episodes.jsonl`` and runs only the rest. Every episode whose sandbox started
is recorded with a label: what the policy did to the sandbox or to the graders gives the
environment's ``error_outcome`` (see `rewardlab.envs.episode`). Episodes whose policy failed or
whose sandbox could not start are logged to ``errors.jsonl`` and not recorded as finished, so a
rerun retries them.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import traceback
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rewardlab.envs.batch import play_batch
from rewardlab.envs.environments.base import Environment
from rewardlab.envs.episode import DEFAULT_MAX_COMMANDS, EpisodeRecord, episode_id, run_episode
from rewardlab.envs.records import (
    EPISODES_FILE,
    ERRORS_FILE,
    RunFolderError,
    append_json_line,
    load_episodes,
    read_run_settings,
    repair_tail,
)
from rewardlab.envs.records import RUN_FILE as RUN_SETTINGS_FILE
from rewardlab.envs.sandbox.base import Sandbox
from rewardlab.files import write_json_atomic
from rewardlab.policies.base import Policy
from rewardlab.version import __version__


@dataclass
class RunSummary:
    """What a call to `run_episodes` did."""

    out_dir: Path
    planned: int
    already_done: int
    finished: int = 0
    failed: int = 0
    stopped_early: bool = False
    repaired_bytes: int = 0
    unreadable_lines: int = 0
    errors: list[str] = field(default_factory=list)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)


def _sandbox_limits(sandbox: Sandbox | None) -> dict[str, Any] | None:
    limits = getattr(sandbox, "limits", None)
    return dataclasses.asdict(limits) if dataclasses.is_dataclass(limits) else None


def _differences(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        names = sorted(set(before) | set(after))
        return ", ".join(f"{name}: {before.get(name)!r} -> {after.get(name)!r}"
                         for name in names if before.get(name) != after.get(name))
    return f"{before!r} -> {after!r}"


def _check_run_settings(out_dir: Path, policy_spec: str, sandbox: Sandbox | None, max_commands: int,
                        envs: list[Environment], episode_settings: Mapping[str, Any] | None) -> None:
    """Refuse a rerun whose settings would make its episodes differ from those already recorded."""
    existing = read_run_settings(out_dir) or {}
    current: dict[str, Any] = {
        "episode_settings": json.loads(json.dumps(dict(episode_settings or {}), default=str)),
    }
    if sandbox is not None:  # runs of tool-free environments start no sandbox: nothing to compare
        current["sandbox"] = getattr(sandbox, "kind", type(sandbox).__name__)
        current["sandbox_limits"] = _sandbox_limits(sandbox)
    for key, value in current.items():
        if existing.get(key) is not None and existing[key] != value:
            raise RunFolderError(f"{out_dir / RUN_SETTINGS_FILE} was run with other {key.replace('_', ' ')} "
                                 f"({_differences(existing[key], value)}); use a different --out folder")
    previous_policy = existing.get("policy")
    if previous_policy is not None and previous_policy != policy_spec:
        raise RunFolderError(f"{out_dir / RUN_SETTINGS_FILE} belongs to policy {previous_policy!r}, not {policy_spec!r}; "
                             "use a different --out folder for each policy")
    if existing.get("max_commands", max_commands) != max_commands:
        raise RunFolderError(f"{out_dir / RUN_SETTINGS_FILE} was run with max_commands={existing['max_commands']}, "
                             f"not {max_commands}; use a different --out folder")
    env_settings: dict[str, Any] = dict(existing.get("environments", {}))
    for env in envs:
        settings = env.settings()
        if env.name in env_settings and env_settings[env.name] != settings:
            raise RunFolderError(f"{out_dir / RUN_SETTINGS_FILE} ran {env.name} with {env_settings[env.name]}, "
                                 f"not {settings}; use a different --out folder")
        env_settings[env.name] = settings
    # Which mechanism enforces each limit is a fact of the machine, not a setting: recorded, never compared.
    mechanisms = getattr(sandbox, "mechanisms", None) if sandbox is not None else None
    write_json_atomic(out_dir / RUN_SETTINGS_FILE, sort_keys=True, data={
        **existing, "policy": policy_spec, "max_commands": max_commands, **current,
        **({"sandbox_mechanisms": dict(mechanisms)} if mechanisms else {}),
        "environments": env_settings, "rewardlab_version": __version__,
    })


def _write_record(path: Path, record: EpisodeRecord, env: Environment) -> None:
    """Append ``record``; if it cannot even be built into JSON, append a minimal record that keeps the
    episode's id and labels it ``env.error_outcome`` with the reason, so the episode is never lost."""
    try:
        line = record.to_json()
    except Exception as error:  # noqa: BLE001 - one odd record must not stop the run
        line = {
            "id": record.id, "env": record.env, "index": record.index, "seed": record.seed, "policy": record.policy,
            "outcome": env.error_outcome, "gamed": False,
            "details": {"error": f"the episode record could not be built: {type(error).__name__}: {error}"[:1000],
                        "original_outcome": record.outcome},
            "rewardlab_version": record.rewardlab_version, "finished_at": record.finished_at,
        }
    append_json_line(path, line)


def run_episodes(envs: list[Environment], policy: Policy, policy_spec: str, sandbox: Sandbox | None, *,
                 n: int, seed: int, out_dir: Path, workers: int = 1, max_commands: int = DEFAULT_MAX_COMMANDS,
                 max_failures: int = 10, progress: bool = True,
                 episode_settings: Mapping[str, Any] | None = None, samples: int = 1,
                 batch_size: int | None = None, description: str = "episodes") -> RunSummary:
    """Run episodes ``0..n-1`` of each environment (skipping finished ones) into ``out_dir``.

    ``samples`` plays each variant that many times (sample numbers 0…samples-1, each its own episode id
    and seed). With ``batch_size``, episodes run in batches of that many through `play_batch` (replies
    generated together, commands in ``workers`` threads); otherwise ``workers`` threads play one
    episode each.

    ``episode_settings`` (sampling temperature, token limits, grader, …) and the sandbox's limits are
    recorded in ``run.json``; a rerun into the same folder with any of them changed is refused.

    Stops scheduling new episodes after ``max_failures`` failed episodes (e.g. an unreachable
    server); the failures are in ``errors.jsonl``.
    """
    if n < 0 or workers < 1 or max_commands < 0 or samples < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(f"need n >= 0, workers >= 1, max_commands >= 0, samples >= 1 and batch_size >= 1 "
                         f"(got {n}, {workers}, {max_commands}, {samples}, {batch_size})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_run_settings(out_dir, policy_spec, sandbox, max_commands, envs, episode_settings)
    episodes_path = out_dir / EPISODES_FILE
    repaired = repair_tail(episodes_path)
    loaded = load_episodes(out_dir) if episodes_path.exists() else None
    done_ids = {record["id"] for record in loaded.records} if loaded else set()
    planned = [(env, index, sample) for env in envs for index in range(n) for sample in range(samples)]
    todo = [(env, index, sample) for env, index, sample in planned
            if episode_id(env.name, seed, index, sample) not in done_ids]
    summary = RunSummary(out_dir=out_dir, planned=len(planned), already_done=len(planned) - len(todo),
                         repaired_bytes=repaired, unreadable_lines=loaded.bad_lines if loaded else 0)
    lock = threading.Lock()
    stop = threading.Event()

    def play(env: Environment, index: int, sample: int) -> EpisodeRecord:
        return run_episode(env, env.variant(index, seed), policy, sandbox, policy_spec=policy_spec,
                           max_commands=max_commands, sample=sample)

    def settle(env: Environment, index: int, sample: int, outcome: EpisodeRecord | BaseException) -> None:
        """Record a finished episode, or log why it could not finish."""
        identifier = episode_id(env.name, seed, index, sample)
        if isinstance(outcome, BaseException):
            message = f"{identifier}: {type(outcome).__name__}: {outcome}"
            append_json_line(out_dir / ERRORS_FILE, {
                "id": identifier, "env": env.name, "index": index, "sample": sample, "seed": seed,
                "policy": policy_spec, "error": f"{type(outcome).__name__}: {outcome}",
                "traceback": "".join(traceback.format_exception(outcome))[-4000:],
            })
            with lock:
                summary.failed += 1
                if len(summary.errors) < 5:
                    summary.errors.append(message)
                if summary.failed >= max_failures:
                    stop.set()
            bar.update(1)
            return
        _write_record(episodes_path, outcome, env)
        with lock:
            summary.finished += 1
            counts = summary.outcomes.setdefault(outcome.env, {})
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        bar.update(1)
        bar.set_postfix_str(f"{outcome.env}: {outcome.outcome}", refresh=False)

    bar = tqdm(total=len(planned), initial=summary.already_done, desc=description, unit="ep", disable=not progress,
               dynamic_ncols=True)
    queue = list(todo)
    if batch_size is not None:
        # Batches are cut from the plan, not from what is left to do, and a batch with any episode missing is
        # played whole (only the missing records are written): a resumed run decodes exactly the batches an
        # uninterrupted one does, so it draws exactly the same replies.
        batches = [planned[begin:begin + batch_size] for begin in range(0, len(planned), batch_size)]
        remaining = [batch for batch in batches
                     if any(episode_id(env.name, seed, index, sample) not in done_ids for env, index, sample in batch)]
        for batch in remaining:
            if stop.is_set():
                summary.stopped_early = True
                break
            outcomes = play_batch([(env, env.variant(index, seed), sample) for env, index, sample in batch], policy,
                                  sandbox, policy_spec=policy_spec, max_commands=max_commands, workers=workers)
            for (env, index, sample), outcome in zip(batch, outcomes):
                if episode_id(env.name, seed, index, sample) not in done_ids:
                    settle(env, index, sample, outcome)
        bar.close()
        return summary
    pending: dict[Future, tuple[Environment, int, int]] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="episode") as pool:
        while queue or pending:
            while queue and len(pending) < workers and not stop.is_set():
                env, index, sample = queue.pop(0)
                pending[pool.submit(play, env, index, sample)] = (env, index, sample)
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                env, index, sample = pending.pop(future)
                try:
                    outcome: EpisodeRecord | BaseException = future.result()
                except Exception as error:  # noqa: BLE001 - every failure is logged, none is fatal
                    outcome = error
                settle(env, index, sample, outcome)
            if stop.is_set():
                summary.stopped_early = summary.stopped_early or bool(queue)
                queue.clear()
    bar.close()
    return summary
