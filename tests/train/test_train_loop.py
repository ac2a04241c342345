"""Training: gradients, the loss options end to end, resume equality, checkpoints, config files."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rewardlab.errors import UserFileError
from rewardlab.losses import LossConfig
from rewardlab.data.loaders import load_pairs
from rewardlab.train.batches import collate_pairs, tokenize_pairs
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import build_model, compute_batch_loss, train


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model="tiny-random", data="synthetic:id?n=24&seed=0", output=str(tmp_path / "run"), max_steps=4,
        batch_size=2, lr=1e-3, max_length=256, save_steps=2, log_interval=1, progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def one_batch(tmp_path, **kw):
    config = tiny_config(tmp_path, **kw)
    model, tokenizer = build_model(config)
    pairs = load_pairs("synthetic:id?n=4&seed=0")
    items = tokenize_pairs(tokenizer, pairs, max_length=256, truncation="drop")
    return model, collate_pairs(items, tokenizer.pad_token_id)


def test_regularizer_alone_sends_gradient_into_the_backbone(tmp_path):
    model, batch = one_batch(tmp_path)
    model.train()
    out = compute_batch_loss(model, batch, LossConfig(reg="sft", alpha=1.0))  # total = regularizer only
    out.total.backward()
    backbone_grads = [p.grad for n, p in model.named_parameters() if "head" not in n.split(".")[0] and p.grad is not None]
    assert backbone_grads and any(g.abs().sum() > 0 for g in backbone_grads)
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is None or g.abs().sum() == 0 for g in head_grads)


@pytest.mark.parametrize("reg", ["none", "sft", "sft-nll", "dpo", "dpo-noref"])
def test_every_regularizer_trains_and_saves(tmp_path, reg):
    result = train(tiny_config(tmp_path, reg=reg, max_steps=2, eval_data="synthetic:ood?n=8&seed=1"), echo=lambda s: None)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 2
    assert 0.0 <= metrics["eval"]["accuracy"] <= 1.0 and metrics["eval"]["n"] == 8
    assert (metrics["final_train"]["reg_loss"] > 0) == (reg != "none")
    assert (tmp_path / "run" / "reward_head.safetensors").exists()
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    assert result.output == tmp_path / "run"


def test_lora_with_dpo_reference_uses_the_disabled_adapter(tmp_path):
    train(tiny_config(tmp_path, lora=True, lora_r=4, lora_alpha=8, reg="dpo", max_steps=2), echo=lambda s: None)
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()


def test_margin_loss_needs_margins(tmp_path):
    with pytest.raises(ValueError, match="margin"):
        train(tiny_config(tmp_path, loss="margin", max_steps=1), echo=lambda s: None)


class Killed(Exception):
    pass


def test_resume_after_kill_gives_the_same_result(tmp_path):
    full = tiny_config(tmp_path / "a", max_steps=6, save_steps=2)
    train(full, echo=lambda s: None)

    interrupted = tiny_config(tmp_path / "b", max_steps=6, save_steps=2)

    def kill_at_5(step, logs, model):
        if step == 5:
            raise Killed()

    with pytest.raises(Killed):
        train(interrupted, echo=lambda s: None, on_step=kill_at_5)
    assert (tmp_path / "b" / "run" / "checkpoints").exists()
    with pytest.raises(UserFileError, match="--resume"):
        train(interrupted, echo=lambda s: None)
    resumed = tiny_config(tmp_path / "b", max_steps=6, save_steps=2, resume=True)
    messages = []
    train(resumed, echo=messages.append)
    assert any("resumed from" in m and "step 4" in m for m in messages)

    head_a = load_file(str(tmp_path / "a" / "run" / "reward_head.safetensors"))
    head_b = load_file(str(tmp_path / "b" / "run" / "reward_head.safetensors"))
    assert head_a.keys() == head_b.keys()
    for key in head_a:
        torch.testing.assert_close(head_a[key], head_b[key], rtol=0, atol=1e-6)
    hist_a = json.loads((tmp_path / "a" / "run" / "metrics.json").read_text())["history"]
    hist_b = json.loads((tmp_path / "b" / "run" / "metrics.json").read_text())["history"]
    assert [h["loss"] for h in hist_a] == pytest.approx([h["loss"] for h in hist_b], abs=1e-6)


def test_yaml_config_with_flag_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny-random\nalpha: 0.05\nhead: linear\nmax-steps: 3\n")
    config = TrainConfig.from_sources(cfg, alpha=0.2, output=str(tmp_path / "o"))
    assert (config.alpha, config.head, config.max_steps, config.model) == (0.2, "linear", 3, "tiny-random")
    cfg.write_text("alpah: 0.1\n")
    with pytest.raises(ValueError, match="unknown option.*alpah"):
        TrainConfig.from_sources(cfg)


def test_bad_option_values_are_clear_errors():
    with pytest.raises(ValueError, match="head must be"):
        TrainConfig(head="deep")
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(lora=True, trainable_top_layers=2)


def test_over_length_pairs_are_counted_skips_not_silent_loss(tmp_path):
    messages = []
    train(tiny_config(tmp_path, max_length=40, max_steps=1, data="synthetic:id?n=40&seed=0"), echo=messages.append)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    skipped = sum(metrics["skipped_at_rendering"].values())
    assert skipped > 0 and metrics["train_pairs"] + skipped == 40
    assert any("skipped at rendering" in m and "max_length=40" in m for m in messages)


def test_nothing_left_after_rendering_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no training pairs left"):
        train(tiny_config(tmp_path, max_length=8, max_steps=1), echo=lambda s: None)
