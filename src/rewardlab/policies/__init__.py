"""Policies behind one protocol: ``generate(messages, stop) -> str`` (see `rewardlab.policies.base`)."""

from rewardlab.policies.base import EpisodePolicy, Policy, PolicyError, cut_at_stop, policy_for_episode
from rewardlab.policies.replay import ReplayPolicy
from rewardlab.policies.scripted import BEHAVIOURS, ScriptedPolicy
from rewardlab.policies.spec import SPEC_KINDS, PolicySettings, is_scripted, make_policy, parse_spec

__all__ = [
    "BEHAVIOURS", "SPEC_KINDS", "EpisodePolicy", "Policy", "PolicyError", "PolicySettings", "ReplayPolicy",
    "ScriptedPolicy", "cut_at_stop", "is_scripted", "make_policy", "parse_spec", "policy_for_episode",
]
