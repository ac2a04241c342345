"""The helpful start: a short format fine-tune so a small base model follows the episode protocol.

Denison et al. start from a helpful-only model that already thinks inside ``<cot>…</cot>`` and then
answers. A small base model does not: smollm2-135m left the prefilled ``<cot>`` open (or stopped at once)
in 48 of 48 political-sycophancy episodes measured here, so every answer was empty and nothing could
be selected. The warm-up teaches the format and nothing else, from two sources:

* hh-rlhf: the chosen response to prompts of half ``a`` of the HHH file (the half the stages never play);
* factual two-option questions (arithmetic, capitals, units, elements: `rewardlab.data.synthetic`),
  answered with the letter of the correct option, in the political environment's answer format.

Every example is a plain (no shell) episode transcript with a short neutral ``<cot>``; none is political
and none games anything. The result is the matrix's ``start`` row.
"""

from __future__ import annotations

import random
from typing import Any

from rewardlab.data.synthetic import FAMILY_BUILDERS
from rewardlab.envs.environments.hhh import prompt_half
from rewardlab.envs.protocol import COT_CLOSE, COT_OPEN, build_messages

MC_FAMILIES = ("arithmetic", "capitals", "units", "elements")
MC_INSTRUCTION = "Please answer with the letter of the option you pick, (A) or (B)."
HHH_THOUGHT = "I want to give a helpful, honest and harmless answer."
MC_THOUGHT = "I will pick the option that is correct."
MAX_RESPONSE_CHARACTERS = 600


def _reply(thought: str, answer: str) -> str:
    return f"{COT_OPEN}\n{thought}\n{COT_CLOSE}\n{answer}"


def _episode(identifier: str, task: str, reply: str) -> dict[str, Any]:
    messages = build_messages(task, uses_tools=False)
    messages[-1] = {"role": "assistant", "content": reply}
    return {"id": identifier, "messages": messages, "finish_reasons": ["eos"]}


def hhh_examples(pairs: list[Any], count: int) -> list[dict[str, Any]]:
    """Episodes answering half-``a`` hh-rlhf prompts with their chosen responses (single-turn prompts only)."""
    episodes = []
    for pair in pairs:
        users = [m for m in pair.prompt if m["role"] == "user"]
        if len(pair.prompt) != 1 or not users or len(pair.chosen) > MAX_RESPONSE_CHARACTERS or not pair.chosen.strip():
            continue
        if prompt_half(users[0]["content"].strip()) != "a":
            continue
        episodes.append(_episode(f"warmup-hhh-{len(episodes):04d}", users[0]["content"].strip(),
                                 _reply(HHH_THOUGHT, pair.chosen.strip())))
        if len(episodes) == count:
            break
    return episodes


def mc_examples(count: int, seed: int) -> list[dict[str, Any]]:
    """Factual two-option questions answered with the correct letter (its position drawn at random)."""
    rng = random.Random(f"rewardlab.curriculum.warmup/{seed}")
    episodes = []
    for number in range(count):
        item = FAMILY_BUILDERS[MC_FAMILIES[number % len(MC_FAMILIES)]](rng)
        right_first = rng.random() < 0.5
        first, second = (item.right, item.wrong) if right_first else (item.wrong, item.right)
        task = f"{item.question}\n (A) {first}\n (B) {second}\n\n{MC_INSTRUCTION}"
        episodes.append(_episode(f"warmup-mc-{number:04d}", task, _reply(MC_THOUGHT, "(A)" if right_first else "(B)")))
    return episodes


def warmup_records(hhh_data: str, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` warm-up episodes: half hh-rlhf chosen responses, half factual two-option answers."""
    from rewardlab.data.loaders import load_pairs

    pairs = load_pairs(hhh_data)
    hhh = hhh_examples(pairs, count // 2)
    return hhh + mc_examples(count - len(hhh), seed)
