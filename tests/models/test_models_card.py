"""The model card (`README.md`) every saved reward model gets.

Cards of a real `rewardlab train` output and of its snapshot, and of models saved outside training
(LoRA on a local base folder that states its license, a base that states none), read back as a
Hugging Face card: YAML front matter, then the facts in the body.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from rewardlab import __version__
from rewardlab.evaluate.stats import wilson_interval
from rewardlab.models.card import render_model_card
from rewardlab.models.lora import apply_lora
from rewardlab.models.persistence import load_reward_model, save_reward_model
from rewardlab.models.registry import resolve_model_path
from rewardlab.models.reward_model import RewardModel
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import snapshot_dir, train


def read_card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread) -> Path:
    output = tmp_path_factory.mktemp("card") / "bt-top1"
    train(TrainConfig(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(output), max_steps=2,
                      batch_size=4, max_length=256, reg="none", head="linear", trainable_top_layers=1, lr=1e-3,
                      eval_data="synthetic:ood?n=7&seed=2", snapshot_steps=[1], progress=False), echo=lambda s: None)
    return output


def test_train_output_card_states_base_data_counts_loss_and_eval_with_interval(trained):
    meta, body = read_card(trained)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert meta["library_name"] == "rewardlab" and meta["license"] == "unknown"
    assert meta["tags"] == ["reward-model", "rewardlab", "bt"]
    assert "base_model" not in meta  # tiny-random is not on the Hub
    assert body.startswith("\n# bt-top1\n") and "a Bradley–Terry (BT) reward model" in body
    assert "- base model: `tiny-random`" in body and "no upstream license" in body
    assert "- data: `synthetic:id?n=8&seed=0`" in body
    assert f"- training pairs (after rendering): {metrics['train_pairs']}" in body and metrics["train_pairs"] == 8
    assert "- optimizer steps: 2 of 2, 4 pairs each (8 pairs seen)" in body
    for row in ("| reward loss (`loss`) | `bt` |", "| regularizer (`reg`) | `none` |", "| alpha | 0.01 |",
                "| beta | 0.1 |", "| head | `linear` |", "| LoRA | no |", "| trainable top layers | 1 |",
                "| learning rate | 0.001 (cosine) |"):
        assert row in body, row
    assert "only the top 1 decoder layers" in body
    ev = metrics["eval"]
    correct = round(ev["accuracy"] * ev["n"])
    low, high = wilson_interval(correct, ev["n"])
    assert (f"| `synthetic:ood?n=7&seed=2` | {ev['n']} | {ev['accuracy']:.4f} ({correct}/{ev['n']}) | "
            f"[{low:.4f}, {high:.4f}] |") in body
    assert 'rewardlab score MODEL_DIR --prompt' in body and "RewardScorer.from_pretrained" in body
    assert "AutoModelForSequenceClassification.from_pretrained(\"MODEL_DIR\")" in body  # a full linear head loads
    assert f"Saved by rewardlab {__version__}" in body
    load_reward_model(trained)  # the card does not disturb loading


def test_snapshot_card_says_it_is_a_snapshot_without_an_accuracy(trained):
    snapshot = snapshot_dir(trained, 1)
    meta, body = read_card(snapshot)
    assert meta["tags"] == ["reward-model", "rewardlab", "bt"]
    assert body.startswith(f"\n# bt-top1 ({snapshot.name})\n")
    assert "snapshot saved after optimizer step 1 of 2" in body
    assert "- optimizer steps: 1 of 2, 4 pairs each (4 pairs seen)" in body
    assert "before the final evaluation" in body and "| pairwise accuracy |" not in body


def test_model_saved_outside_train_gets_a_card_with_the_base_license_or_unknown(tmp_path):
    base = tmp_path / "my-base"
    shutil.copytree(resolve_model_path("tiny-random"), base)
    (base / "README.md").write_text("---\nlicense: mit\ntags: [test]\n---\n# my base\n", encoding="utf-8")
    model, tokenizer = RewardModel.from_base(str(base), head="mlp")
    model = apply_lora(model, r=2, alpha=4)
    save_reward_model(model, tokenizer, tmp_path / "lora-rm", {"max_length": 128})
    meta, body = read_card(tmp_path / "lora-rm")
    assert meta["license"] == "mit" and meta["tags"] == ["reward-model", "rewardlab"]
    assert f"- base model: `{base}`" in body and f"from {base / 'README.md'}" in body
    assert "- backbone: LoRA adapter (r=2, alpha=4" in body
    assert "- data: not recorded" in body and "- pair counts: not recorded" in body
    assert "no accuracy is known" in body and "Not loadable as a plain sequence-classification model" in body

    (base / "README.md").write_text("# no front matter\n", encoding="utf-8")
    save_reward_model(model, tokenizer, tmp_path / "lora-rm", {"max_length": 128})
    meta, body = read_card(tmp_path / "lora-rm")
    assert meta["license"] == "unknown" and "check it before publishing" in body


def test_card_of_a_hub_alias_names_the_hub_base_and_its_license():
    config = {"base_model": "smollm2-135m", "backbone": "lora",
              "head": {"type": "linear", "hidden_size": 576, "mlp_hidden": 1024, "dropout": 0.1},
              "lora": {"r": 32, "alpha": 64, "dropout": 0.05, "targets": ["q_proj"]},
              "settings": {"loss": "bt", "reg": "sft", "alpha": 0.01, "beta": 0.1}, "seq_cls": {"loads": True}}
    card = render_model_card(config, name="grm")
    meta, body = yaml.safe_load(card.split("---")[1]), card
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert meta["tags"] == ["reward-model", "rewardlab", "grm"]
    assert "rewardlab export MODEL_DIR --to seq-cls" in body  # LoRA + linear: exported, not opened directly
