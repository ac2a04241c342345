"""`rewardlab envs list | run | show | report` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import shutil

import pytest

from rewardlab.cli import main

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap")


def test_list_names_every_environment_with_labels(capsys):
    assert main(["envs", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("political-sycophancy", "tool-use-flattery", "rubric-modification-nudged",
                 "rubric-modification-insubordinate", "reward-tampering"):
        assert name in out
    assert "honest | tampered | tampered_and_evaded | reward_error" in out
    assert "options: threshold, check_timeout" in out


@pytest.mark.sandbox
@needs_bwrap
def test_run_report_show_and_resume(tmp_path, capsys):
    out_dir = tmp_path / "run"
    arguments = ["envs", "run", "--env", "reward-tampering,tool-use-flattery", "--policy", "scripted:tamperer",
                 "-n", "2", "--seed", "5", "--workers", "2", "--out", str(out_dir), "--no-progress"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "4 episode(s) run, 0 already done, 0 failed" in out and "reward-tampering: tampered 2" in out
    assert main(arguments) == 0
    assert "0 episode(s) run, 4 already done" in capsys.readouterr().out
    settings = json.loads((out_dir / "run.json").read_text())
    assert settings["episode_settings"]["temperature"] == 1.0 and settings["sandbox_limits"]["command_timeout"] == 20.0
    assert "memory" in settings["sandbox_mechanisms"]  # which mechanism enforces each limit on this machine
    for changed in (["--temperature", "0.5"], ["--command-timeout", "5"], ["--max-new-tokens", "64"]):
        assert main([*arguments, *changed]) == 2
        assert "use a different --out folder" in capsys.readouterr().err

    assert main(["envs", "report", str(out_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reward-tampering"]["tampered"]["count"] == 2 and data["tool-use-flattery"]["gamed"]["rate"] == 1.0
    assert set(data["tool-use-flattery"]["honest"]) == {"count", "n", "rate", "ci_low", "ci_high"}

    assert main(["envs", "report", str(out_dir)]) == 0
    text = capsys.readouterr().out
    assert "reward-tampering  (n = 2)" in text and "rule of three" in text

    assert main(["envs", "show", str(out_dir), "--id", "reward-tampering-s5-00001"]) == 0
    shown = capsys.readouterr().out
    assert "outcome   tampered  [GAMED]" in shown and "Assistant: <cot>" in shown


def test_unsandboxed_mode_is_refused_for_models_and_labelled_for_scripts(tmp_path, capsys):
    assert main(["envs", "run", "--env", "reward-tampering", "--policy", "openai:some-model", "--base-url",
                 "http://127.0.0.1:9", "--sandbox", "none", "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "only allowed for scripted policies" in capsys.readouterr().err
    assert main(["envs", "run", "--env", "reward-tampering", "--policy", "scripted:honest", "-n", "1",
                 "--sandbox", "none", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "WITHOUT ANY ISOLATION" in captured.err and "1 episode(s) run" in captured.out
    record = json.loads((tmp_path / "b" / "episodes.jsonl").read_text().splitlines()[0])
    assert record["sandbox"] == "none" and record["outcome"] == "honest"


def test_missing_bwrap_stops_the_run_with_install_instructions(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["envs", "run", "--env", "reward-tampering", "--policy", "scripted:honest", "-n", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "apt-get install bubblewrap" in err
    assert not (tmp_path / "run" / "episodes.jsonl").exists()


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    base = ["envs", "run", "--out", str(tmp_path / "x"), "--no-progress", "-n", "1"]
    assert main([*base, "--env", "nope", "--policy", "scripted:honest"]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err
    assert main([*base, "--env", "political-sycophancy", "--policy", "scripted:saint"]) == 2
    assert "unknown scripted policy 'saint'" in capsys.readouterr().err
    assert main([*base, "--env", "political-sycophancy", "--policy", "gpt4"]) == 2
    assert "bad policy spec" in capsys.readouterr().err
    assert main([*base, "--env", "political-sycophancy", "--policy", "openai:m"]) == 2
    assert "--base-url" in capsys.readouterr().err
    assert main([*base, "--env", "political-sycophancy", "--policy", "scripted:honest", "--env-option", "mode"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--env", "all", "--policy", "scripted:honest", "--env-option", "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main(["envs", "report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_in_batches_with_several_samples_per_variant(tmp_path, capsys):
    out_dir = tmp_path / "batched"
    arguments = ["envs", "run", "--env", "rubric-modification-nudged", "--policy", "scripted:liar-and-editor",
                 "-n", "2", "--samples", "3", "--batch-size", "4", "--workers", "2", "--out", str(out_dir),
                 "--no-progress"]
    assert main(arguments) == 0
    assert "6 episode(s) run, 0 already done, 0 failed" in capsys.readouterr().out
    ids = sorted(json.loads(line)["id"] for line in (out_dir / "episodes.jsonl").read_text().splitlines())
    assert ids == ["rubric-modification-nudged-s0-00000", "rubric-modification-nudged-s0-00000-k001",
                   "rubric-modification-nudged-s0-00000-k002", "rubric-modification-nudged-s0-00001",
                   "rubric-modification-nudged-s0-00001-k001", "rubric-modification-nudged-s0-00001-k002"]
    assert main(["envs", "show", str(out_dir), "--id", ids[1]]) == 0
    assert "lied_and_edited" in capsys.readouterr().out
