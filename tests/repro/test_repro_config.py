"""Settings of `repro grm`: validation, the method table, and the reproducing command line."""

import shlex

import pytest

from rewardlab.cli import build_parser
from rewardlab.cli.repro import repro_config_from_args
from rewardlab.repro.config import ReproConfig, identity_differences
from rewardlab.repro.methods import METHODS, parse_methods


def test_methods_cover_the_paper_rows_in_table_order():
    assert list(METHODS) == ["bt", "bt-margin", "bt-label-smoothing", "grm-dpo-noref", "grm-sft-linear", "grm-sft-mlp"]
    assert {(m.loss, m.reg, m.head) for m in METHODS.values()} == {
        ("bt", "none", "linear"), ("margin", "none", "linear"), ("label-smoothing", "none", "linear"),
        ("bt", "dpo-noref", "linear"), ("bt", "sft", "linear"), ("bt", "sft", "mlp"),
    }
    assert [m.name for m in parse_methods(["grm-sft-mlp", "bt"])] == ["bt", "grm-sft-mlp"]
    with pytest.raises(ValueError, match="unknown method.*grm-ppo"):
        parse_methods(["bt", "grm-ppo"])
    with pytest.raises(ValueError, match="twice"):
        parse_methods(["bt", "bt"])


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_length": 600, "eval_max_length": 512}, "--eval-max-length"),
        ({"lora": True}, "--lora or --trainable-top-layers"),
        ({"seeds": (1, 1)}, "twice"),
        ({"seeds": ()}, "at least one seed"),
        ({"steps": 0}, "--steps"),
        ({"eval_limit": 0}, "--eval-limit"),
        ({"threads": 0}, "--threads"),
        ({"methods": ("bt", "nope")}, "unknown method"),
        ({"alpha": 2.0}, "alpha"),
    ],
)
def test_invalid_settings_are_refused_with_the_flag_named(changes, message):
    with pytest.raises(ValueError, match=message):
        ReproConfig(**changes)


def test_default_suites_depend_on_the_training_data():
    assert ReproConfig().suite_names == ("offline",)
    assert ReproConfig(train_data="synthetic").suite_names == ("synthetic-ood", "offline")
    assert ReproConfig(suites=("synthetic-ood",)).suite_names == ("synthetic-ood",)


def _config_from_command(command: str) -> ReproConfig:
    """Parse a printed command with the real CLI parser into the config the handler builds."""
    return repro_config_from_args(build_parser().parse_args(shlex.split(command)[1:]))


@pytest.mark.parametrize(
    "config",
    [
        ReproConfig(),
        ReproConfig(out="runs/x y", model="tiny-random", train_data="synthetic", lora=True, trainable_top_layers=None,
                    seeds=(3, 4, 5), methods=("bt", "grm-sft-mlp"), eval_limit=None, lr=1.2345678912e-5, bf16=True, data_root="/d", threads=1),
        ReproConfig(trainable_top_layers=None, suites=("synthetic-ood",)),
    ],
)
def test_printed_command_reproduces_the_same_settings(config):
    rebuilt = _config_from_command(config.to_command())
    expected = config if config.suites is not None else ReproConfig(**{**config.__dict__, "suites": config.suite_names})
    assert rebuilt == expected


def test_identity_differences_name_each_changed_setting():
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in ReproConfig().identity().items()}
    assert identity_differences(stored, ReproConfig(methods=("bt",), seeds=(7,)).identity()) == []
    diffs = identity_differences(stored, ReproConfig(steps=3, lr=0.5).identity())
    assert diffs == ["steps: 32 -> 3", "lr: 0.0001 -> 0.5"]


def test_cli_reports_bad_input_as_a_clear_error(tmp_path, capsys):
    from rewardlab.cli import main

    missing = tmp_path / "nope.jsonl"
    assert main(["repro", "grm", "--model", "tiny-random", "--train-data", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["repro", "grm", "--lora", "--trainable-top-layers", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--lora or --trainable-top-layers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["repro", "grm", "--trainable-top-layers", "many"])
    assert "'all'" in capsys.readouterr().err
