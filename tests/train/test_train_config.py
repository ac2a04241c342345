"""TrainConfig: values converted to their declared types, TRL aliases, and errors naming file and key."""

from __future__ import annotations

import pytest

from rewardlab.errors import ConfigError, RewardlabError, UserFileError
from rewardlab.train.config import REQUIRED_FOR_CLI, TrainConfig, load_yaml_config


def _yaml(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_values_become_their_declared_types(tmp_path):
    path = _yaml(tmp_path, "lr: 1e-4\nepochs: 2\nmax_steps: '30'\nbf16: 'no'\nlora: yes\nlora_targets: q_proj, v_proj\n"
                           "trainable_top_layers: null\nfrozen_cache_gb: 0\nseed: 7.0\n")
    values = load_yaml_config(path)
    assert values["lr"] == 1e-4 and isinstance(values["lr"], float)  # PyYAML reads 1e-4 as a string
    assert values["epochs"] == 2.0 and isinstance(values["epochs"], float)
    assert values["max_steps"] == 30 and values["seed"] == 7 and isinstance(values["seed"], int)
    assert values["bf16"] is False and values["lora"] is True
    assert values["lora_targets"] == ["q_proj", "v_proj"] and values["trainable_top_layers"] is None
    config = TrainConfig.from_sources(path)
    assert (config.lr, config.max_steps, config.lora) == (1e-4, 30, True)


def test_trl_names_are_aliases(tmp_path):
    path = _yaml(tmp_path, "learning_rate: 2.0e-5\noutput_dir: out/rm\nper_device_train_batch_size: 8\n"
                           "num_train_epochs: 3\ngradient_accumulation_steps: 2\nmax_length: 512\nmax_steps: -1\n"
                           "seed: 3\nbf16: false\n")
    config = TrainConfig.from_sources(path)
    assert (config.lr, config.output, config.batch_size, config.epochs, config.grad_accum) == (2e-5, "out/rm", 8, 3.0, 2)
    assert (config.max_length, config.max_steps, config.seed, config.bf16) == (512, None, 3, False)  # -1: no limit
    both = _yaml(tmp_path, "lr: 1.0e-5\nlearning_rate: 2.0e-5\n")
    with pytest.raises(ConfigError, match="'lr' is given twice"):
        load_yaml_config(both)


@pytest.mark.parametrize(("text", "message"), [
    ("lr: fast\n", r"train.yaml: option 'lr' must be a number, got 'fast'"),
    ("batch_size: 2.5\n", r"option 'batch_size' must be a whole number, got 2.5"),
    ("bf16: maybe\n", r"option 'bf16' must be true/false, got 'maybe'"),
    ("max_steps: [1]\n", r"option 'max_steps' must be a whole number \(or null\)"),
    ("model: 7\n", r"option 'model' must be a string, got 7"),
    ("lr: .nan\n", r"option 'lr' must be a number"),
    ("alpah: 0.1\n", r"unknown option 'alpah'; known: .*learning_rate"),
    ("- lr\n", r"expected a mapping"),
    ("lr: [\n", r"not valid YAML"),
])
def test_bad_yaml_values_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_yaml_config(_yaml(tmp_path, text))


def test_missing_config_file_is_a_user_file_error(tmp_path):
    with pytest.raises(UserFileError, match="config file not found"):
        load_yaml_config(tmp_path / "nope.yaml")


def test_validation_errors_are_config_errors():
    for bad in ({"head": "deep"}, {"lora": True, "trainable_top_layers": 2}, {"batch_size": 0}, {"loss": "hinge"},
                {"alpha": 2.0}, {"max_steps": 0}, {"lr": 0}, {"truncation": "right"}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    assert issubclass(ConfigError, RewardlabError) and issubclass(ConfigError, ValueError)


def test_required_options_come_from_flags_or_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing --model, --data, --output"):
        TrainConfig.from_sources(None, required=REQUIRED_FOR_CLI)
    path = _yaml(tmp_path, "model: tiny-random\ndata: synthetic\n")
    with pytest.raises(ConfigError, match=r"missing --output: give it"):
        TrainConfig.from_sources(path, required=REQUIRED_FOR_CLI)
    config = TrainConfig.from_sources(path, required=REQUIRED_FOR_CLI, output=str(tmp_path / "o"))
    assert config.output == str(tmp_path / "o")
