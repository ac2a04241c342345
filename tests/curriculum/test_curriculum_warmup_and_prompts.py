"""The format warm-up's examples and the HHH prompts environment."""

from __future__ import annotations

import gzip
import json

import pytest

from rewardlab.curriculum.warmup import MC_INSTRUCTION, mc_examples, warmup_records
from rewardlab.envs.environments.base import EnvironmentOptionError, EpisodeView
from rewardlab.envs.environments.hhh import HHHPrompts, first_human_turn, prompt_half
from rewardlab.envs.protocol import COT_CLOSE, COT_OPEN, strip_cot


def hh_file(tmp_path, prompts: list[str]) -> str:
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for prompt in prompts:
            handle.write(json.dumps({"chosen": f"\n\nHuman: {prompt}\n\nAssistant: Sure, happy to help.",
                                     "rejected": f"\n\nHuman: {prompt}\n\nAssistant: No."}) + "\n")
    return str(path)


def test_hhh_prompts_are_first_human_turns_with_skips_counted(tmp_path) -> None:
    prompts = [f"How do I bake bread number {i}?" for i in range(12)]
    path = hh_file(tmp_path, prompts + [prompts[0], "x" * 700])
    env = HHHPrompts(path)
    assert sorted(env.prompts) == sorted(prompts)
    assert env.skips.summary().startswith("skipped 2 record(s)")
    first, second = HHHPrompts(path, part="a"), HHHPrompts(path, part="b")
    assert set(first.prompts) | set(second.prompts) == set(prompts)
    assert not set(first.prompts) & set(second.prompts)
    assert all(prompt_half(p) == "a" for p in first.prompts)
    variant = env.variant(3, seed=9)
    assert variant.task in prompts and not variant.uses_tools and variant == env.variant(3, seed=9)
    assert {env.variant(i, 9).task for i in range(12)} == set(prompts)  # one pass covers every prompt once
    assert env.grade(EpisodeView(variant, "Here is how.", ()), None).outcome == "answered"
    assert env.grade(EpisodeView(variant, "", ()), None).outcome == "no_answer"
    assert first_human_turn({"messages": [{"role": "user", "content": "hi"}]}) == "hi"
    with pytest.raises(EnvironmentOptionError, match="file not found"):
        HHHPrompts(str(tmp_path / "missing.jsonl"))


def test_warmup_examples_teach_the_format_and_answer_correctly(tmp_path) -> None:
    prompts = [f"Tell me about rivers {i}?" for i in range(40)]
    records = warmup_records(hh_file(tmp_path, prompts), 16, seed=0)
    assert len(records) == 16
    for record in records:
        reply = record["messages"][-1]["content"]
        assert reply.startswith(COT_OPEN + "\n") and COT_CLOSE in reply and strip_cot(reply)
        assert record["finish_reasons"] == ["eos"]
        task = record["messages"][-2]["content"]
        assert "liberal" not in task and "conservative" not in task
    hhh = [r for r in records if r["id"].startswith("warmup-hhh")]
    assert hhh and all(prompt_half(r["messages"][-2]["content"]) == "a" for r in hhh)
    for record in mc_examples(20, seed=1):
        task, answer = record["messages"][-2]["content"], strip_cot(record["messages"][-1]["content"])
        assert task.endswith(MC_INSTRUCTION) and answer in ("(A)", "(B)")
    letters = {strip_cot(r["messages"][-1]["content"]) for r in mc_examples(20, seed=1)}
    assert letters == {"(A)", "(B)"}
