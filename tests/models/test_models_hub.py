"""Pushing a saved reward model to a Hub: `push_reward_model` against a real HTTP Hub on loopback.

The loopback Hub (`tests/models/hub_server.py`) answers the requests huggingface_hub's `create_repo`
and `upload_folder` send; it must receive exactly the model's files, byte for byte, and nothing of
the run's checkpoints, snapshots, logs or the user's other files.
"""

from pathlib import Path

import pytest

from rewardlab.errors import ConfigError
from rewardlab.models.hub import HubError, push_reward_model, pushed_files
from rewardlab.models.persistence import CheckpointError, save_reward_model
from rewardlab.models.reward_model import RewardModel
from tests.models.hub_server import USER, loopback_hub

MODEL_FILES = {"README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
               "reward_head.safetensors", "rewardlab_config.json", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A saved model with a run's other outputs beside it, as `rewardlab train` leaves them (and a user file)."""
    folder = tmp_path_factory.mktemp("push") / "rm"
    model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
    save_reward_model(model, tokenizer, folder, {"max_length": 64})
    (folder / "metrics.json").write_text('{"steps": 1}\n')
    (folder / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for sub, name in (("checkpoints/step-00000001", "optimizer.pt"), ("snapshots/step-00000001", "model.safetensors"),
                      ("runs/Jan01_00-00-00_host", "events.out.tfevents.1")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / name).write_bytes(b"local only")
    (folder / "notes.txt").write_text("mine")
    return folder


def test_push_uploads_exactly_the_model_files_with_their_bytes(run_folder):
    expected = MODEL_FILES | {"metrics.json", "loss.png"}
    assert set(pushed_files(run_folder)) == expected
    with loopback_hub() as hub:
        result = push_reward_model(run_folder, "my-rm", token=hub.token, endpoint=hub.url)
        assert result.repo_id == f"{USER}/my-rm" and result.url == f"{hub.url}/{USER}/my-rm"
        repo = hub.repos[f"{USER}/my-rm"]
        assert not repo.private and set(repo.branches) == {"main"}
        received = repo.branches["main"]
        assert set(received) == expected
        for name, content in received.items():
            assert content == (run_folder / name).read_bytes(), name
        assert len(repo.commits) == 1 and result.commit_url == f"{hub.url}/{USER}/my-rm/commit/{repo.commits[0]['oid']}"
        assert ("POST", f"/api/models/{USER}/my-rm/preupload/main") in hub.requests

        # again, private and on a new branch: the repository exists (409 is fine), the branch is created
        again = push_reward_model(run_folder, "team/my-rm", token=hub.token, endpoint=hub.url, private=True,
                                  revision="dev")
        team = hub.repos["team/my-rm"]
        assert again.repo_id == "team/my-rm" and team.private
        assert set(team.branches["dev"]) == expected and team.branches["main"] == {}
        assert ("POST", "/api/models/team/my-rm/branch/dev") in hub.requests


def test_push_errors_are_one_line(run_folder, tmp_path):
    with loopback_hub() as hub:
        with pytest.raises(HubError) as refused:
            push_reward_model(run_folder, "my-rm", token="hf_wrong", endpoint=hub.url)
        assert "failed to create the repository: HTTP 401: Invalid credentials" in str(refused.value)
        assert "HF_TOKEN" in str(refused.value) and "\n" not in str(refused.value)
        assert not hub.repos
        with pytest.raises(ConfigError, match="repository id 'a/b/c' is not a Hub repository id"):
            push_reward_model(run_folder, "a/b/c", token=hub.token, endpoint=hub.url)
        (tmp_path / "plain").mkdir()
        with pytest.raises(CheckpointError, match="has no rewardlab_config.json"):
            push_reward_model(tmp_path / "plain", "x", token=hub.token, endpoint=hub.url)
        # create_repo answered 401, its exist_ok fallback (repo info) too; nothing was sent after the refusals
        assert hub.requests == [("POST", "/api/repos/create"), ("GET", "/api/models/my-rm")]
    with pytest.raises(HubError, match="failed to create the repository: .*[Cc]onnection refused"):
        push_reward_model(run_folder, "my-rm", token="t", endpoint=hub.url)  # the server is gone
