"""Experiment tracking (`--report-to`) and the `loss.png` curves of a training run.

A real tiny-random run logs to TensorBoard through accelerate's tracker; the event files are read back
with TensorBoard's own `EventAccumulator` and must hold exactly the per-step values `metrics.json`
records, each step once, also when the run was killed after logging steps its checkpoint does not hold
and then resumed.
"""

import importlib.util
import json
import struct
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rewardlab.cli import main
from rewardlab.errors import ConfigError
from rewardlab.train.config import TrainConfig, load_yaml_config
from rewardlab.train.loop import train

TAGS = {"loss": "train/loss", "reward_loss": "train/reward_loss", "reg_loss": "train/reg_loss",
        "train_accuracy": "train/accuracy", "lr": "train/learning_rate", "pairs_per_s": "train/pairs_per_s"}
STEPS, SAVE_AT, KILL_AFTER = 4, 2, 3


class Killed(Exception):
    pass


def scalars(output: Path) -> dict[str, list[tuple[int, float]]]:
    runs = [p for p in (output / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"one TensorBoard run folder, resumed or not: {runs}"
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_tensorboard_scalars_equal_metrics_json_each_step_once_across_a_resume(tmp_path, one_torch_thread):
    output = tmp_path / "run"
    config = dict(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(output), max_steps=STEPS,
                  batch_size=2, max_length=256, log_interval=1, save_steps=SAVE_AT, report_to="tensorboard",
                  eval_data="synthetic:ood?n=6&seed=1", eval_interval=2, progress=False)

    def kill(step, logs, model):
        if step == KILL_AFTER:
            raise Killed

    with pytest.raises(Killed):
        train(TrainConfig(**config), echo=lambda s: None, on_step=kill)
    killed = scalars(output)
    assert [s for s, _ in killed["train/loss"]] == [1, 2, 3]  # step 3 is logged, but the checkpoint is step 2
    train(TrainConfig(**config, resume=True), echo=lambda s: None)

    metrics = json.loads((output / "metrics.json").read_text())
    logged = scalars(output)
    assert [h["step"] for h in metrics["history"]] == list(range(1, STEPS + 1))
    for key, tag in TAGS.items():
        assert [s for s, _ in logged[tag]] == list(range(1, STEPS + 1)), tag  # no step twice
        assert [v for _, v in logged[tag]] == pytest.approx([h[key] for h in metrics["history"]], rel=1e-6), tag
    assert all(h["pairs_per_s"] > 0 for h in metrics["history"])
    evaluations = [*metrics["eval_history"], {"step": STEPS, **metrics["eval"]}]
    assert [s for s, _ in logged["eval/accuracy"]] == [2, STEPS]
    assert [v for _, v in logged["eval/accuracy"]] == pytest.approx([e["accuracy"] for e in evaluations])
    assert [v for _, v in logged["eval/pairs"]] == [e["n"] for e in evaluations] == [6, 6]

    width, height = png_size(output / "loss.png")
    assert width > 600 and height > 300
    assert not [p.name for p in output.iterdir() if p.name.startswith(".loss.png")]  # atomic: no temp file left


def test_every_training_output_gets_loss_png_without_a_tracker(tmp_path, one_torch_thread):
    output = tmp_path / "plain"
    train(TrainConfig(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(output), max_steps=2,
                      batch_size=4, max_length=256, reg="none", progress=False), echo=lambda s: None)
    assert png_size(output / "loss.png")[0] > 600
    assert not (output / "runs").exists()  # report_to none: no event files


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_missing_wandb_is_one_line_naming_the_extra(tmp_path, capsys):
    code = main(["train", "--model", "tiny-random", "--data", "synthetic", "--output", str(tmp_path / "w"),
                 "--report-to", "wandb"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("error: --report-to wandb needs the wandb package, which is not installed: "
                           "pip install 'rewardlab[wandb]'")
    assert not (tmp_path / "w").exists()  # refused before any work


def test_report_to_and_logging_dir_come_from_yaml_and_are_checked(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(f"report_to: tensorboard\nlogging-dir: {tmp_path / 'tb'}\noutput_dir: {tmp_path / 'o'}\n"
                    "logging_steps: 1\n")  # TRL/transformers' name for log_interval
    config = TrainConfig(**load_yaml_config(good))
    assert config.report_to == "tensorboard" and config.tracking_dir() == tmp_path / "tb" and config.log_interval == 1
    assert TrainConfig(output=str(tmp_path / "o")).tracking_dir() == tmp_path / "o" / "runs"
    bad = tmp_path / "bad.yaml"
    bad.write_text("report_to: mlflow\n")
    with pytest.raises(ConfigError, match="report_to must be one of none, tensorboard, wandb, got 'mlflow'"):
        TrainConfig(**load_yaml_config(bad))
    with pytest.raises(ConfigError, match="log_interval must be at least 1"):
        TrainConfig(log_interval=0)
    with pytest.raises(ConfigError, match="hub_model_id 'a/b/c' is not a Hub repository id"):
        TrainConfig(hub_model_id="a/b/c")
