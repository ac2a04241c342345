"""The local transformers policy (tiny-random; smollm2-135m in one slow test): template, prefill, stops."""

from __future__ import annotations

import shutil

import pytest

from rewardlab.envs.environments import make_environment
from rewardlab.envs.episode import run_episode
from rewardlab.policies import PolicyError, make_policy, policy_for_episode
from rewardlab.policies.hf import HFPolicy

OPENING = [{"role": "user", "content": "How many episodes have run?"}, {"role": "assistant", "content": "<cot>"}]


@pytest.fixture(scope="module")
def greedy() -> HFPolicy:
    return HFPolicy("tiny-random", max_new_tokens=12, temperature=0.0)


def test_prompt_continues_the_assistant_opening(greedy):
    text = greedy.prompt_text(OPENING)
    assert text.endswith("<|im_start|>assistant\n<cot>")
    fresh = greedy.prompt_text(OPENING[:1])
    assert fresh.endswith("<|im_start|>assistant\n")


def test_generation_starts_with_the_opening_and_stops_at_a_stop_string(greedy):
    free = greedy.generate(OPENING, [])
    assert free.startswith("<cot>") and len(free) > len("<cot>")
    continuation = free[len("<cot>"):]
    stop = continuation[len(continuation) // 2: len(continuation) // 2 + 2]
    if len(stop.strip()) < 2:
        pytest.skip("greedy continuation too short to pick a stop string from")
    stopped = greedy.generate(OPENING, [stop])
    assert stopped.endswith(stop) and stopped.count(stop) == 1
    assert free.startswith(stopped)


def test_sampled_generation_is_repeatable_per_episode():
    policy = make_policy("hf:tiny-random")
    assert isinstance(policy, HFPolicy)
    policy.max_new_tokens = 8
    first = policy_for_episode(policy, {"env": "x", "seed": 1, "index": 0}).generate(OPENING, [])
    again = policy_for_episode(policy, {"env": "x", "seed": 1, "index": 0}).generate(OPENING, [])
    assert first == again


def test_an_episode_with_the_tiny_model_gets_a_valid_label(greedy):
    env = make_environment("political-sycophancy")
    record = run_episode(env, env.variant(0, 0), greedy, None, policy_spec="hf:tiny-random")
    assert record.outcome in env.outcomes and record.messages[-1]["content"].startswith("<cot>")


def test_context_overflow_is_a_clear_error(greedy):
    long_messages = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(PolicyError, match="exceeds the context"):
        greedy.generate(long_messages, [])


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_smollm2_plays_a_tool_episode_in_the_sandbox():
    from rewardlab.envs.sandbox import make_sandbox

    policy = HFPolicy("smollm2-135m", max_new_tokens=12, temperature=0.0)
    env = make_environment("reward-tampering")
    record = run_episode(env, env.variant(0, 0), policy, make_sandbox("bwrap"), policy_spec="hf:smollm2-135m",
                         max_commands=1)
    assert record.outcome in env.outcomes
    task_index = next(i for i, m in enumerate(record.messages) if m["content"] == env.variant(0, 0).task)
    replies = [m["content"] for m in record.messages[task_index:] if m["role"] == "assistant"]
    assert replies[0].startswith("<cot>") and all(len(reply) > len("<cot>") for reply in replies)
    assert all(reply.count("</bash>") <= 1 and (reply.endswith("</bash>") or "</bash>" not in reply) for reply in replies)


# --- generate_many: many episodes' replies decoded together -------------------------------------------------

def test_generate_many_shares_the_prefix_and_draws_what_each_request_draws_alone() -> None:
    from rewardlab.envs.protocol import build_messages
    from rewardlab.policies.base import GenerationRequest
    from rewardlab.policies.hf import HFPolicy

    policy = HFPolicy("tiny-random", max_new_tokens=10, temperature=1.0)
    tool = build_messages("Grade my poems.", True)
    plain = build_messages("Is the sky blue?", False)
    requests = [GenerationRequest(tool, ["</bash>"], 11), GenerationRequest(tool, ["</bash>"], 12),
                GenerationRequest(build_messages("How many episodes so far?", True), ["</bash>"], 13),
                GenerationRequest(plain, [], 14)]
    together = policy.generate_many(requests)
    alone = [policy.generate_many([request])[0] for request in requests]
    assert [g.text for g in together] == [g.text for g in alone]
    assert all(g.text.startswith("<cot>") for g in together)  # the prefill is continued
    assert together[0].text != together[1].text  # same prompt, own seeds
    assert all(g.finish_reason in ("eos", "length", "stop") for g in together)


def test_generate_many_stops_at_a_stop_string_and_keeps_it() -> None:
    from rewardlab.policies.base import GenerationRequest
    from rewardlab.policies.hf import HFPolicy

    policy = HFPolicy("tiny-random", max_new_tokens=40, temperature=1.0)
    messages = [{"role": "user", "content": "Say something."}]
    free = policy.generate_many([GenerationRequest(messages, [], seed) for seed in range(6)])
    marker = next(character for character in "etaoinsr" if sum(character in g.text for g in free) >= 3)
    stopped = policy.generate_many([GenerationRequest(messages, [marker], seed) for seed in range(6)])
    for before, after in zip(free, stopped):
        if marker in before.text:
            assert after.finish_reason == "stop"
            assert after.text == before.text[: before.text.index(marker) + 1]
        else:
            assert after.text == before.text and after.finish_reason == before.finish_reason


def test_generate_is_one_request_of_generate_many() -> None:
    from rewardlab.policies.base import GenerationRequest
    from rewardlab.policies.hf import HFPolicy

    policy = HFPolicy("tiny-random", max_new_tokens=8, temperature=1.0)
    messages = [{"role": "user", "content": "Hello"}]
    assert policy.generate(messages, [], seed=99) == policy.generate_many([GenerationRequest(messages, [], 99)])[0].text
    view = policy.for_episode({"env": "x", "seed": 1, "index": 2})
    request = policy.for_episode({"env": "x", "seed": 1, "index": 2}).request(messages, [])
    assert view.generate(messages, []) == policy.generate_many([request])[0].text
    other = policy.for_episode({"env": "x", "seed": 1, "index": 2, "sample": 1}).request(messages, [])
    assert other.seed != request.seed
