"""`rewardlab repro grm --preset paper-gemma2b`: the documented configuration, overridable on the command line."""

import json

import pytest

from rewardlab.cli import main
from rewardlab.data.loaders import LoadReport
from rewardlab.errors import ConfigError
from rewardlab.repro.data import unified_feedback_subsample
from rewardlab.repro.methods import METHODS
from rewardlab.repro.presets import resolve_repro_config

PAPER = {
    "model": "google/gemma-2b-it", "train_data": "unified-feedback-40k", "train_pairs": 40_000, "heldout_pairs": 1_000,
    "steps": 3_333, "batch_size": 24, "lr": 1e-5, "alpha": 0.01, "beta": 0.1, "lora": True, "trainable_top_layers": None,
    "max_length": 1024, "eval_max_length": 1024, "bf16": True, "seeds": (0,), "methods": tuple(METHODS),
    "suites": ("offline",), "eval_limit": None,
}


def test_preset_resolves_to_the_documented_configuration():
    config = resolve_repro_config("paper-gemma2b", {})
    assert {name: getattr(config, name) for name in PAPER} == PAPER
    assert config.backbone_description().startswith("LoRA r=32, α=64")
    assert 2 * 40_000 // 24 == config.steps  # two epochs of 40K pairs


def test_command_line_options_override_the_preset_on_a_tiny_model():
    config = resolve_repro_config("paper-gemma2b", {"model": "tiny-random", "steps": 2, "trainable_top_layers": 1})
    assert (config.model, config.steps, config.lora, config.trainable_top_layers) == ("tiny-random", 2, False, 1)
    assert (config.lr, config.train_pairs, config.bf16) == (1e-5, 40_000, True)


def test_print_config_spells_out_the_preset(capsys):
    assert main(["repro", "grm", "--preset", "paper-gemma2b", "--model", "tiny-random", "--print-config"]) == 0
    command = capsys.readouterr().out.strip()
    assert command.startswith("rewardlab repro grm --out repro-grm-paper-gemma2b --model tiny-random")
    for part in ("--train-data unified-feedback-40k", "--train-pairs 40000", "--steps 3333", "--batch-size 24",
                 "--lr 1e-05", "--lora", "--max-length 1024", "--bf16", "--eval-limit none"):
        assert part in command


def test_without_a_preset_the_defaults_stand(capsys):
    assert main(["repro", "grm", "--lr", "0.001", "--print-config"]) == 0
    command = capsys.readouterr().out
    assert "--model smollm2-135m" in command and "--lr 0.001" in command and "--trainable-top-layers 4" in command


def test_unknown_preset_is_an_error():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; known: paper-gemma2b"):
        resolve_repro_config("nope", {})


def test_unified_feedback_subsample_drops_ties_then_keeps_every_nth(tmp_path):
    folder = tmp_path / "uf"
    folder.mkdir()
    records = []
    for i in range(12):
        rating_b = 5.0 if i % 4 == 3 else float(i % 3)  # every 4th record ties at 5 vs 5
        records.append({"id": str(i), "source": "s", "conv_A_rating": 5.0, "conv_B_rating": rating_b,
                        "conv_A": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                        "conv_B": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"b{i}"}]})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = LoadReport()
    pairs = unified_feedback_subsample(str(folder), config=None, every=3, report=report)
    untied = [r for r in records if r["conv_B_rating"] != 5.0]
    assert [p.chosen for p in pairs] == [f"a{r['id']}" for r in untied[::3]]
    assert report.kept == len(pairs) == 3 and sum(report.skipped.values()) == 3


def test_trainable_top_layers_all_replaces_the_presets_lora_with_full_training():
    config = resolve_repro_config("paper-gemma2b", {"trainable_top_layers": None})
    assert (config.lora, config.trainable_top_layers) == (False, None)
    assert config.backbone_description() == "all weights trained"
