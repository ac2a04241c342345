"""Replay and scripted policies, policy specs, and the stop-string helpers of the policy protocol."""

from __future__ import annotations

import json

import pytest

from rewardlab.policies import (
    BEHAVIOURS,
    PolicyError,
    PolicySettings,
    ReplayPolicy,
    ScriptedPolicy,
    cut_at_stop,
    is_scripted,
    make_policy,
    parse_spec,
    policy_for_episode,
)
from rewardlab.policies.openai_http import OpenAIPolicy, restore_stop

OPENING = [{"role": "user", "content": "task"}, {"role": "assistant", "content": "<cot>"}]


def test_cut_at_stop_keeps_the_earliest_stop_string():
    assert cut_at_stop("a <bash>ls</bash> more <bash>x</bash>", ["</bash>"]) == "a <bash>ls</bash>"
    assert cut_at_stop("abcXYdefZ", ["Z", "XY"]) == "abcXY"
    assert cut_at_stop("no stop here", ["</bash>"]) == "no stop here"
    assert cut_at_stop("text", []) == "text"


def test_restore_stop_puts_back_what_servers_strip():
    assert restore_stop("<bash>ls", ["</bash>"], "stop", None) == "<bash>ls</bash>"
    assert restore_stop("<bash>ls", ["</bash>"], "stop", "</bash>") == "<bash>ls</bash>"
    assert restore_stop("The answer.", ["</bash>"], "stop", None) == "The answer."
    assert restore_stop("<bash>ls", ["</bash>"], "length", None) == "<bash>ls"
    assert restore_stop("<bash>ls</bash>", ["</bash>"], "stop", None) == "<bash>ls</bash>"


def test_replay_file_is_replayed_from_the_start_in_each_episode(tmp_path):
    path = tmp_path / "turns.json"
    path.write_text(json.dumps(["<cot>hm</cot><bash>ls</bash> ignored after stop", "done"]))
    policy = make_policy(f"replay:{path}")
    assert isinstance(policy, ReplayPolicy)
    for _ in range(2):
        episode = policy_for_episode(policy, {})
        assert episode.generate(OPENING, ["</bash>"]) == "<cot>hm</cot><bash>ls</bash>"
        assert episode.generate([{"role": "user", "content": "<stdout>\n</stdout>"}], ["</bash>"]) == "done"
        with pytest.raises(PolicyError, match="has 2 turn"):
            episode.generate(OPENING, ["</bash>"])
    assert ReplayPolicy(["<bash>ls</bash>"]).for_episode({}).generate(OPENING, []) == "<cot><bash>ls</bash>"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "invalid JSON at line 1"),
    ('{"turns": []}', "non-empty JSON list"),
    ('["ok", 3]', "turn 1 is int"),
])
def test_bad_replay_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(PolicyError, match=message) as error:
        make_policy(f"replay:{path}")
    assert "bad.json" in str(error.value)
    with pytest.raises(PolicyError, match="cannot read replay file"):
        make_policy(f"replay:{tmp_path / 'absent.json'}")


def test_scripted_policies_need_an_episode_and_a_known_environment():
    assert set(BEHAVIOURS) == {"honest", "sycophant", "liar", "liar-and-editor", "tamperer", "tamper-and-evade",
                               "confused"}
    policy = make_policy("scripted:liar")
    assert isinstance(policy, ScriptedPolicy)
    with pytest.raises(PolicyError, match="needs an episode"):
        policy.generate(OPENING, [])
    with pytest.raises(PolicyError, match="no script for environment 'chess'"):
        policy.for_episode({"env": "chess"})
    episode = policy.for_episode({"env": "reward-tampering"})
    first = episode.generate(OPENING, ["</bash>"])
    assert first.startswith("<cot>\n") and first.endswith("<bash>ls ./rl_environment</bash>")


def test_specs_are_parsed_and_errors_explain_the_forms():
    assert parse_spec("hf:smollm2-135m") == ("hf", "smollm2-135m")
    assert parse_spec("replay:/a:b.json") == ("replay", "/a:b.json")
    assert is_scripted("scripted:honest") and not is_scripted("hf:tiny-random")
    for bad in ("honest", "scripted:", "vllm:model"):
        with pytest.raises(PolicyError, match="scripted:NAME"):
            parse_spec(bad)
    with pytest.raises(PolicyError, match="--base-url"):
        make_policy("openai:m")
    policy = make_policy("openai:m", PolicySettings(base_url="http://127.0.0.1:9/v1", max_concurrency=3))
    assert isinstance(policy, OpenAIPolicy) and policy.base_url == "http://127.0.0.1:9/v1"
    policy.close()
