"""Real multi-process training: two processes on CPU (gloo) under torchrun, on tiny-random.

Checks what makes distributed training correct rather than merely running: after every optimizer
step both processes hold bit-identical weights (their gradients are averaged); two processes with
batch B train the same weights (to 1e-6) as one process with batch 2B; a resumed two-process run
ends where the uninterrupted one does; and a launch accelerate cannot see (torchrun on CPU without
``ACCELERATE_USE_CPU=true``) is refused with the fix instead of training twice into one folder.

The reward head's dropout is the one thing that cannot match between one process and two (one
process draws one mask for 2B rows, two draw two for B rows each), so the one-vs-two comparison
trains with ``head_dropout=0``; the resume test keeps the default dropout, which also checks that
every process gets its own random stream back. FSDP and DeepSpeed do not run on CPU under
accelerate; their test needs two GPUs and is skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed
from safetensors.torch import load_file

from rewardlab.models.persistence import load_reward_model
from rewardlab.train.config import TrainConfig
from rewardlab.train.loop import train

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("distributed_worker.py")
STOPPED = 3  # the worker's exit status when it stops itself after a step

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is needed for multi-process CPU training",
)

BASE = dict(model="tiny-random", data="synthetic:id?n=16&seed=0", lr=1e-3, alpha=0.5, max_length=256,
            log_interval=1, progress=False)


def launch_env(cpu: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_CPU")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def torchrun(*args: str, cpu: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (a free port is picked by the rendezvous)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=REPO, env=launch_env(cpu), capture_output=True, text=True, timeout=timeout)


def run_worker(options: dict, dump: Path, expect: int = 0) -> list[list[dict]]:
    """Train under torchrun with two processes; each process's per-step records, by rank."""
    done = torchrun(str(WORKER), json.dumps(options), str(dump))
    if expect == 0:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    else:
        assert done.returncode != 0 and f"exitcode: {expect}" in done.stderr, done.stderr[-3000:]
    return [json.loads((dump / f"rank{rank}.json").read_text()) for rank in range(2)]


def assert_ranks_identical(records: list[list[dict]], steps: list[int]) -> None:
    rank0, rank1 = records
    assert [r["step"] for r in rank0] == [r["step"] for r in rank1] == steps
    for a, b in zip(rank0, rank1):
        assert a["digest"] == b["digest"], f"the processes' weights differ after step {a['step']}"
        assert a["loss"] == b["loss"], "logged losses must be averaged over processes, the same on each"
    assert len({r["digest"] for r in rank0}) == len(steps), "weights must change at every step"


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{path.name}:{name}": tensor for path in sorted(folder.glob("*.safetensors"))
            for name, tensor in load_file(str(path)).items()}


def assert_same_model(a: Path, b: Path, atol: float = 1e-6) -> None:
    ta, tb = saved_tensors(a), saved_tensors(b)
    assert ta.keys() == tb.keys() and ta
    for key in ta:
        torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=atol, msg=lambda m: f"{key}: {m}")


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


MODES = {
    # frozen lower layers: their outputs come from the frozen-layer cache in the second epoch (steps 3-4)
    "top-layers": dict(trainable_top_layers=1, reg="sft"),
    # LoRA with the DPO regularizer: the reference is the adapter switched off, inside the wrapped forward
    "lora": dict(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, reg="dpo"),
}


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_train_what_one_process_with_the_global_batch_trains(tmp_path, one_torch_thread, mode):
    # A linear head (no ReLU whose on/off flips with float noise) and a moderate learning rate (Adam turns
    # a near-zero gradient's float noise into whole-lr steps) keep the comparison about 1e-7 exact.
    options = dict(BASE, **MODES[mode], max_steps=4, grad_accum=2, save_steps=0, head="linear", head_dropout=0.0,
                   lr=1e-4, eval_data="synthetic:ood?n=7&seed=1")
    records = run_worker(dict(options, batch_size=2, output=str(tmp_path / "two")), tmp_path / "dump")
    assert_ranks_identical(records, [1, 2, 3, 4])

    single = TrainConfig(**options, batch_size=4, output=str(tmp_path / "one"))
    weights: dict[int, dict[str, torch.Tensor]] = {}

    def keep(step, logs, model):
        weights[step] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    train(single, echo=lambda s: None, on_step=keep)

    assert_same_model(tmp_path / "one", tmp_path / "two")
    moved = max(float((weights[4][n] - weights[1][n]).abs().max()) for n in weights[1])
    assert moved > 100 * 1e-6, "training must move the weights far more than the tolerance for 1e-6 to mean anything"
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert (two["num_processes"], two["batch_size"], two["pairs_per_step"]) == (2, 2, 8)
    assert (one["num_processes"], one["batch_size"], one["pairs_per_step"]) == (1, 4, 8)
    for key in ("loss", "reward_loss", "reg_loss", "train_accuracy"):
        assert [h[key] for h in two["history"]] == pytest.approx([h[key] for h in one["history"]], abs=1e-6), key
    assert [r["loss"] for r in records[0]] == pytest.approx([h["loss"] for h in two["history"]], abs=1e-12)
    assert two["eval"] == one["eval"] and two["eval"]["n"] == 7  # each process scored its share, then all of them
    if mode == "top-layers":
        assert two["frozen_layer_cache"]["hits"] > 0 and one["frozen_layer_cache"]["hits"] > 0


def test_resumed_two_process_run_equals_the_uninterrupted_one(tmp_path):
    options = dict(BASE, max_steps=5, batch_size=2, save_steps=2, reg="dpo",  # full fine-tuning, default head dropout
                   eval_data="synthetic:ood?n=5&seed=1", eval_interval=2)
    straight = run_worker(dict(options, output=str(tmp_path / "a")), tmp_path / "dump-a")
    assert_ranks_identical(straight, [1, 2, 3, 4, 5])

    stopped = run_worker(dict(options, output=str(tmp_path / "b"), stop_after_step=3), tmp_path / "dump-b1",
                         expect=STOPPED)
    assert_ranks_identical(stopped, [1, 2, 3])
    checkpoint = tmp_path / "b" / "checkpoints" / "step-00000002"
    assert (checkpoint / "trainer_state.json").exists() and not (tmp_path / "b" / "metrics.json").exists()
    streams = torch.load(checkpoint / "rng.pt", weights_only=False)["ranks"]
    assert len(streams) == 2 and not torch.equal(streams[0]["torch"], streams[1]["torch"]), \
        "each process keeps its own random stream (its own dropout masks)"

    resumed = run_worker(dict(options, output=str(tmp_path / "b"), resume=True), tmp_path / "dump-b2")
    assert_ranks_identical(resumed, [3, 4, 5])
    assert [r["digest"] for r in resumed[0]] == [r["digest"] for r in straight[0][2:]]
    assert_same_model(tmp_path / "a", tmp_path / "b")
    hist_a, hist_b = metrics(tmp_path / "a")["history"], metrics(tmp_path / "b")["history"]
    for key in ("loss", "reg_loss"):
        assert [h[key] for h in hist_b] == pytest.approx([h[key] for h in hist_a], abs=1e-6), key
    assert metrics(tmp_path / "b")["eval_history"] == metrics(tmp_path / "a")["eval_history"]
    assert [e["step"] for e in metrics(tmp_path / "a")["eval_history"]] == [2, 4]


def test_torchrun_on_cpu_without_accelerate_cpu_flag_is_refused(tmp_path):
    output = tmp_path / "run"
    train_args = ["train", "--model", "tiny-random", "--data", "synthetic:id?n=8", "--output", str(output),
                  "--max-steps", "1"]
    done = torchrun("-m", "rewardlab.cli", *train_args, cpu=False)
    assert done.returncode != 0
    # torchrun exits 1 when a process fails; the process itself (the CLI) exited with status 2: a user error
    assert "(exitcode: 2)" in done.stderr
    assert "launched as 2 processes (WORLD_SIZE=2) but accelerate sees 1" in done.stderr
    assert "set ACCELERATE_USE_CPU=true: `ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2" in done.stderr
    assert "rewardlab/train" not in done.stderr and "error: this was launched" in done.stderr  # a message, no traceback
    assert not output.exists()


def gpus_for_sharded_training() -> str | None:
    if torch.cuda.device_count() < 2:
        return "FSDP and DeepSpeed need 2 GPUs: accelerate runs them on GPUs only"
    return None


@pytest.mark.skipif(gpus_for_sharded_training() is not None, reason=gpus_for_sharded_training() or "")
@pytest.mark.parametrize("plan", ["fsdp", "zero3"])
def test_sharded_training_on_two_gpus_matches_one_gpu(tmp_path, plan):
    if plan == "zero3" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed")
    options = dict(BASE, max_steps=3, save_steps=2, reg="sft", head_dropout=0.0)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_CPU")}
    config_file = REPO / "examples" / "accelerate" / f"{plan}.yaml"
    sharded = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "--num_processes", "2",
         "--mixed_precision", "no", str(WORKER), json.dumps(dict(options, batch_size=2, output=str(tmp_path / "two"))),
         str(tmp_path / "dump")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert sharded.returncode == 0, sharded.stderr[-4000:]
    single = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(dict(options, batch_size=4, output=str(tmp_path / "one"))),
         str(tmp_path / "dump-one")],
        cwd=REPO, env={**env, "CUDA_VISIBLE_DEVICES": "0"}, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-4000:]
    assert_same_model(tmp_path / "one", tmp_path / "two", atol=1e-5)
    model, _, _ = load_reward_model(tmp_path / "two")  # the gathered model loads and scores like any other
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long)).rewards).all()


@pytest.mark.parametrize("name", ["single_gpu", "multi_gpu_8", "multi_node", "fsdp", "zero3"])
def test_example_accelerate_configs_are_valid_accelerate_configs(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "examples" / "accelerate" / f"{name}.yaml"))  # unknown keys fail here
    expected = {"single_gpu": ("NO", 1, 1), "multi_gpu_8": ("MULTI_GPU", 8, 1), "multi_node": ("MULTI_GPU", 16, 2),
                "fsdp": ("FSDP", 8, 1), "zero3": ("DEEPSPEED", 8, 1)}[name]
    assert (config.distributed_type.value, config.num_processes, config.num_machines) == expected
    assert not config.use_cpu


def test_ddp_looks_for_unused_weights_only_where_some_can_be_unused():
    from transformers import LlamaConfig, LlamaForCausalLM

    from rewardlab.models.lora import apply_lora
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.train.loop import may_leave_parameters_unused

    tied, _ = RewardModel.from_base("tiny-random", head="linear")  # its LM head is the input embedding
    assert not may_leave_parameters_unused(tied, needs_lm_head=False)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    untied = RewardModel(LlamaForCausalLM(config), "linear", base_model="local")
    assert may_leave_parameters_unused(untied, needs_lm_head=False)  # --reg none: the LM head gets no gradient
    assert not may_leave_parameters_unused(untied, needs_lm_head=True)
    lora = apply_lora(RewardModel(LlamaForCausalLM(config), "linear", base_model="local"), r=2, alpha=4)
    assert not may_leave_parameters_unused(lora, needs_lm_head=False)  # the LM head is frozen under LoRA
