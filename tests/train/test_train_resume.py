"""Resume equality: kill a run after a checkpoint, resume it, and get what the uninterrupted run got.

Every regularizer in every training mode (full fine-tuning, frozen lower layers, LoRA). The DPO
reference must stay the base model across a resume (it used to become the checkpoint), and with
frozen lower layers the resumed run starts with an empty frozen-layer cache where the uninterrupted
one reuses its states from the first epoch: both must train the same weights.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import train

MODES = {
    "full": {},
    "top-layers": {"trainable_top_layers": 1},
    "lora": {"lora": True, "lora_r": 4, "lora_alpha": 8},
}
REGS = ("none", "sft", "sft-nll", "dpo", "dpo-noref")
STEPS, SAVE_AT, KILL_AT = 6, 4, 5  # 8 pairs, 2 per step: steps 5 and 6 are the second epoch


class Killed(Exception):
    pass


def config(folder: Path, **kw) -> TrainConfig:
    base = dict(model="tiny-random", data="synthetic:id?n=8&seed=0", output=str(folder / "run"), max_steps=STEPS,
                batch_size=2, lr=1e-3, alpha=0.5, max_length=256, save_steps=SAVE_AT, log_interval=1, progress=False)
    return TrainConfig(**{**base, **kw})


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file of a saved model, keyed by file and name."""
    return {f"{path.name}:{name}": tensor for path in sorted(folder.glob("*.safetensors"))
            for name, tensor in load_file(str(path)).items()}


def history(folder: Path) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())["history"]


def kill_at(step_to_kill: int):
    def on_step(step, logs, model):
        if step == step_to_kill:
            raise Killed()
    return on_step


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reg", REGS)
def test_resumed_run_equals_uninterrupted(tmp_path, one_torch_thread, mode, reg):
    options = {**MODES[mode], "reg": reg}
    straight = train(config(tmp_path / "a", **options), echo=lambda s: None)

    with pytest.raises(Killed):
        train(config(tmp_path / "b", **options), echo=lambda s: None, on_step=kill_at(KILL_AT))
    messages: list[str] = []
    train(config(tmp_path / "b", resume=True, **options), echo=messages.append)
    assert any("resumed from" in m and f"step {SAVE_AT} of {STEPS}" in m for m in messages)

    a, b = saved_tensors(tmp_path / "a" / "run"), saved_tensors(tmp_path / "b" / "run")
    assert a.keys() == b.keys() and any(k.startswith("reward_head") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")
    hist_a, hist_b = history(tmp_path / "a" / "run"), history(tmp_path / "b" / "run")
    assert [h["step"] for h in hist_a] == [h["step"] for h in hist_b] == list(range(1, STEPS + 1))
    for key in ("loss", "reward_loss", "reg_loss", "train_accuracy"):
        assert [h[key] for h in hist_b] == pytest.approx([h[key] for h in hist_a], abs=1e-6), key
    if mode == "top-layers":  # the uninterrupted run reused the first epoch's frozen-layer states
        assert straight.metrics["frozen_layer_cache"]["hits"] > 0
