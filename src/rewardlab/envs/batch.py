"""Many episodes at once: their replies are generated as one batch, their commands run in parallel.

The episodes of a batch advance in waves. Each wave asks the policy for the next reply of every
episode that is waiting for one, in one `BatchPolicy.generate_many` call (a local model decodes them
together and prefills their shared preamble once); then the commands those replies end with run in
parallel threads, each in its episode's own sandbox; episodes that ended are graded (in parallel too).
The batch a request is decoded in depends only on the episodes' own histories, never on timing, so
a rerun draws the same replies. An episode's seed sequence is the one `run_episode` uses, so the two
drivers play the same episode (up to float rounding of batched decoding).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewardlab.envs.environments.base import Environment, Variant
from rewardlab.envs.episode import DEFAULT_MAX_COMMANDS, EpisodeRecord, EpisodeRun
from rewardlab.envs.sandbox.base import Sandbox
from rewardlab.policies.base import (
    CONTEXT_LIMIT,
    BatchPolicy,
    ContextLimitError,
    GenerationRequest,
    Policy,
    policy_for_episode,
)

EpisodeSpec = tuple[Environment, Variant, int]
"""An environment, the variant to play, and the sample number (repeats of one variant)."""


def play_batch(episodes: list[EpisodeSpec], policy: Policy, sandbox: Sandbox | None, *, policy_spec: str,
               max_commands: int = DEFAULT_MAX_COMMANDS, workers: int = 8) -> list[EpisodeRecord | BaseException]:
    """Play ``episodes`` to the end together; one record, or the failure that stopped it, per episode.

    Failures are what `run_episode` would raise (the sandbox cannot start, the policy cannot answer);
    everything an episode's own commands cause is labelled in its record, as with `run_episode`.
    ``workers`` threads start sandboxes, run commands and grade.
    """
    runs = [EpisodeRun(env, variant, sandbox, policy_spec=policy_spec, max_commands=max_commands, sample=sample)
            for env, variant, sample in episodes]
    views = [policy_for_episode(policy, run.hints) for run in runs]
    results: list[EpisodeRecord | BaseException | None] = [None] * len(runs)

    def guarded(index: int, step: Callable[[], Any]) -> None:
        try:
            outcome = step()
        except Exception as error:  # noqa: BLE001 - reported per episode, like run_episode's raise
            runs[index].close()
            results[index] = error
            return
        if isinstance(outcome, EpisodeRecord):
            results[index] = outcome

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="episode-batch") as pool:
        def in_parallel(indices: list[int], step: Callable[[int], Callable[[], Any]]) -> None:
            for future in [pool.submit(guarded, index, step(index)) for index in indices]:
                future.result()

        try:
            in_parallel(list(range(len(runs))), lambda index: runs[index].start)
            active = [index for index in range(len(runs)) if results[index] is None]
            while active:
                waiting = [index for index in active if not runs[index].done]
                _reply_wave(runs, views, policy, waiting, results)
                active = [index for index in active if results[index] is None]
                in_parallel([index for index in active if runs[index].pending_command is not None],
                            lambda index: runs[index].run_command)
                in_parallel([index for index in active if runs[index].done], lambda index: runs[index].finish)
                active = [index for index in active if results[index] is None]
        except BaseException:  # an interrupt: release every sandbox still held, then let it propagate
            for run in runs:
                run.close()
            raise
    return results  # type: ignore[return-value]


def _reply_wave(runs: list[EpisodeRun], views: list[Policy], policy: Policy, waiting: list[int],
                results: list[Any]) -> None:
    """Ask for the next reply of every waiting episode: batched where the policy batches, else one by one."""
    batched = [index for index in waiting if isinstance(policy, BatchPolicy) and callable(getattr(views[index], "request", None))]
    single = [index for index in waiting if index not in set(batched)]
    if batched:
        requests: list[GenerationRequest] = [views[index].request(*runs[index].request()) for index in batched]  # type: ignore[attr-defined]
        clock = time.monotonic()
        try:
            generations = policy.generate_many(requests)  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001 - the policy failed every episode of the wave
            for index in batched:
                runs[index].close()
                results[index] = error
        else:
            share = (time.monotonic() - clock) / len(batched)
            for index, generation in zip(batched, generations):
                runs[index].take_reply(generation.text, seconds=share, finish_reason=generation.finish_reason)
    for index in single:
        messages, stop = runs[index].request()
        clock = time.monotonic()
        try:
            reply = views[index].generate(messages, stop)
        except ContextLimitError:
            runs[index].take_reply("", seconds=time.monotonic() - clock, finish_reason=CONTEXT_LIMIT)
            continue
        except Exception as error:  # noqa: BLE001 - reported for this episode only
            runs[index].close()
            results[index] = error
            continue
        runs[index].take_reply(reply, seconds=time.monotonic() - clock)
