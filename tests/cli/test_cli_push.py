"""`rewardlab push` and `rewardlab train --push-to-hub` against a real HTTP Hub on loopback (HF_ENDPOINT).

Success uploads the model folder's files byte for byte; every user mistake (no model folder, bad repo
id, a refused token, an unreachable Hub) is one `error:` line and exit status 2.
"""

from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.models.hub import pushed_files
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.reward_model import RewardModel
from tests.models.hub_server import USER, loopback_hub


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-push") / "rm"
    model, tokenizer = RewardModel.from_base("tiny-random", head="mlp")
    save_reward_model(model, tokenizer, folder, {"max_length": 64})
    return folder


def one_error_line(capsys, code: int) -> str:
    """Exit 2 and one `error:` line at the end of standard error (after any progress bar), no traceback."""
    err = capsys.readouterr().err
    message = err[err.find("error: "):].strip() if "error: " in err else err
    assert code == 2 and "Traceback" not in err and len(message.splitlines()) == 1, err
    return message


def test_push_command_uploads_the_folder(saved, capsys, monkeypatch):
    with loopback_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["push", str(saved), "team/rm", "--token", hub.token, "--private"]) == 0
        received = hub.repos["team/rm"].branches["main"]
    out = capsys.readouterr().out
    assert f"pushed {len(received)} files from {saved} to {hub.url}/team/rm" in out and "commit: " in out
    assert hub.repos["team/rm"].private
    assert sorted(received) == pushed_files(saved) and "README.md" in received
    assert all(received[name] == (saved / name).read_bytes() for name in received)


def test_push_command_errors_are_one_line(saved, tmp_path, capsys, monkeypatch):
    with loopback_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        err = one_error_line(capsys, main(["push", str(saved), "team/rm", "--token", "hf_wrong"]))
        assert "failed to create the repository: HTTP 401" in err and "--token" in err
        err = one_error_line(capsys, main(["push", str(saved), "not//valid", "--token", hub.token]))
        assert "'not//valid' is not a Hub repository id" in err
        (tmp_path / "empty").mkdir()
        err = one_error_line(capsys, main(["push", str(tmp_path / "empty"), "team/rm", "--token", hub.token]))
        assert "has no rewardlab_config.json" in err
        err = one_error_line(capsys, main(["push", str(tmp_path / "missing"), "team/rm", "--token", hub.token]))
        assert "is not a folder" in err
        assert not hub.repos
    err = one_error_line(capsys, main(["push", str(saved), "team/rm", "--token", hub.token]))  # Hub gone
    assert "failed to create the repository" in err


def test_train_push_to_hub_uploads_the_trained_model(tmp_path, capsys, monkeypatch, one_torch_thread):
    output = tmp_path / "grm"
    with loopback_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", hub.token)
        code = main(["train", "--model", "tiny-random", "--data", "synthetic:id?n=8&seed=0", "--output", str(output),
                     "--max-steps", "2", "--batch-size", "4", "--max-length", "256", "--push-to-hub"])
        assert code == 0, capsys.readouterr().err
        received = hub.repos[f"{USER}/grm"].branches["main"]  # default repo: the output folder's name
    assert f"pushed {len(received)} files to {hub.url}/{USER}/grm" in capsys.readouterr().out
    assert {"README.md", "metrics.json", "loss.png", "model.safetensors"} <= set(received)
    assert sorted(received) == pushed_files(output)
    assert all(received[name] == (output / name).read_bytes() for name in received)


def test_train_push_failure_keeps_the_model_and_says_how_to_retry(tmp_path, capsys, monkeypatch, one_torch_thread):
    output = tmp_path / "bt"
    with loopback_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
        code = main(["train", "--model", "tiny-random", "--data", "synthetic:id?n=8&seed=0", "--output", str(output),
                     "--max-steps", "1", "--batch-size", "4", "--max-length", "256", "--reg", "none",
                     "--push-to-hub", "--hub-model-id", "team/bt"])
        assert not hub.repos
    err = one_error_line(capsys, code)
    assert "HTTP 401" in err and f"the model is saved in {output}; retry with `rewardlab push {output} team/bt`" in err
    assert (output / "metrics.json").exists() and (output / "README.md").exists()
