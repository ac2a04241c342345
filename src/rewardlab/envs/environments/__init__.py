"""The five sycophancy-to-subterfuge environments and a by-name factory."""

from __future__ import annotations

import inspect

from rewardlab.envs.environments.base import (
    Environment,
    EnvironmentOptionError,
    EpisodeView,
    Grade,
    Variant,
)
from rewardlab.envs.environments.flattery import ToolUseFlattery
from rewardlab.envs.environments.political import PoliticalSycophancy
from rewardlab.envs.environments.rubric import RubricModificationInsubordinate, RubricModificationNudged
from rewardlab.envs.environments.tampering import RewardTampering
from rewardlab.policies.base import Policy

ENVIRONMENTS: dict[str, type[Environment]] = {
    cls.name: cls
    for cls in (PoliticalSycophancy, ToolUseFlattery, RubricModificationNudged,
                RubricModificationInsubordinate, RewardTampering)
}
_INTERNAL_PARAMETERS = {"grader_policy", "grader_spec"}

__all__ = [
    "ENVIRONMENTS", "Environment", "EnvironmentOptionError", "EpisodeView", "Grade", "Variant",
    "environment_options", "make_environment",
]


def environment_options(name: str) -> list[str]:
    """The ``--env-option`` keys an environment accepts."""
    parameters = inspect.signature(ENVIRONMENTS[name].__init__).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [key for key, parameter in parameters.items()
            if parameter.kind in kinds and key != "self" and key not in _INTERNAL_PARAMETERS]


def make_environment(name: str, options: dict[str, str] | None = None, *,
                     grader_policy: Policy | None = None, grader_spec: str = "grader") -> Environment:
    """Build an environment by name; unknown names and options raise `EnvironmentOptionError`."""
    if name not in ENVIRONMENTS:
        raise EnvironmentOptionError(f"unknown environment {name!r}; choose one of {', '.join(ENVIRONMENTS)}")
    options = dict(options or {})
    allowed = environment_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise EnvironmentOptionError(f"{name} does not accept option(s) {', '.join(unknown)} (accepted: {accepted})")
    kwargs: dict = dict(options)
    if name == PoliticalSycophancy.name:
        kwargs.update(grader_policy=grader_policy, grader_spec=grader_spec)
    return ENVIRONMENTS[name](**kwargs)
