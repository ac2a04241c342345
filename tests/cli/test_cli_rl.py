"""`rewardlab rl-overopt run` and the RL flags of `repro overopt`: mistakes are one-line errors, nothing is written."""

from __future__ import annotations

from rewardlab.cli import main


def test_bad_rl_settings_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "rl"
    assert main(["rl-overopt", "run", "--out", str(out), "--batch-size", "6", "--num-generations", "4"]) == 2
    assert "must be a multiple of num_generations" in capsys.readouterr().err
    assert main(["rl-overopt", "run", "--out", str(out), "--proxy", "nope"]) == 2
    assert "unknown proxy recipe 'nope'" in capsys.readouterr().err
    assert main(["rl-overopt", "run", "--out", str(out), "--lr", "0"]) == 2
    assert "lr" in capsys.readouterr().err
    assert main(["repro", "overopt", "--out", str(out), "--rl-eval-every", "0"]) == 2
    assert "eval_every must be at least 1" in capsys.readouterr().err
    assert main(["repro", "overopt", "--out", str(out), "--rl-condition", "noisy"]) == 2
    assert "RL conditions noisy are not among clean, noise-25" in capsys.readouterr().err
    assert main(["repro", "overopt", "--out", str(out), "--rl-proxy", "bt-label-smoothing"]) == 2
    assert "not among the best-of-N proxies" in capsys.readouterr().err
    assert main(["repro", "overopt", "--out", str(out), "--policy", "openai:m", "--base-url", "http://127.0.0.1:9"]) == 2
    assert "--rl-policy MODEL" in capsys.readouterr().err
    assert not out.exists()


def test_help_names_the_trainer_and_defaults(capsys):
    try:
        main(["rl-overopt", "run", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    text = capsys.readouterr().out
    assert "GRPOTrainer" in text and "--eval-every" in text and "--full-finetune" in text
