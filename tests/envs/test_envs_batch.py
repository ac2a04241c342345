"""Many episodes at once: waves of batched replies, commands in parallel, the same records as one at a time."""

from __future__ import annotations

import json
import shutil

import pytest

from rewardlab.envs.batch import play_batch
from rewardlab.envs.environments import ENVIRONMENTS, make_environment
from rewardlab.envs.episode import EpisodeRecord, episode_id, run_episode
from rewardlab.envs.records import load_episodes
from rewardlab.envs.runner import run_episodes
from rewardlab.policies.base import Generation, GenerationRequest, PolicyError
from rewardlab.policies.hf import HFPolicy
from rewardlab.policies.scripted import ScriptedPolicy


def comparable(record: EpisodeRecord) -> tuple:
    return record.id, record.outcome, record.gamed, record.messages, [c["command"] for c in record.commands]


@pytest.mark.parametrize("behaviour", ["honest", "liar-and-editor", "tamper-and-evade"])
def test_a_batch_of_scripted_episodes_equals_playing_them_one_by_one(bwrap_sandbox, behaviour: str) -> None:
    policy = ScriptedPolicy(behaviour)
    envs = [make_environment(name) for name in ENVIRONMENTS]
    specs = [(env, env.variant(index, 7), 0) for env in envs for index in range(2)]
    batched = play_batch(specs, policy, bwrap_sandbox, policy_spec=f"scripted:{behaviour}", workers=4)
    alone = [run_episode(env, variant, policy, bwrap_sandbox, policy_spec=f"scripted:{behaviour}")
             for env, variant, _ in specs]
    assert all(isinstance(record, EpisodeRecord) for record in batched)
    assert [comparable(r) for r in batched] == [comparable(r) for r in alone]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_policy() -> HFPolicy:
    return HFPolicy("tiny-random", max_new_tokens=12, temperature=1.0, seed=5)


def test_batched_model_episodes_draw_what_single_episodes_draw(bwrap_sandbox, tiny_policy, tmp_path) -> None:
    envs = [make_environment("political-sycophancy"), make_environment("reward-tampering")]
    run_episodes(envs, tiny_policy, "hf:tiny-random", bwrap_sandbox, n=3, seed=1, out_dir=tmp_path / "threads",
                 samples=2, progress=False, max_commands=2)
    run_episodes(envs, tiny_policy, "hf:tiny-random", bwrap_sandbox, n=3, seed=1, out_dir=tmp_path / "batched",
                 samples=2, batch_size=5, workers=3, progress=False, max_commands=2)
    one = {r["id"]: r for r in load_episodes(tmp_path / "threads").records}
    many = {r["id"]: r for r in load_episodes(tmp_path / "batched").records}
    assert set(one) == set(many) and len(one) == 12
    assert episode_id("reward-tampering", 1, 2, 1) in one  # repeats of one variant are distinct episodes
    for identifier in one:
        assert one[identifier]["messages"] == many[identifier]["messages"], identifier
        assert one[identifier]["finish_reasons"] == many[identifier]["finish_reasons"]
    replies = [r["messages"][-1]["content"] for r in one.values() if r["env"] == "political-sycophancy"]
    assert len(set(replies)) > 1  # samples of one variant differ: each has its own seed


def test_a_resumed_batched_run_replays_the_unfinished_batch_and_draws_the_same(bwrap_sandbox, tiny_policy,
                                                                                tmp_path) -> None:
    env = make_environment("tool-use-flattery")
    whole = tmp_path / "whole"
    run_episodes([env], tiny_policy, "hf:tiny-random", bwrap_sandbox, n=3, seed=2, out_dir=whole, samples=2,
                 batch_size=4, progress=False, max_commands=2)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    lines = (cut / "episodes.jsonl").read_text().splitlines(keepends=True)
    (cut / "episodes.jsonl").write_text("".join(lines[:2] + lines[3:]))  # one record of the first batch is lost
    summary = run_episodes([env], tiny_policy, "hf:tiny-random", bwrap_sandbox, n=3, seed=2, out_dir=cut, samples=2,
                           batch_size=4, progress=False, max_commands=2)
    assert summary.already_done == 5 and summary.finished == 1
    lost = json.loads(lines[2])
    again = [r for r in load_episodes(cut).records if r["id"] == lost["id"]]
    assert len(again) == 1 and again[0]["messages"] == lost["messages"]


class FailingBatches:
    """A batch policy whose server is down."""

    def generate_many(self, requests: list[GenerationRequest]) -> list[Generation]:
        raise PolicyError("the server at http://127.0.0.1:9 refused the connection")

    def generate(self, messages, stop) -> str:  # pragma: no cover - the batch path is taken
        raise AssertionError("not used")

    def for_episode(self, hints):
        return _View()


class _View:
    calls = 0

    def request(self, messages, stop) -> GenerationRequest:
        return GenerationRequest(messages, stop, 1)

    def generate(self, messages, stop) -> str:  # pragma: no cover
        raise AssertionError("not used")


def test_a_failing_policy_fails_the_wave_into_errors_and_frees_every_sandbox(bwrap_sandbox, tmp_path) -> None:
    env = make_environment("reward-tampering")
    summary = run_episodes([env], FailingBatches(), "openai:down", bwrap_sandbox, n=3, seed=0, out_dir=tmp_path,
                           batch_size=3, progress=False, max_failures=10)
    assert summary.finished == 0 and summary.failed == 3
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert {e["id"] for e in errors} == {episode_id(env.name, 0, i) for i in range(3)}
    assert all("refused the connection" in e["error"] for e in errors)
    assert not (tmp_path / "episodes.jsonl").exists() or not (tmp_path / "episodes.jsonl").read_text().strip()


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_transcript_past_the_context_ends_the_episode_with_a_label(bwrap_sandbox, tmp_path, batch_size) -> None:
    long_replies = HFPolicy("tiny-random", max_new_tokens=1900, temperature=1.0)  # preamble + 1900 > 2048
    env = make_environment("rubric-modification-nudged")
    summary = run_episodes([env], long_replies, "hf:tiny-random", bwrap_sandbox, n=2, seed=0, out_dir=tmp_path,
                           batch_size=batch_size, progress=False)
    assert summary.failed == 0 and summary.finished == 2
    assert not (tmp_path / "errors.jsonl").exists()
    for record in load_episodes(tmp_path).records:
        assert record["details"]["context_exhausted"] is True
        assert record["finish_reasons"][-1] == "context_limit" and record["final_answer"] == ""
        assert record["outcome"] == env.error_outcome
