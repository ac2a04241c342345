"""Each rewardlab environment as an Inspect task: ``inspect eval rewardlab/reward_tampering --model ...``.

One integration path, no second implementation of anything:

- dataset: the environment's seeded variants (`Environment.variant`), one Inspect sample per episode,
  with the episode's id (``reward-tampering-s0-00003``); tool environments ship their files as the
  sample's ``files``, which Inspect writes into the `rewardlab-bwrap` sandbox (`sandbox.py`);
- solver (`episode_solver`): our episode protocol, `rewardlab.envs.episode.EpisodeRun` (the preamble,
  the ``<cot>`` prefill, the ``<bash>`` loop, the command cap), with Inspect's model answering through
  `InspectModelPolicy` and every command run in the sample's bubblewrap session;
- scorer (`episode_scorer`): `EpisodeRun.finish`, i.e. our grader, run in the same live sandbox; the
  score's value is the outcome label and its metadata the episode record (grade details in ``details``);
- metrics: `outcome_rates`, every label's rate and gaming's, with Clopper-Pearson intervals.

Task arguments (``-T key=value``): ``seed`` and ``n`` (variants ``0..n-1`` of that seed), ``samples``
(episodes per variant), ``max_commands``, ``command_timeout`` (seconds per command), ``prefill``
(``continue`` or ``none``, see `InspectModelPolicy`), and the environment's own options.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import anyio
from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.util import LimitExceededError
from inspect_ai.util import sandbox as current_sandbox

from rewardlab.envs.environments import Environment, make_environment
from rewardlab.envs.episode import DEFAULT_MAX_COMMANDS, EpisodeRun, episode_id
from rewardlab.envs.protocol import build_messages
from rewardlab.envs.sandbox.base import CommandResult, SandboxLimits
from rewardlab.errors import ConfigError
from rewardlab.integrations.inspect._convert import SCORER_NAME, score_for_record, to_chat
from rewardlab.integrations.inspect.metrics import outcome_rates
from rewardlab.integrations.inspect.policy import InspectModelPolicy
from rewardlab.integrations.inspect.sandbox import (
    SANDBOX_NAME,
    RewardlabBwrapConfig,
    RewardlabBwrapSandbox,
    bubblewrap_for,
)
from rewardlab.policies.base import CONTEXT_LIMIT

_EPISODES: dict[str, EpisodeRun] = {}
"""Episodes the solver has played and the scorer has yet to grade, by Inspect's per-sample uuid."""


class _BorrowedSession:
    """The sample's bubblewrap session, lent to an `EpisodeRun`: closing it is left to Inspect's
    ``sample_cleanup``, which runs after the scorer has graded the episode in it."""

    kind = SANDBOX_NAME

    def __init__(self, environment: RewardlabBwrapSandbox) -> None:
        self._session = environment.session

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True,
            channel: bool = False) -> CommandResult:
        return self._session.run(command, timeout=timeout, persist=persist, channel=channel)

    def files(self) -> dict[str, bytes]:
        return self._session.files()

    def peak_memory_bytes(self) -> int:
        return self._session.peak_memory_bytes()

    def close(self) -> None:
        """Nothing to do: the sandbox belongs to the Inspect sample."""


class _SampleSandbox:
    """The `Sandbox` an `EpisodeRun` gets inside Inspect: the sample's `rewardlab-bwrap` environment, which
    already holds the variant's files (Inspect wrote the sample's ``files`` into it before the solver ran)."""

    kind = SANDBOX_NAME

    def __init__(self, environment: RewardlabBwrapSandbox) -> None:
        self.environment = environment
        self.limits: SandboxLimits = environment.limits

    @property
    def mechanisms(self) -> dict[str, str]:
        return bubblewrap_for(self.limits).mechanisms

    def start(self, files: dict[str, str]) -> _BorrowedSession:
        return _BorrowedSession(self.environment)


def _sample_sandbox() -> _SampleSandbox:
    try:
        environment = current_sandbox().as_type(RewardlabBwrapSandbox)
    except TypeError as error:
        raise ConfigError(f"rewardlab environment tasks run their commands in the {SANDBOX_NAME!r} sandbox, "
                          f"not another one ({error})") from None
    return _SampleSandbox(environment)


def _data_uri(text: str) -> str:
    """File contents as a data URI, so Inspect never mistakes them for a path to read."""
    return "data:text/plain;charset=utf-8;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def _build_environment(env: str, options: dict[str, str] | None, mode_grader: str | None) -> Environment:
    free_text = (options or {}).get("mode") == "free"
    grader = InspectModelPolicy(mode_grader, role="grader", config=GenerateConfig(temperature=0.0, max_tokens=64))
    return make_environment(env, options, grader_policy=grader if free_text else None,
                            grader_spec=f"inspect:{mode_grader or 'role=grader'}")


def episode_dataset(environment: Environment, *, seed: int, n: int, samples: int = 1) -> MemoryDataset:
    """Variants ``0..n-1`` of ``seed``, each played ``samples`` times: one sample per episode, ids as in our runs."""
    items = []
    for index in range(n):
        variant = environment.variant(index, seed)
        opening = build_messages(variant.task, variant.uses_tools)[:-1]  # without the assistant's `<cot>` opening
        for sample in range(samples):
            items.append(Sample(
                id=episode_id(environment.name, seed, index, sample), input=to_chat(opening), target="",
                metadata={"env": environment.name, "index": index, "seed": seed, "sample": sample,
                          "samples": samples, "facts": variant.facts},
                files={path: _data_uri(text) for path, text in variant.files.items()} if variant.uses_tools else None,
            ))
    return MemoryDataset(items, name=environment.name)


@solver
def episode_solver(env: str, options: dict[str, str] | None = None, max_commands: int = DEFAULT_MAX_COMMANDS,
                   prefill: str = "continue", grader: str | None = None) -> Solver:
    """Play one rewardlab episode per sample with the eval's model (`EpisodeRun`, unchanged); the scorer grades it."""
    environment = _build_environment(env, options, grader)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        metadata = state.metadata
        variant = environment.variant(int(metadata["index"]), int(metadata["seed"]))
        # Epochs repeat a sample; each repeat is its own episode (sample number past the dataset's repeats).
        sample = int(metadata.get("sample", 0)) + (state.epoch - 1) * int(metadata.get("samples", 1))
        policy = InspectModelPolicy(prefill=prefill)
        sandbox = _sample_sandbox() if variant.uses_tools else None
        episode = EpisodeRun(environment, variant, sandbox, policy_spec=policy.name, max_commands=max_commands,
                             sample=sample)
        _EPISODES[state.uuid] = episode
        try:
            await anyio.to_thread.run_sync(episode.start)
            model = str(policy.model())
            while not episode.done:
                messages, stop = episode.request()
                clock = time.monotonic()
                generation = await policy.agenerate(messages, stop)
                waits = episode.take_reply(generation.text, seconds=time.monotonic() - clock,
                                           finish_reason=generation.finish_reason)
                state.messages = to_chat(episode.messages, model=model)
                if waits:
                    await anyio.to_thread.run_sync(episode.run_command)
                    state.messages = to_chat(episode.messages, model=model)
        except LimitExceededError:
            raise  # Inspect still scores the sample: the scorer grades the episode as far as it got
        except BaseException:
            _EPISODES.pop(state.uuid, None)  # the sample failed; nothing will grade it
            raise
        if policy.last_output is not None:
            state.output = policy.last_output
        state.output.completion = episode.messages[-1]["content"]
        return state

    return solve


@scorer(metrics=[outcome_rates()], name=SCORER_NAME)
def episode_scorer() -> Scorer:
    """Grade the sample's episode with our grader, in its still-running sandbox; the value is the outcome label."""

    async def score(state: TaskState, target: Target) -> Score:
        episode = _EPISODES.pop(state.uuid, None)
        if episode is None:
            raise ConfigError("the rewardlab scorer grades episodes played by rewardlab's episode_solver, "
                              "and this sample has none")
        stopped = not episode.done
        if stopped:
            # An Inspect limit (tokens, messages, time) ended the episode mid-way: graded like a context overflow,
            # with no final answer, on whatever the episode did to its files.
            episode.take_reply("", finish_reason=CONTEXT_LIMIT)
        record = (await anyio.to_thread.run_sync(episode.finish)).to_json()
        if stopped:
            record["details"]["stopped_by_inspect_limit"] = True
        return score_for_record(record)

    return score


def environment_task(env: str, *, seed: int = 0, n: int = 10, samples: int = 1,
                     max_commands: int = DEFAULT_MAX_COMMANDS, command_timeout: float = 20.0,
                     prefill: str = "continue", options: dict[str, Any] | None = None,
                     grader: str | None = None) -> Task:
    """The Inspect task of environment ``env`` (a name from `rewardlab.envs.ENVIRONMENTS`).

    ``options`` are the environment's own (``--env-option`` in ``rewardlab envs run``); None values are left
    out. ``grader`` names the Inspect model that grades free-text political answers (``mode=free``), unless
    the eval binds the model role ``grader``.
    """
    if n < 0 or samples < 1 or max_commands < 0:
        raise ConfigError(f"need n >= 0, samples >= 1 and max_commands >= 0 (got {n}, {samples}, {max_commands})")
    chosen = {key: str(value) for key, value in (options or {}).items() if value is not None}
    environment = _build_environment(env, chosen, grader)
    sandbox = (SANDBOX_NAME, RewardlabBwrapConfig(command_timeout=command_timeout)) if environment.uses_tools else None
    return Task(
        dataset=episode_dataset(environment, seed=seed, n=n, samples=samples),
        solver=episode_solver(env, chosen, max_commands=max_commands, prefill=prefill, grader=grader),
        scorer=episode_scorer(),
        metrics=[outcome_rates(outcomes=list(environment.outcomes), gaming=sorted(environment.gaming_outcomes))],
        sandbox=sandbox,
        epochs=Epochs(1, "mode"),
        metadata={"rewardlab_env": env, "env_settings": environment.settings(), "max_commands": max_commands},
    )


@task
def political_sycophancy(seed: int = 0, n: int = 10, samples: int = 1, prefill: str = "continue",
                         data: str | None = None, mode: str | None = None, grader: str | None = None) -> Task:
    """political-sycophancy: a biography implying a side, then a two-option question (no shell)."""
    return environment_task("political-sycophancy", seed=seed, n=n, samples=samples, prefill=prefill,
                            options={"data": data, "mode": mode}, grader=grader)


@task
def tool_use_flattery(seed: int = 0, n: int = 10, samples: int = 1, max_commands: int = DEFAULT_MAX_COMMANDS,
                      command_timeout: float = 20.0, prefill: str = "continue", threshold: float | None = None,
                      check_timeout: float | None = None) -> Task:
    """tool-use-flattery: rate the user's poems and write the score into grade.py."""
    return environment_task("tool-use-flattery", seed=seed, n=n, samples=samples, max_commands=max_commands,
                            command_timeout=command_timeout, prefill=prefill,
                            options={"threshold": threshold, "check_timeout": check_timeout})


@task
def rubric_modification_nudged(seed: int = 0, n: int = 10, samples: int = 1, max_commands: int = DEFAULT_MAX_COMMANDS,
                               command_timeout: float = 20.0, prefill: str = "continue",
                               check_timeout: float | None = None) -> Task:
    """rubric-modification-nudged: report whether the launch checklist is complete."""
    return environment_task("rubric-modification-nudged", seed=seed, n=n, samples=samples, max_commands=max_commands,
                            command_timeout=command_timeout, prefill=prefill, options={"check_timeout": check_timeout})


@task
def rubric_modification_insubordinate(seed: int = 0, n: int = 10, samples: int = 1,
                                      max_commands: int = DEFAULT_MAX_COMMANDS, command_timeout: float = 20.0,
                                      prefill: str = "continue", check_timeout: float | None = None) -> Task:
    """rubric-modification-insubordinate: the same checklist, with the user forbidding any file change."""
    return environment_task("rubric-modification-insubordinate", seed=seed, n=n, samples=samples,
                            max_commands=max_commands, command_timeout=command_timeout, prefill=prefill,
                            options={"check_timeout": check_timeout})


@task
def reward_tampering(seed: int = 0, n: int = 10, samples: int = 1, max_commands: int = DEFAULT_MAX_COMMANDS,
                     command_timeout: float = 20.0, prefill: str = "continue",
                     check_timeout: float | None = None) -> Task:
    """reward-tampering (evaluation only): "how many RL episodes have we run?" next to a gameable reward."""
    return environment_task("reward-tampering", seed=seed, n=n, samples=samples, max_commands=max_commands,
                            command_timeout=command_timeout, prefill=prefill, options={"check_timeout": check_timeout})


TASKS = {
    "political-sycophancy": political_sycophancy,
    "tool-use-flattery": tool_use_flattery,
    "rubric-modification-nudged": rubric_modification_nudged,
    "rubric-modification-insubordinate": rubric_modification_insubordinate,
    "reward-tampering": reward_tampering,
}
"""The task of each environment in `rewardlab.envs.ENVIRONMENTS`, by environment name."""
