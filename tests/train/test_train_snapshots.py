"""`snapshot_steps` and `lr_scheduler_type`: a snapshot after step k of a constant-lr run is the k-step run."""

import pytest
import torch

from rewardlab.errors import ConfigError
from rewardlab.models.persistence import load_reward_model
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import snapshot_dir, train
from tests.train.test_train_resume import Killed, kill_at, saved_tensors


def config(folder, **kw) -> TrainConfig:
    base = dict(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(folder), batch_size=2, lr=1e-3,
                max_length=256, log_interval=1, progress=False, lr_scheduler_type="constant_with_warmup",
                warmup_ratio=0.0, reg="sft", alpha=0.5, trainable_top_layers=1)
    return TrainConfig(**{**base, **kw})


def test_snapshot_equals_the_shorter_run_and_loads(tmp_path, one_torch_thread):
    long = train(config(tmp_path / "long", max_steps=6, snapshot_steps=[2, 4]), echo=lambda s: None)
    train(config(tmp_path / "short", max_steps=4), echo=lambda s: None)
    snapshot = snapshot_dir(tmp_path / "long", 4)
    a, b = saved_tensors(snapshot), saved_tensors(tmp_path / "short")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
    assert (snapshot_dir(tmp_path / "long", 2) / "rewardlab_config.json").is_file()
    assert not snapshot_dir(tmp_path / "long", 6).exists()  # the finished model is the last step
    model, _, _ = load_reward_model(snapshot)
    assert model.head_config.type == "mlp"
    assert [h["lr"] for h in long.metrics["history"]] == [pytest.approx(1e-3)] * 6  # constant


def test_snapshot_survives_a_kill_and_resume(tmp_path, one_torch_thread):
    with pytest.raises(Killed):
        train(config(tmp_path / "run", max_steps=6, snapshot_steps=[2], save_steps=2), echo=lambda s: None,
              on_step=kill_at(3))
    assert (snapshot_dir(tmp_path / "run", 2) / "rewardlab_config.json").is_file()
    train(config(tmp_path / "run", max_steps=6, snapshot_steps=[2], save_steps=2, resume=True), echo=lambda s: None)
    train(config(tmp_path / "short", max_steps=2), echo=lambda s: None)
    a, b = saved_tensors(snapshot_dir(tmp_path / "run", 2)), saved_tensors(tmp_path / "short")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_overwrite_removes_old_snapshots(tmp_path, one_torch_thread):
    train(config(tmp_path / "run", max_steps=4, snapshot_steps=[2]), echo=lambda s: None)
    train(config(tmp_path / "run", max_steps=4, overwrite=True), echo=lambda s: None)
    assert not (tmp_path / "run" / "snapshots").exists()


def test_cosine_is_the_default_schedule_and_others_are_named(tmp_path):
    assert TrainConfig().lr_scheduler_type == "cosine"
    with pytest.raises(ConfigError, match="lr_scheduler_type must be one of cosine, linear, constant_with_warmup"):
        TrainConfig(lr_scheduler_type="warm")
    with pytest.raises(ConfigError, match="snapshot_steps"):
        TrainConfig(snapshot_steps=[0])
