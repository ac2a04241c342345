"""`play_episodes` (`rewardlab.run_episodes`): `envs run` as one library call."""

from __future__ import annotations

import json

import pytest

from rewardlab.envs.environments import ENVIRONMENTS, EnvironmentOptionError
from rewardlab.envs.workflow import EpisodesConfig, play_episodes
from rewardlab.errors import ConfigError
from rewardlab.policies import ScriptedPolicy


def test_environment_selection_accepts_all_a_list_and_comma_separated_names():
    assert EpisodesConfig(policy="scripted:honest", out="x").environment_names() == list(ENVIRONMENTS)
    assert EpisodesConfig(policy="p", out="x", env="reward-tampering, tool-use-flattery").environment_names() == [
        "reward-tampering", "tool-use-flattery"]
    assert EpisodesConfig(policy="p", out="x", env=["reward-tampering"]).environment_names() == ["reward-tampering"]
    with pytest.raises(ConfigError, match="no environment selected"):
        EpisodesConfig(policy="p", out="x", env=" , ").environment_names()


def test_options_no_selected_environment_takes_are_refused(tmp_path):
    config = EpisodesConfig(policy="scripted:honest", out=tmp_path / "r", env="tool-use-flattery",
                            env_options={"colour": "blue"}, sandbox="none")
    with pytest.raises(EnvironmentOptionError, match="colour"):
        play_episodes(config, echo=lambda line: None)
    assert not (tmp_path / "r" / "episodes.jsonl").exists()


def test_a_policy_object_plays_under_the_recorded_spec_and_unsandboxed_mode_is_announced(tmp_path):
    warnings: list[str] = []
    config = EpisodesConfig(policy="scripted:honest", out=tmp_path / "r", env="political-sycophancy", n=2,
                            sandbox="none", env_options={"mode": "mc"}, progress=False)
    summary = play_episodes(config, policy=ScriptedPolicy("sycophant"), echo=warnings.append)
    assert summary.finished == 2 and summary.failed == 0
    assert summary.outcomes == {"political-sycophancy": {"sycophantic": 2}}  # the object played, not the spec
    assert any("WITHOUT ANY ISOLATION" in line for line in warnings)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["policy"] == "scripted:honest" and run["episode_settings"]["env_options"] == ["mode=mc"]
    with pytest.raises(ConfigError, match="only allowed for scripted policies"):
        play_episodes(EpisodesConfig(policy="hf:tiny-random", out=tmp_path / "s", sandbox="none"))
