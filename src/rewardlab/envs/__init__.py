"""Sycophancy-to-subterfuge environments run in a bubblewrap sandbox, with exact graders.

Layout: `environments` (seeded variants and outcome labels), `protocol` (transcript and the
`<bash>` loop's text format), `sandbox` (bubblewrap; explicit unsandboxed mode), `graders`,
`episode` (one episode), `runner` (many episodes, resumable), `report` (rates with exact
intervals), `show` (one transcript).
"""

from rewardlab.envs.environments import ENVIRONMENTS, Environment, EnvironmentOptionError, Variant, make_environment
from rewardlab.envs.episode import DEFAULT_MAX_COMMANDS, EpisodeRecord, episode_id, run_episode
from rewardlab.envs.report import format_report, report_folder, report_json, summarize
from rewardlab.envs.runner import RunSummary, run_episodes
from rewardlab.envs.sandbox import SandboxLimits, SandboxUnavailable, make_sandbox
from rewardlab.envs.stats import clopper_pearson

__all__ = [
    "DEFAULT_MAX_COMMANDS", "ENVIRONMENTS", "Environment", "EnvironmentOptionError", "EpisodeRecord", "RunSummary",
    "SandboxLimits", "SandboxUnavailable", "Variant", "clopper_pearson", "episode_id", "format_report",
    "make_environment", "make_sandbox", "report_folder", "report_json", "run_episode", "run_episodes", "summarize",
]
