"""rewardlab inside Inspect AI: our environments as Inspect tasks, our bubblewrap sandbox as the
`rewardlab-bwrap` sandbox plugin, and episode records exported as Inspect eval logs.

- `tasks`: one `@task` per environment (``inspect eval rewardlab/reward_tampering``). The solver plays
  our episode protocol (`rewardlab.envs.episode.EpisodeRun`) with Inspect's model, the scorer runs our
  grader in the episode's sandbox, the metrics are outcome rates with Clopper-Pearson intervals.
- `sandbox`: `RewardlabBwrapSandbox`, usable by any Inspect task as ``sandbox="rewardlab-bwrap"``.
- `export`: `export_run` writes a run folder of `rewardlab envs run` as an Inspect log.
- `_registry`: the module Inspect's ``inspect_ai`` entry point loads.

inspect_ai is an optional dependency: importing this package without it raises `InspectMissingError`,
whose one-line message names the pip extra.
"""

from __future__ import annotations

from rewardlab.errors import ConfigError

INSTALL_HINT = "pip install 'rewardlab[inspect]'"


class InspectMissingError(ConfigError):
    """inspect_ai is not installed; the message says how to install it."""


def require_inspect() -> None:
    """Raise `InspectMissingError` (one line, naming the pip extra) when inspect_ai cannot be imported."""
    try:
        import inspect_ai  # noqa: F401
    except ImportError as error:
        raise InspectMissingError(f"the Inspect AI integration needs inspect_ai, which is not installed "
                                  f"({error}); run: {INSTALL_HINT}") from None


require_inspect()
