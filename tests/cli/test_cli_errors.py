"""One error path: a user mistake in any command prints a short `error: …` naming what to fix and exits 2.

Also the traps closed with it: `train` needs --model/--data/--output, YAML values are typed, written
files follow the umask, and a training folder opened as a seq-cls model is right or refuses to load.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rewardlab.cli import main
from rewardlab.scoring import RewardScorer

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--model", "tiny-random", "--data", "synthetic:id?n=8&seed=0", "--max-steps", "1", "--batch-size", "2",
         "--max-length", "256"]


def rewardlab(*args: str, cwd: Path, umask: int | None = None) -> subprocess.CompletedProcess:
    """The installed command in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, umask=-1 if umask is None else umask,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})


def assert_user_error(capsys, code: int, *fragments: str) -> str:
    """Exit 2, a short `error:` message holding every fragment, and no traceback."""
    err = capsys.readouterr().err
    message = err[err.index("error: "):] if "error: " in err else err
    assert code == 2, err
    assert "Traceback" not in err and len(message.strip().splitlines()) <= 4, err
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-errors")
    folders = {}
    for head in ("linear", "mlp"):
        folders[head] = root / head
        assert main(["train", *TRAIN, "--head", head, "--output", str(folders[head])]) == 0
    return folders


# --- train ---------------------------------------------------------------------------------------

def test_train_without_arguments_names_the_required_options(tmp_path, capsys):
    assert_user_error(capsys, main(["train"]), "--model", "--data", "--output")
    assert_user_error(capsys, main(["train", "--model", "tiny-random", "--data", "synthetic"]), "missing --output")
    assert not any(tmp_path.iterdir())


def test_train_with_a_mistyped_option_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage line and the bad flag, status 2
        main(["train", *TRAIN, "--output", str(tmp_path / "o"), "--lr", "fast"])
    assert exit_info.value.code == 2 and "--lr: invalid float value: 'fast'" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: two\n")
    assert_user_error(capsys, main(["train", *TRAIN, "--output", str(tmp_path / "o"), "--config", str(config)]),
                      f"{config}: option 'batch_size' must be a whole number, got 'two'")
    assert_user_error(capsys, main(["train", "--config", str(tmp_path / "none.yaml")]), "config file not found")


def test_train_reads_trl_style_yaml_with_1e_minus_4(tmp_path, capsys):
    config = tmp_path / "trl.yaml"
    config.write_text(f"model: tiny-random\ndata: synthetic:id?n=8&seed=0\noutput_dir: {tmp_path / 'rm'}\n"
                      "learning_rate: 1e-4\nper_device_train_batch_size: 2\nmax_steps: 1\nmax_length: 256\n")
    assert main(["train", "--config", str(config)]) == 0
    saved = json.loads((tmp_path / "rm" / "metrics.json").read_text())["config"]
    assert saved["lr"] == 1e-4 and saved["batch_size"] == 2


def test_train_output_files_follow_the_umask(tmp_path):
    result = rewardlab("train", *TRAIN, "--head", "linear", "--output", str(tmp_path / "rm"), cwd=tmp_path, umask=0o022)
    assert result.returncode == 0, result.stderr[-2000:]
    files = [p for p in (tmp_path / "rm").rglob("*") if p.is_file()]
    assert {"model.safetensors", "metrics.json", "rewardlab_config.json", "reward_head.safetensors"} <= {p.name for p in files}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o644)}
    folders = [tmp_path / "rm", *(p for p in (tmp_path / "rm").rglob("*") if p.is_dir())]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o755)}


# --- a training folder opened the way TRL / OpenRLHF / RewardBench open it ------------------------

def test_training_folder_opened_as_seq_cls_gives_our_rewards_or_refuses(trained):
    from transformers import AutoModelForSequenceClassification

    scorer = RewardScorer.from_pretrained(trained["linear"], device="cpu")
    conversations = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Name a colour."}]]
    responses = ["4", "Blue, or perhaps green."]
    ours = scorer.score_conversations(conversations, responses)
    seq_model = AutoModelForSequenceClassification.from_pretrained(trained["linear"]).eval()
    tokenizer = scorer.tokenizer
    for conversation, response, expected in zip(conversations, responses, ours):
        ids = torch.tensor([scorer.encode_conversation(conversation, response)])
        with torch.no_grad():
            assert seq_model(input_ids=ids).logits[0, 0].item() == pytest.approx(expected, abs=1e-5)
    assert seq_model.config.pad_token_id == tokenizer.pad_token_id
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForSequenceClassification.from_pretrained(trained["mlp"])


# --- score, export, eval, envs run ---------------------------------------------------------------

def test_score_with_a_missing_or_unusable_model_folder(tmp_path, capsys):
    assert_user_error(capsys, main(["score", str(tmp_path / "nope"), "--prompt", "Hi", "--response", "Yo"]),
                      str(tmp_path / "nope"), "is not a folder")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{}")
    assert_user_error(capsys, main(["score", str(tmp_path / "plain"), "--prompt", "Hi", "--response", "Yo"]),
                      "rewardlab_config.json", "rewardlab train")
    assert_user_error(capsys, main(["score", str(tmp_path / "plain"), "--prompt", "Hi"]), "--prompt needs --response")


def test_score_data_with_a_bad_file(trained, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Q", "chosen": "A", "rejected": "B"}\n{"prompt": "Q", "chosen": \n')
    assert_user_error(capsys, main(["score", str(trained["linear"]), "--data", str(bad)]), f"{bad}:2")
    assert_user_error(capsys, main(["score", str(trained["linear"]), "--data", str(tmp_path / "none.jsonl")]),
                      str(tmp_path / "none.jsonl"))


def test_export_of_an_mlp_head_model(trained, tmp_path, capsys):
    assert_user_error(capsys, main(["export", str(trained["mlp"]), "--to", "seq-cls", str(tmp_path / "out")]),
                      "reward head is an MLP", "--head linear")
    assert not (tmp_path / "out").exists()


def test_eval_with_a_missing_file_or_model(trained, tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert_user_error(capsys, main(["eval", str(trained["linear"]), "--data", str(missing), "--no-progress"]),
                      str(missing))
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"}) + "\n")
    assert_user_error(capsys, main(["eval", str(tmp_path / "no-model"), "--data", str(data), "--no-progress"]),
                      "no-model")
    assert_user_error(capsys, main(["eval", str(trained["linear"]), "--data", f"rewardbench:{data}", "--no-progress"]),
                      "subset")
    assert_user_error(capsys, main(["eval", str(trained["linear"]), "--suite", "nope"]), "unknown suite 'nope'")


def test_envs_run_with_a_missing_hf_model_and_bad_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert_user_error(capsys, main(["envs", "run", "--env", "tool-use-flattery", "--policy", f"hf:{tmp_path / 'typo'}",
                                    "--out", str(out), "-n", "1", "--no-progress"]), "typo")
    assert_user_error(capsys, main(["envs", "run", "--env", "tool-use-flattery", "--policy", "scripted:honest",
                                    "--out", str(out), "--env-option", "oops", "--no-progress"]), "KEY=VALUE")
    assert_user_error(capsys, main(["envs", "report", str(tmp_path / "empty")]), "empty")


def test_a_user_error_in_a_fresh_process_has_no_traceback_unless_debug(tmp_path):
    result = rewardlab("score", str(tmp_path / "nope"), "--prompt", "Hi", "--response", "Yo", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    debug = rewardlab("--debug", "score", str(tmp_path / "nope"), "--prompt", "Hi", "--response", "Yo", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "CheckpointError" in debug.stderr
