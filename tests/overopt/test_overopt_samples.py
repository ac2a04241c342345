"""The on-disk sample store: reuse, growth to a larger K, resume after a kill or a torn line, refusal of other settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardlab.errors import ConfigError, RewardlabError
from rewardlab.overopt.samples import BonPrompt, SampleStore, SamplingSettings
from rewardlab.policies import ReplayPolicy, ScriptedPolicy
from rewardlab.policies.base import SamplingSettings as PolicySamplingSettings
from rewardlab.policies.hf import HFPolicy

SETTINGS = SamplingSettings(temperature=1.0, max_new_tokens=8, seed=2)
PROMPTS = [BonPrompt(f"synthetic/arithmetic/{i:04d}", ({"role": "user", "content": f"What is {i} plus {i}?"},),
                     {"family": "arithmetic"}) for i in range(3)]


class CountingReplay(ReplayPolicy):
    """A replay policy that logs every sample request and can be made to die after some of them."""

    def __init__(self, turns: list[str], die_after: int | None = None) -> None:
        super().__init__(turns)
        self.calls: list[tuple[str, int, int]] = []
        self.die_after = die_after

    def sample(self, messages, k, settings, *, start=0):
        if self.die_after is not None and len(self.calls) >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((messages[-1]["content"], start, k))
        return [f"{text} for {messages[-1]['content']}" for text in super().sample(messages, k, settings, start=start)]


class CountingHF(HFPolicy):
    """The tiny-random HF policy, counting the samples it draws."""

    drawn = 0

    def sample(self, messages, k, settings, *, start=0):
        self.drawn += k
        return super().sample(messages, k, settings, start=start)


TURNS = [f"answer {i}" for i in range(10)]


def test_settings_are_the_policy_layers_type():
    assert SamplingSettings is PolicySamplingSettings


def test_a_second_run_samples_nothing_and_returns_the_same_samples(tmp_path):
    policy = CountingReplay(TURNS)
    first = SampleStore(tmp_path / "store", "replay:turns", SETTINGS).get(policy, PROMPTS, 4, progress=False)
    assert len(policy.calls) == 3 and [len(item.responses) for item in first] == [4, 4, 4]
    assert first[1].prompt is PROMPTS[1] and first[1].responses[0] == "answer 0 for What is 1 plus 1?"
    again = CountingReplay(TURNS)
    store = SampleStore(tmp_path / "store", "replay:turns", SETTINGS)
    second = store.get(again, PROMPTS, 4, progress=True)
    assert again.calls == [] and store.generated == 0
    assert [item.responses for item in second] == [item.responses for item in first]
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["policy"] == "replay:turns" and manifest["settings"] == SETTINGS.key()


def test_a_larger_k_samples_only_the_new_indices(tmp_path):
    policy = CountingReplay(TURNS)
    store = SampleStore(tmp_path, "replay:turns", SETTINGS, chunk=3)
    small = store.get(policy, PROMPTS[:2], 2, progress=False)
    policy.calls.clear()
    large = store.get(policy, PROMPTS[:2], 7, progress=False)
    content = [prompt.messages[0]["content"] for prompt in PROMPTS[:2]]
    assert policy.calls == [(content[0], 2, 3), (content[0], 5, 2), (content[1], 2, 3), (content[1], 5, 2)]
    assert store.generated == 10
    for before, after in zip(small, large):
        assert after.responses[:2] == before.responses and len(after.responses) == 7
        assert after.responses[6].startswith("answer 6")
    assert [item.responses for item in store.get(policy, PROMPTS[:2], 5, progress=False)] == \
        [item.responses[:5] for item in large]


def test_a_killed_run_keeps_its_finished_chunks_and_resumes(tmp_path):
    dying = CountingReplay(TURNS, die_after=3)
    with pytest.raises(KeyboardInterrupt):
        SampleStore(tmp_path, "replay:turns", SETTINGS, chunk=2).get(dying, PROMPTS, 4, progress=False)
    assert len(dying.calls) == 3  # prompt 0 complete (2 chunks), prompt 1 half done
    resumed = CountingReplay(TURNS)
    results = SampleStore(tmp_path, "replay:turns", SETTINGS, chunk=2).get(resumed, PROMPTS, 4, progress=False)
    content = [prompt.messages[0]["content"] for prompt in PROMPTS]
    assert resumed.calls == [(content[1], 2, 2), (content[2], 0, 2), (content[2], 2, 2)]
    assert results[1].responses == [f"answer {i} for {content[1]}" for i in range(4)]


def test_a_torn_last_line_is_cut_off_and_its_samples_drawn_again(tmp_path):
    policy = CountingReplay(TURNS)
    SampleStore(tmp_path, "replay:turns", SETTINGS, chunk=2).get(policy, PROMPTS[:1], 4, progress=False)
    samples = tmp_path / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2
    samples.write_bytes(lines[0] + lines[1][:25])  # a crash in the middle of the second append
    policy.calls.clear()
    store = SampleStore(tmp_path, "replay:turns", SETTINGS, chunk=2)
    results = store.get(policy, PROMPTS[:1], 4, progress=False)
    assert policy.calls == [(PROMPTS[0].messages[0]["content"], 2, 2)]
    assert results[0].responses[3].startswith("answer 3")
    assert all(json.loads(line) for line in samples.read_text().splitlines()) and store.bad_lines == 0


def test_a_changed_prompt_under_the_same_id_is_sampled_again(tmp_path):
    policy = CountingReplay(TURNS)
    store = SampleStore(tmp_path, "replay:turns", SETTINGS)
    store.get(policy, PROMPTS[:1], 2, progress=False)
    changed = BonPrompt(PROMPTS[0].prompt_id, ({"role": "user", "content": "a different question"},))
    result = store.get(policy, [changed], 2, progress=False)
    assert store.generated == 2 and result[0].responses[0] == "answer 0 for a different question"


def test_a_store_of_other_settings_or_policy_is_refused_naming_the_folder(tmp_path):
    folder = tmp_path / "samples"
    SampleStore(folder, "hf:tiny-random", SETTINGS)
    for spec, settings in (("hf:tiny-random", SamplingSettings(temperature=1.0, max_new_tokens=8, seed=3)),
                           ("hf:smollm2-135m", SETTINGS),
                           ("hf:tiny-random", SamplingSettings(temperature=0.7, max_new_tokens=8, seed=2))):
        with pytest.raises(ConfigError, match=str(folder)) as caught:
            SampleStore(folder, spec, settings)
        assert isinstance(caught.value, RewardlabError) and "another folder" in str(caught.value)
    (folder / "manifest.json").unlink()
    (folder / "samples.jsonl").write_text("")
    with pytest.raises(ConfigError, match="no manifest.json"):
        SampleStore(folder, "hf:tiny-random", SETTINGS)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        SampleStore(tmp_path / "file", "hf:tiny-random", SETTINGS)


def test_bad_requests_are_config_errors(tmp_path):
    store = SampleStore(tmp_path, "scripted:honest", SETTINGS)
    with pytest.raises(ConfigError, match="no sample method"):
        store.get(ScriptedPolicy("honest"), PROMPTS, 2, progress=False)
    with pytest.raises(ConfigError, match="at least 1"):
        store.get(CountingReplay(TURNS), PROMPTS, 0, progress=False)


def test_hf_samples_grown_through_the_store_equal_one_direct_draw(tmp_path: Path, one_torch_thread):
    policy = CountingHF("tiny-random", device="cpu")
    store = SampleStore(tmp_path, "hf:tiny-random", SETTINGS, chunk=4)
    store.get(policy, PROMPTS[:2], 3, progress=False)
    grown = store.get(policy, PROMPTS[:2], 6, progress=False)
    assert policy.drawn == 12
    direct = [policy.sample(list(prompt.messages), 6, SETTINGS) for prompt in PROMPTS[:2]]
    assert [item.responses for item in grown] == direct
    assert SampleStore(tmp_path, "hf:tiny-random", SETTINGS).get(policy, PROMPTS[:2], 6, progress=False) == grown
    assert policy.drawn == 24
