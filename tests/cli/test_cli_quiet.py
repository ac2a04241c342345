"""Quiet by default: no transformers/hub bars or library warnings unless `--verbose`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rewardlab.models.persistence import save_reward_model
from rewardlab.models.reward_model import RewardModel

# Run in a child process: quieting changes process-wide state (environment, loggers, warning filters).
_LIBRARY_NOISE = """
import sys, warnings
if sys.argv[1] == "quiet":
    from rewardlab.verbosity import quiet_libraries
    quiet_libraries()
from rewardlab.models.registry import load_tokenizer
tokenizer = load_tokenizer("tiny-random")
tokenizer("word " * (tokenizer.model_max_length + 10))
warnings.warn("an internal API will change", FutureWarning)
print("done")
"""


def _child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_HUB_DISABLE", "HF_DATASETS_DISABLE"))}
    env["PYTHONWARNINGS"] = "default"
    return env


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("quiet") / "rm"
    model, tokenizer = RewardModel.from_base("tiny-random", head="linear")
    save_reward_model(model, tokenizer, folder, settings={"max_length": 64, "truncation": "drop"})
    return str(folder)


def _score(saved_model: str, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rewardlab", *flags, "score", saved_model, "--prompt", "hi", "--response", "hello"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=_child_environment())


def test_loading_a_model_prints_no_library_progress_bar_unless_verbose(saved_model):
    quiet = _score(saved_model)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and float(quiet.stdout)  # the reward, and nothing else
    verbose = _score(saved_model, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Loading weights" in verbose.stderr and verbose.stdout == quiet.stdout


@pytest.mark.parametrize("mode", ["quiet", "loud"])
def test_token_length_and_deprecation_warnings_are_off_once_quieted(mode):
    done = subprocess.run([sys.executable, "-c", _LIBRARY_NOISE, mode], capture_output=True, text=True, timeout=300,
                          env=_child_environment())
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    if mode == "quiet":
        assert done.stderr == ""
    else:  # the same script without quieting shows both: the test can tell the difference
        assert "Token indices sequence length" in done.stderr and "FutureWarning" in done.stderr
