"""`rewardlab envs run` as one call: environments, policy and sandbox built from names, then `run_episodes`.

`EpisodesConfig` holds what the command's flags hold; `play_episodes` builds the environments (with
their options and an optional grader model), the sandbox and the policy, and runs them into a
resumable run folder. `rewardlab.envs.run_episodes` is the lower-level runner for callers who already
hold `Environment`, `Policy` and `Sandbox` objects.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rewardlab.envs.environments import ENVIRONMENTS, EnvironmentOptionError, environment_options, make_environment
from rewardlab.envs.episode import DEFAULT_MAX_COMMANDS
from rewardlab.envs.runner import RunSummary, run_episodes
from rewardlab.envs.sandbox import UNSANDBOXED_WARNING, SandboxLimits, make_sandbox
from rewardlab.errors import ConfigError
from rewardlab.policies import Policy, PolicySettings, is_scripted, make_policy


@dataclass
class EpisodesConfig:
    """Everything `rewardlab envs run` takes; the field names are its flags' names."""

    policy: str  # scripted:NAME | replay:PATH | hf:MODEL | openai:MODEL (with base_url)
    out: str | Path
    env: str | Sequence[str] = "all"  # a name, a comma-separated list, a list, or "all"
    n: int = 10
    seed: int = 0
    workers: int = 1
    samples: int = 1
    batch_size: int | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_commands: int = DEFAULT_MAX_COMMANDS
    sandbox: str = "bwrap"
    command_timeout: float = 20.0
    env_options: Mapping[str, str] = field(default_factory=dict)
    grader: str | None = None
    grader_base_url: str | None = None
    max_new_tokens: int = 512
    temperature: float = 1.0
    concurrency: int = 8
    retries: int = 5
    prefill: str = "continue"
    max_failures: int = 10
    progress: bool = True

    def environment_names(self) -> list[str]:
        """The selected environments, in order."""
        if isinstance(self.env, str):
            names = list(ENVIRONMENTS) if self.env == "all" else [n.strip() for n in self.env.split(",") if n.strip()]
        else:
            names = list(self.env)
        if not names:
            raise ConfigError("no environment selected: name one, a comma-separated list, or 'all'")
        return names

    def episode_settings(self) -> dict[str, Any]:
        """Every setting besides the policy, seed and environments that changes what an episode does.

        Recorded in the run folder's ``run.json``: a rerun with any of them changed is refused.
        """
        return {
            "temperature": self.temperature, "max_new_tokens": self.max_new_tokens, "prefill": self.prefill,
            "grader": self.grader, "env_options": sorted(f"{k}={v}" for k, v in self.env_options.items()),
        }


def _options_of(name: str) -> set[str]:
    return set(environment_options(name))


def play_episodes(config: EpisodesConfig, *, policy: Policy | None = None,
                  echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> RunSummary:
    """Run ``config.n`` episodes of each selected environment into ``config.out`` (finished ones are kept).

    ``policy`` replaces the one ``config.policy`` names (its spec is still what the run folder records),
    for a policy object built in Python. ``echo`` receives the unsandboxed-mode warning.
    """
    names = config.environment_names()
    settings = PolicySettings(base_url=config.base_url, max_new_tokens=config.max_new_tokens,
                              temperature=config.temperature, max_concurrency=config.concurrency,
                              max_retries=config.retries, prefill=config.prefill, api_key_env=config.api_key_env,
                              seed=config.seed)
    if config.sandbox == "none":
        if not is_scripted(config.policy):
            raise ConfigError(f"--sandbox none is only allowed for scripted policies, not {config.policy!r}; "
                              "install bubblewrap instead")
        echo("!" * 78 + f"\n{UNSANDBOXED_WARNING}\n" + "!" * 78)
    options = dict(config.env_options)
    grader_settings = replace(settings, base_url=config.grader_base_url or config.base_url, temperature=0.0,
                              max_new_tokens=64)
    grader = make_policy(config.grader, grader_settings) if config.grader else None
    envs = []
    for name in names:
        own = options if len(names) == 1 else {k: v for k, v in options.items() if k in _options_of(name)}
        envs.append(make_environment(name, own, grader_policy=grader, grader_spec=config.grader or "grader"))
    unused = set(options) - set().union(*(_options_of(env.name) for env in envs))
    if unused:
        raise EnvironmentOptionError(f"no selected environment accepts option(s) {', '.join(sorted(unused))}")
    needs_sandbox = any(env.uses_tools for env in envs)
    sandbox = make_sandbox(config.sandbox, SandboxLimits(command_timeout=config.command_timeout)) if needs_sandbox else None
    return run_episodes(envs, policy or make_policy(config.policy, settings), config.policy, sandbox, n=config.n,
                        seed=config.seed, out_dir=Path(config.out), workers=config.workers,
                        max_commands=config.max_commands, max_failures=config.max_failures,
                        progress=config.progress, episode_settings=config.episode_settings(),
                        samples=config.samples, batch_size=config.batch_size)
