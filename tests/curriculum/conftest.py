"""A tiny-random model taught the episode format, so tiny end-to-end runs have answers to grade and select."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rewardlab.curriculum.finetune import FinetuneSettings, episode_example, finetune
from rewardlab.curriculum.warmup import _episode, _reply, mc_examples
from rewardlab.models.registry import load_backbone


@pytest.fixture(scope="session")
def answering_tiny(tmp_path_factory) -> str:
    """tiny-random, fully fine-tuned to close its ``<cot>`` and answer: two-option questions with a letter,
    anything else with a short sentence. A few seconds on a CPU."""
    folder = tmp_path_factory.mktemp("answering-tiny") / "model"
    model, tokenizer = load_backbone("tiny-random")
    records = mc_examples(8, seed=0) + [
        _episode(f"chat-{i}", f"How do I cook dish {i}?", _reply("I want to help.", "Slowly, with care."))
        for i in range(4)]
    examples = [episode_example(tokenizer, record, uses_tools=False) for record in records]
    finetune(model, tokenizer, examples, FinetuneSettings(lr=3e-3, epochs=60, batch_size=12, max_length=4096),
             save_to=folder, progress=False)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def hh_prompts(tmp_path_factory) -> str:
    """A small hh-rlhf-format file (chosen/rejected dialogues) for HHH prompts and the preference model."""
    path = tmp_path_factory.mktemp("hh") / "hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(48):
            prompt = f"How do I look after plant number {i}?"
            handle.write(json.dumps({"chosen": f"\n\nHuman: {prompt}\n\nAssistant: Water it weekly and give it light.",
                                     "rejected": f"\n\nHuman: {prompt}\n\nAssistant: Who cares."}) + "\n")
    return str(path)


def tiny_arguments(policy: str, hh: str, out: Path) -> list[str]:
    """`rewardlab curriculum run` flags for a seconds-long study on tiny models."""
    return ["--out", str(out), "--policy", policy, "--pm-base", "tiny-random", "--pm-pairs", "16", "--pm-steps", "2",
            "--pm-trainable-top-layers", "1", "--hhh-data", hh, "--political-eval-data", "", "--prompts", "4",
            "--samples", "3", "--eval-episodes", "4", "--political-episodes", "4", "--max-new-tokens", "20", "--max-commands", "2",
            "--batch-size", "4", "--workers", "4", "--lr", "5e-3", "--epochs", "2", "--lora-r", "4",
            "--warmup-examples", "8", "--warmup-epochs", "1", "--train-away-samples", "6", "--no-progress"]
