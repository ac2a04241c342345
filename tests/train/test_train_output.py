"""What `rewardlab train` does with its output folder and with data smaller than one batch.

Through the real command (`rewardlab.cli.main`): a finished run is never overwritten without
--overwrite (exit 2, naming the folder and the flags), --overwrite replaces it, --resume says when
it finds no checkpoint, and a data set smaller than one batch trains with a smaller batch.
"""

import json

import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError, UserFileError
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import train


def run_train(output, *extra, data="synthetic:id?n=8&seed=0"):
    return main(["train", "--model", "tiny-random", "--data", data, "--output", str(output), "--max-steps", "2",
                 "--batch-size", "2", "--max-length", "256", *extra])


def test_finished_run_is_refused_without_overwrite_and_replaced_with_it(tmp_path, capsys, one_torch_thread):
    output = tmp_path / "run"
    assert run_train(output, "--seed", "1") == 0
    first = json.loads((output / "metrics.json").read_text())
    (output / "notes.txt").write_text("mine")
    capsys.readouterr()

    assert run_train(output, "--seed", "2") == 2
    err = capsys.readouterr().err
    assert f"{output} already holds a finished run" in err and "--overwrite" in err and "--resume" in err
    assert "Traceback" not in err
    assert json.loads((output / "metrics.json").read_text()) == first  # untouched

    assert run_train(output, "--seed", "2", "--overwrite") == 0
    out = capsys.readouterr().out
    assert f"--overwrite: replacing the run in {output}" in out
    second = json.loads((output / "metrics.json").read_text())
    assert second["config"]["seed"] == 2 and first["config"]["seed"] == 1
    assert (output / "notes.txt").read_text() == "mine"  # the user's own files stay


def test_checkpoints_of_an_unfinished_run_need_resume_or_overwrite(tmp_path, capsys, one_torch_thread):
    output = tmp_path / "run"

    def stop(step, logs, model):
        raise KeyboardInterrupt

    config = TrainConfig(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(output), max_steps=3,
                         batch_size=2, max_length=256, save_steps=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, echo=lambda s: None, on_step=stop)
    assert run_train(output) == 2
    err = capsys.readouterr().err
    assert "checkpoints from an earlier, unfinished run" in err and "--resume" in err and "--overwrite" in err
    assert run_train(output, "--overwrite") == 0
    assert json.loads((output / "metrics.json").read_text())["steps"] == 2


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys, one_torch_thread):
    output = tmp_path / "run"
    assert run_train(output, "--resume") == 0
    out = capsys.readouterr().out
    assert f"--resume: no checkpoint in {output / 'checkpoints'}; starting from scratch" in out
    assert json.loads((output / "metrics.json").read_text())["steps"] == 2
    assert run_train(output, "--resume") == 0  # a finished run: nothing to do, and it says so
    assert "already holds a finished run; nothing to resume" in capsys.readouterr().out


def test_resume_and_overwrite_together_are_refused(tmp_path):
    config = TrainConfig(model="tiny-random", data="synthetic", output=str(tmp_path / "run"), resume=True,
                         overwrite=True, progress=False)
    with pytest.raises(ConfigError, match="pass only one"):
        train(config, echo=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("")
    config = TrainConfig(model="tiny-random", data="synthetic", output=str(tmp_path / "run"), progress=False)
    with pytest.raises(UserFileError, match="is a file"):
        train(config, echo=lambda s: None)


def test_data_smaller_than_one_batch_trains_with_a_smaller_batch(tmp_path, capsys, one_torch_thread):
    output = tmp_path / "run"
    assert run_train(output, "--batch-size", "8", data="synthetic:id?n=3&seed=0") == 0
    out = capsys.readouterr().out
    assert "only 3 training pairs, fewer than one batch of 8: training with batch size 3" in out
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["batch_size"], metrics["pairs_per_step"], metrics["steps"]) == (3, 3, 2)
    assert metrics["config"]["batch_size"] == 8  # what was asked for stays on record
