"""The reward-model training recipe, readable top to bottom.

1. load the base causal LM (kept whole) and put a reward head on it;
2. optionally wrap it with LoRA or freeze its lower layers;
3. render every pair once through the one rendering path;
4. for each optimizer step: forward chosen+rejected together, reward loss on the two rewards,
   regularizer on log-probs of the response tokens, ``(1-α)·reward + α·reg``, backward, step
   (``packing``, the default: each pair runs as one padding-free [prompt, chosen, rejected] row,
   see `train/packing.py`; `train/step.py:compute_batch_loss` takes either batch kind; with frozen
   lower layers their outputs are computed once per pair and reused, see `models/frozen_cache.py`);
5. checkpoint periodically (atomic, resumable), evaluate periodically, save the final model with
   its model card, ``metrics.json`` and the ``loss.png`` curves; optionally push it to the Hub.

Every logging step goes into ``metrics.json`` and, with ``report_to``, to accelerate's tracker
(TensorBoard or W&B, `train/tracking.py`) with the same values.

Several processes (``accelerate launch``: DDP; FSDP and DeepSpeed as accelerate configures them):
the loss is computed inside the prepared model's forward (`train/step.py:PairLoss`), so gradients
are averaged across processes; each process takes its own slice of every global batch (the same
pairs, in the same order, as one process with the whole global batch); gradient accumulation goes
through ``accelerator.accumulate``; logged metrics are averaged over processes; only the main
process writes, and every process waits for it.
"""

from __future__ import annotations

import atexit
import copy
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, gather_object, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from rewardlab.data.loaders import LoadReport, load_pairs
from rewardlab.data.pair import PreferencePair
from rewardlab.data.report import DataError
from rewardlab.errors import ConfigError, UserFileError
from rewardlab.evaluate.stats import WILSON_METHOD, wilson_interval
from rewardlab.files import write_json_atomic
from rewardlab.machine import describe_machine, provenance
from rewardlab.models.card import TrainingFacts
from rewardlab.models.frozen_cache import FrozenCacheStats, FrozenLayerCache, frozen_cache_unusable_reason
from rewardlab.models.heads import HeadConfig
from rewardlab.models.layers import frozen_lower_layer_count
from rewardlab.models.lora import apply_lora, freeze_lower_layers
from rewardlab.models.packed import packing_unsupported_reason
from rewardlab.models.persistence import CONFIG_FILE, save_reward_model
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer, pairwise_accuracy
from rewardlab.train.batches import PairBatch, TokenizedPair, collate_pairs, tokenize_pairs
from rewardlab.train.checkpoint import (
    CHECKPOINT_DIR, STATE_FILE, TrainerState, latest_checkpoint, load_checkpoint, read_trainer_state, restore_rng,
    rng_state, save_checkpoint,
)
from rewardlab.train.config import TrainConfig
from rewardlab.train.packing import PackedPairBatch, collate_packed_pairs
from rewardlab.train.plot import LOSS_PLOT, plot_training_curves
from rewardlab.version import __version__
from rewardlab.train.step import PairLoss, compute_batch_loss, pair_logprobs
from rewardlab.train.tracking import finish_tracking, log_eval, log_history_entry, log_with, start_tracking

__all__ = ["TrainResult", "build_model", "compute_batch_loss", "evaluate_accuracy", "make_reference", "train"]

METRICS_FILE = "metrics.json"
SNAPSHOTS_DIR = "snapshots"
# Distributed types whose prepared model holds sharded weights: checkpoints go through accelerate.
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


@dataclass
class TrainResult:
    output: Path
    metrics: dict[str, Any]


def build_model(config: TrainConfig, dtype: torch.dtype | None = None) -> tuple[RewardModel, Any]:
    """Base causal LM + reward head, with LoRA or frozen lower layers as configured.

    The head's dropout is ``config.head_dropout`` (None: the head's default, 0.1).
    """
    backbone, tokenizer = load_backbone(config.model, dtype=dtype)
    head_options = {} if config.head_dropout is None else {"dropout": config.head_dropout}
    head = HeadConfig(type=config.head, hidden_size=backbone.config.hidden_size, **head_options)
    model = RewardModel(backbone, head, base_model=config.model)
    if config.lora:
        model = apply_lora(
            model, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout, targets=tuple(config.lora_targets)
        )
    elif config.trainable_top_layers is not None:
        freeze_lower_layers(model, config.trainable_top_layers)
    return model, tokenizer


def saved_settings(config: TrainConfig) -> dict[str, Any]:
    """What a saved model must remember about how it was trained and how it renders text."""
    return {
        "base_model": config.model,
        "max_length": config.max_length,
        "truncation": config.truncation,
        "loss": config.loss,
        "reg": config.reg,
        "alpha": config.alpha,
        "beta": config.beta,
        "head": config.head,
        "lora": config.lora,
        "trainable_top_layers": config.trainable_top_layers,
        "seed": config.seed,
        "data": config.data,
        "rewardlab_version": __version__,
    }


def _load_split(spec: str, limit: int | None, label: str, echo: Callable[[str], None]) -> list[PreferencePair]:
    report = LoadReport()
    pairs = load_pairs(spec, report=report, limit=limit)
    echo(f"{label} data {spec}: {report.summary()}")
    return pairs


def _micro_batch(
    data: Sequence[TokenizedPair], index: int, batch_size: int, seed: int, rank: int, world: int, cache: dict
) -> list[TokenizedPair]:
    """The ``index``-th micro-batch of this process; epoch orders are seeded permutations.

    Defined by the index alone, so a resumed run sees exactly the batches an uninterrupted run would,
    and the ``world`` processes' micro-batches together are the one global batch a single process
    with ``batch_size * world`` pairs would take.
    """
    global_size = batch_size * world
    per_epoch = max(1, len(data) // global_size)
    epoch, position = divmod(index, per_epoch)
    if epoch not in cache:
        generator = torch.Generator().manual_seed(seed + epoch)
        cache.clear()
        cache[epoch] = torch.randperm(len(data), generator=generator).tolist()
    order = cache[epoch]
    start = position * global_size + rank * batch_size
    return [data[i] for i in order[start : start + batch_size]]


def make_reference(
    model: RewardModel, lora: bool, device: torch.device | str | None = None
) -> Callable[[PairBatch | PackedPairBatch], tuple[torch.Tensor, torch.Tensor]]:
    """Frozen reference log-probs for DPO: the adapter switched off (LoRA) or a frozen copy.

    Call it on the base weights, before any checkpoint is loaded: the copy is the reference for the
    whole run, resumed or not. ``device`` is where the copy runs (the training device).
    """
    if device is None:
        device = next(model.parameters()).device
    frozen = None if lora else copy.deepcopy(model).to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def reference(batch: PairBatch | PackedPairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if frozen is None:
            with model.lm.disable_adapter():
                return pair_logprobs(model, batch)
        return pair_logprobs(frozen, batch)

    return reference


def evaluate_accuracy(
    model: RewardModel, tokenizer: Any, config: TrainConfig, pairs: Sequence[PreferencePair],
    accelerator: Accelerator | None = None,
) -> dict:
    """Pairwise accuracy on ``pairs``; with several processes each scores its share and all get the total."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    share = list(pairs[rank::world])
    scorer = RewardScorer(
        model, tokenizer, {"max_length": config.max_length, "truncation": config.truncation},
        batch_size=max(8, 2 * config.batch_size), packing=config.packing,
    )
    chosen, rejected = scorer.score_pairs(share, progress="eval" if config.progress and rank == 0 else None) \
        if share else ([], [])
    if world > 1:
        results = gather_object([(chosen, rejected)])
        chosen = [c for part, _ in results for c in part]
        rejected = [r for _, part in results for r in part]
    # Pairs the training set would drop (too long under truncation "drop") are not scored, as in `rewardlab eval`.
    scored = sum(not (math.isnan(c) or math.isnan(r)) for c, r in zip(chosen, rejected))
    return {"accuracy": pairwise_accuracy(chosen, rejected), "n": scored, "dropped": len(pairs) - scored}


def _frozen_layer_cache(
    config: TrainConfig, model: RewardModel, accelerator: Accelerator, shared: FrozenLayerCache | None, *,
    packed: bool, echo: Callable[[str], None],
) -> FrozenLayerCache | None:
    """The cache of frozen lower layers' outputs this run uses, or None where it cannot help."""
    if config.lora or config.trainable_top_layers is None or config.frozen_cache_gb <= 0:
        return None
    if not packed:
        reason = "training runs on padded batches"
    elif accelerator.distributed_type in SHARDED:
        reason = f"weights are sharded ({accelerator.distributed_type.value})"
    else:
        reason = frozen_cache_unusable_reason(model.causal_lm)
    if reason is not None:
        echo(f"frozen lower layers recomputed every step ({reason})")
        return None
    cache = shared if shared is not None else FrozenLayerCache(int(config.frozen_cache_gb * 2**30))
    cache.bind(model.causal_lm, frozen_lower_layer_count(model.causal_lm), str(accelerator.mixed_precision))
    return cache


def _end_process_group() -> None:
    """At exit: left to C++ static destructors, gloo's threads sometimes abort a finished process (SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The accelerator for this run; refuses a launch of several processes that it sees as one.

    ``torchrun --nproc_per_node 2`` on a machine without GPUs sets ``WORLD_SIZE=2``, but accelerate
    only joins the processes into one run with its CPU flag; without it each process would train
    alone into the same folder.
    """
    accelerator = Accelerator(
        # --bf16, or else what `accelerate launch` was configured with (its config's mixed_precision), or none
        mixed_precision="bf16" if config.bf16 else (None if os.environ.get("ACCELERATE_MIXED_PRECISION") else "no"),
        gradient_accumulation_steps=config.grad_accum,
        kwargs_handlers=[DistributedDataParallelKwargs()],  # set in `train` once the model is known
        **log_with(config),  # --report-to: accelerate's tracker, or none
    )
    if accelerator.num_processes > 1:
        atexit.unregister(_end_process_group)  # once, however many runs this process trains
        atexit.register(_end_process_group)
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and accelerator.num_processes != launched:
        raise ConfigError(
            f"this was launched as {launched} processes (WORLD_SIZE={launched}) but accelerate sees "
            f"{accelerator.num_processes}, so each would train alone into {config.output}. On a machine without "
            f"GPUs set ACCELERATE_USE_CPU=true: `ACCELERATE_USE_CPU=true torchrun --nproc_per_node {launched} -m "
            "rewardlab.cli train ...` (`accelerate launch --cpu` starts one process only); on GPUs check that "
            "every process sees one"
        )
    if accelerator.gradient_accumulation_steps != config.grad_accum:
        raise ConfigError(
            f"accelerate is configured for gradient_accumulation_steps={accelerator.gradient_accumulation_steps} "
            f"(accelerate config or ACCELERATE_GRADIENT_ACCUMULATION_STEPS) but --grad-accum is {config.grad_accum}; "
            "set it in one place only"
        )
    return accelerator


def may_leave_parameters_unused(model: RewardModel, needs_lm_head: bool) -> bool:
    """Whether some trainable weight can get no gradient in a step, so DDP must look for such weights.

    The forward uses the decoder body and the reward head, and the LM head only for a regularizer;
    anything else trainable (an untied LM head with ``reg="none"``, a multimodal model's vision tower)
    goes unused. DDP's search costs a graph traversal per step, so it is only switched on then.
    """
    used = {id(p) for p in model.causal_lm.get_decoder().parameters()} | {id(p) for p in model.head.parameters()}
    lm_head = model.causal_lm.get_output_embeddings()
    if needs_lm_head and lm_head is not None:
        used |= {id(p) for p in lm_head.parameters()}
    return any(p.requires_grad and id(p) not in used for p in model.parameters())


def _finished(output: Path) -> bool:
    return (output / METRICS_FILE).exists() and (output / CONFIG_FILE).exists()


def _prepare_output(config: TrainConfig, accelerator: Accelerator, echo: Callable[[str], None]) -> TrainResult | None:
    """Check ``config.output`` against --resume/--overwrite; the finished run's result when resuming one."""
    output = Path(config.output)
    if config.resume and config.overwrite:
        raise ConfigError("--resume continues the run in --output and --overwrite replaces it: pass only one")
    if output.exists() and not output.is_dir():
        raise UserFileError(f"--output {output} is a file, not a folder; choose another --output")
    if _finished(output):
        if config.resume:
            echo(f"{output} already holds a finished run; nothing to resume")
            return TrainResult(output, json.loads((output / METRICS_FILE).read_text(encoding="utf-8")))
        if not config.overwrite:
            raise UserFileError(
                f"{output} already holds a finished run ({METRICS_FILE}, {CONFIG_FILE}); pass --overwrite to replace "
                "it, or choose another --output (--resume only continues an unfinished run)"
            )
    elif not config.resume and not config.overwrite and latest_checkpoint(output) is not None:
        raise UserFileError(
            f"{output} has checkpoints from an earlier, unfinished run: pass --resume to continue it, --overwrite "
            "to start over, or choose another --output"
        )
    accelerator.wait_for_everyone()  # every process has looked before anything is removed
    if config.overwrite and accelerator.is_main_process and (_finished(output) or latest_checkpoint(output)):
        echo(f"--overwrite: replacing the run in {output}")
        (output / METRICS_FILE).unlink(missing_ok=True)  # no longer a finished run, whatever happens next
        shutil.rmtree(output / CHECKPOINT_DIR, ignore_errors=True)
        shutil.rmtree(output / SNAPSHOTS_DIR, ignore_errors=True)
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return None


def _batch_size(config: TrainConfig, pairs: int, world: int, echo: Callable[[str], None]) -> int:
    """The per-process batch size: the configured one, or smaller when the data holds less than one batch."""
    if pairs >= config.batch_size * world:
        return config.batch_size
    size = pairs // world
    if size == 0:
        raise DataError(config.data, f"only {pairs} training pairs for {world} processes; each process needs at least "
                                     "one: use more data or fewer processes")
    per_process = f" per process x {world} processes" if world > 1 else ""
    echo(f"only {pairs} training pairs, fewer than one batch of {config.batch_size}{per_process}: "
         f"training with batch size {size}{' per process' if world > 1 else ''}")
    return size


def _save_sharded_checkpoint(
    output: Path, accelerator: Accelerator, scheduler: Any, state: TrainerState
) -> None:
    """FSDP/DeepSpeed: accelerate writes the sharded model, optimizer and every rank's RNG; then renamed into place."""
    root = output / CHECKPOINT_DIR
    final, staging = root / f"step-{state.step:08d}", root / f".tmp-step-{state.step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        (staging / STATE_FILE).write_text(json.dumps(vars(state), indent=1), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in sorted(p for p in root.glob("step-*") if p.is_dir() and p != final):
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _gathered_model(config: TrainConfig, accelerator: Accelerator, model: torch.nn.Module) -> RewardModel | None:
    """FSDP/DeepSpeed: the whole trained model on the main process's CPU (None elsewhere); all processes call it."""
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    whole, _ = build_model(config)
    prefix = "reward_model."
    whole.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()})
    return whole


def snapshot_dir(output: str | Path, step: int) -> Path:
    """Where ``snapshot_steps`` puts the model saved after optimizer step ``step``."""
    return Path(output) / SNAPSHOTS_DIR / f"step-{step:08d}"


def train(
    config: TrainConfig,
    *,
    echo: Callable[[str], None] = print,
    on_step: Callable[[int, dict[str, float], RewardModel], None] | None = None,
    progress_desc: str = "train",
    frozen_cache: FrozenLayerCache | None = None,
) -> TrainResult:
    """Train a reward model as configured and save it to ``config.output``.

    ``on_step(step, logs, model)`` is called on every process after every optimizer step (after any
    checkpoint of that step); ``logs`` are averaged over processes, ``model`` is this process's
    (unwrapped) reward model. ``frozen_cache`` lets several runs (and scorers) on the same frozen base
    share the frozen lower layers' outputs (by default each run keeps its own, reused across epochs).
    Only the main process echoes.
    """
    output = Path(config.output)
    accelerator = make_accelerator(config)
    say = echo if accelerator.is_main_process else (lambda message: None)
    finished = _prepare_output(config, accelerator, say)
    if finished is not None:
        return finished
    sharded = accelerator.distributed_type in SHARDED
    rank, world = accelerator.process_index, accelerator.num_processes
    set_seed(config.seed)  # the same initial weights (head, LoRA) on every process
    loss_config = config.loss_config()

    # 1-2. model (and the DPO reference, from the base weights: never from a checkpoint)
    model, tokenizer = build_model(config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    say(f"model {config.model}: {n_trainable:,} of {n_total:,} parameters trainable ({100 * n_trainable / n_total:.2f}%)")
    reference = make_reference(model, config.lora, accelerator.device) if loss_config.needs_reference else None
    if accelerator.ddp_handler is not None:
        accelerator.ddp_handler.find_unused_parameters = may_leave_parameters_unused(
            model, loss_config.needs_chosen_logps)
    set_seed(config.seed, device_specific=True)  # each process its own dropout stream (seed + rank)

    # 3. data, rendered once
    skipped: Counter = Counter()
    train_pairs = _load_split(config.data, config.train_limit, "train", say)
    train_data = tokenize_pairs(
        tokenizer, train_pairs, max_length=config.max_length, truncation=config.truncation, skipped=skipped
    )
    if skipped:
        say(f"skipped at rendering: {dict(skipped)}")
    if not train_data:
        raise DataError(config.data, f"no training pairs left after rendering (max_length={config.max_length}); "
                                     "raise --max-length or use --truncation prompt-left")
    if config.loss == "margin" and any(p.margin is None for p in train_data):
        raise DataError(config.data, "--loss margin needs a margin for every pair (a 'margin' column in the data)")
    eval_pairs = _load_split(config.eval_data, config.eval_limit, "eval", say) if config.eval_data else []

    batch_size = _batch_size(config, len(train_data), world, say)
    pairs_per_step = batch_size * config.grad_accum * world
    steps_per_epoch = max(1, len(train_data) // pairs_per_step)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))

    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    state = TrainerState(num_processes=world, pairs_per_step=pairs_per_step)
    checkpoint = latest_checkpoint(output) if config.resume else None
    if checkpoint is not None:
        saved = read_trainer_state(checkpoint)
        if saved.pairs_per_step is not None and saved.pairs_per_step != pairs_per_step:
            raise ConfigError(
                f"checkpoint {checkpoint} was written by a run with {saved.pairs_per_step} pairs per optimizer step "
                f"({saved.num_processes} processes); this one has {pairs_per_step}: resume with the same batch size, "
                "gradient accumulation and number of processes"
            )
        if not sharded:
            state = load_checkpoint(checkpoint, model, optimizer, scheduler, process_index=rank)
    elif config.resume:
        say(f"--resume: no checkpoint in {output / CHECKPOINT_DIR}; starting from scratch (step 0)")
    if sharded and accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":  # no dataloader to infer it from
            ds_config["train_micro_batch_size_per_gpu"] = batch_size
    loss_model, optimizer = accelerator.prepare(PairLoss(model, loss_config, reference), optimizer)
    raw_model: RewardModel = accelerator.unwrap_model(loss_model).reward_model
    if checkpoint is not None and sharded:
        accelerator.load_state(str(checkpoint))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", map_location="cpu", weights_only=False))
        state = read_trainer_state(checkpoint)
    if checkpoint is not None:
        say(f"resumed from {checkpoint} (step {state.step} of {total_steps})")
        if state.num_processes != world:
            say(f"the checkpoint was written by {state.num_processes} processes, this run has {world}: the data order "
                "is kept but random streams (dropout) are not, so results differ slightly from an uninterrupted run")
            if not sharded and not restore_rng(checkpoint, rank):
                set_seed(config.seed + state.step, device_specific=True)
        state.num_processes, state.pairs_per_step = world, pairs_per_step
    # Packed batches (prompt computed once, no padding) give the same losses as padded ones, faster.
    unpackable = packing_unsupported_reason(raw_model.causal_lm) if config.packing else None
    if unpackable:
        say(f"packing unavailable ({unpackable}); training on padded batches")
    if config.packing and not unpackable:
        collate = collate_packed_pairs
    else:
        collate = lambda items: collate_pairs(items, tokenizer.pad_token_id)  # noqa: E731
    cache = _frozen_layer_cache(config, raw_model, accelerator, frozen_cache, packed=config.packing and not unpackable,
                                echo=say)
    cache_stats_before = FrozenCacheStats(**vars(cache.stats)) if cache is not None else None
    if sharded and eval_pairs and config.eval_interval:
        say(f"evaluation during training is off under {accelerator.distributed_type.value}; "
            "the final evaluation runs on the gathered model")

    # 4. the loop
    tracking = start_tracking(accelerator, config, state)
    try:
        loss_model.train()
        order_cache: dict = {}
        started = time.perf_counter()
        window: list[torch.Tensor] = []  # per step, averaged over processes: loss, reward, reg, accuracy
        window_seconds = 0.0  # time spent in the window's training steps (not evaluation or checkpoints)
        tokens_seen = 0
        bar = tqdm(
            total=total_steps, initial=state.step, desc=progress_desc,
            disable=not (config.progress and accelerator.is_main_process), dynamic_ncols=True,
        )
        steps_this_session = 0
        while state.step < total_steps:
            step_started = time.perf_counter()
            parts: list[tuple[float, float, float, float]] = []
            for micro in range(config.grad_accum):
                items = _micro_batch(
                    train_data, state.step * config.grad_accum + micro, batch_size, config.seed, rank, world,
                    order_cache,
                )
                batch = collate(items).to(accelerator.device)
                tokens_seen += batch.sequence_tokens
                with accelerator.accumulate(loss_model):  # no gradient all-reduce before the last micro-batch
                    with accelerator.autocast():
                        if cache is not None:
                            # one packed group each
                            keys = [(tuple(p.chosen_ids), tuple(p.rejected_ids)) for p in items]
                            batch = batch.with_lower_states(
                                cache.lower_states(raw_model.causal_lm, keys, batch.packed), cache.lower_layers)
                        breakdown = loss_model(batch)  # through the wrapper: DDP/FSDP hooks see the whole loss
                    accelerator.backward(breakdown.total)  # divided by grad_accum there
                    if accelerator.sync_gradients:  # the last micro-batch: gradients are averaged over processes now
                        if config.max_grad_norm:
                            accelerator.clip_grad_norm_(loss_model.parameters(), config.max_grad_norm)
                        optimizer.step()
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                parts.append((float(breakdown.total.detach()), breakdown.reward, breakdown.regularizer,
                              breakdown.accuracy))
            if not accelerator.sync_gradients:
                raise RuntimeError("gradient accumulation out of step with accelerate's; this is a bug")
            state.step += 1
            steps_this_session += 1

            local = torch.tensor(parts, dtype=torch.float64, device=accelerator.device).mean(0)
            window.append(accelerator.reduce(local, reduction="mean").cpu() if world > 1 else local.cpu())
            means = torch.stack(window).mean(0).tolist()
            logs = dict(zip(("loss", "reward_loss", "reg_loss", "train_accuracy"), means))
            window_seconds += time.perf_counter() - step_started
            if state.step % config.log_interval == 0 or state.step == total_steps:
                throughput = round(len(window) * pairs_per_step / window_seconds, 3) if window_seconds > 0 else None
                state.history.append({"step": state.step, "lr": scheduler.get_last_lr()[0], **logs,
                                      "pairs_per_s": throughput})
                log_history_entry(accelerator, state.history[-1])
                window, window_seconds = [], 0.0
            bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['train_accuracy']:.2f}")
            bar.update(1)

            if (eval_pairs and config.eval_interval and not sharded and state.step % config.eval_interval == 0
                    and state.step < total_steps):
                result = evaluate_accuracy(raw_model, tokenizer, config, eval_pairs, accelerator)
                state.eval_history.append({"step": state.step, **result})
                log_eval(accelerator, state.step, result)
                if accelerator.is_main_process:
                    bar.write(f"step {state.step}: eval accuracy {result['accuracy']:.3f} on {result['n']} pairs")
                loss_model.train()
            if state.step in config.snapshot_steps and state.step < total_steps:
                # Before this step's checkpoint: a run killed in between resumes from an earlier step and saves it
                # again.
                snapshot = _gathered_model(config, accelerator, loss_model) if sharded else raw_model
                if accelerator.is_main_process:
                    save_reward_model(snapshot, tokenizer, snapshot_dir(output, state.step), saved_settings(config),
                                      facts=_card_facts(config, state, len(train_data), skipped, pairs_per_step,
                                                        total_steps, snapshot=True))
                    bar.write(f"step {state.step}: snapshot saved to {snapshot_dir(output, state.step)}")
                accelerator.wait_for_everyone()
            if config.save_steps and state.step % config.save_steps == 0 and state.step < total_steps:
                if sharded:
                    _save_sharded_checkpoint(output, accelerator, scheduler, state)
                else:
                    rng_states = gather_object([rng_state()]) if world > 1 else [rng_state()]
                    if accelerator.is_main_process:
                        save_checkpoint(output, raw_model, optimizer, scheduler, state, rng_states=rng_states)
                    accelerator.wait_for_everyone()
            if on_step is not None:
                on_step(state.step, logs, raw_model)
        bar.close()
        elapsed = time.perf_counter() - started
        if world > 1:
            tokens_seen = int(accelerator.reduce(torch.tensor(tokens_seen, device=accelerator.device), reduction="sum"))

        # 5. final evaluation and save
        final_model = _gathered_model(config, accelerator, loss_model) if sharded else raw_model
        if not eval_pairs:
            final_eval = None
        elif sharded:  # only the main process holds the whole model: it evaluates, the others get its result
            result = [evaluate_accuracy(final_model, tokenizer, config, eval_pairs)
                      if accelerator.is_main_process else None]
            final_eval = gather_object(result)[0]
        else:
            final_eval = evaluate_accuracy(raw_model, tokenizer, config, eval_pairs, accelerator)
        if final_eval is not None:
            log_eval(accelerator, state.step, final_eval)
        metrics = {
            "steps": state.step,
            "train_pairs": len(train_data),
            "skipped_at_rendering": dict(skipped),
            "batch_size": batch_size,
            "num_processes": world,
            "mixed_precision": str(accelerator.mixed_precision),
            "pairs_per_step": pairs_per_step,
            "wall_time_s": round(elapsed, 2),
            "pairs_per_s_this_session": (round(steps_this_session * pairs_per_step / elapsed, 3) if elapsed > 0
                                         else None),
            "tokens_per_s_this_session": round(tokens_seen / elapsed, 1) if elapsed > 0 else None,
            "final_train": state.history[-1] if state.history else None,
            "history": state.history,
            "eval_history": state.eval_history,
            "eval": final_eval,
            "frozen_layer_cache": None if cache is None else {
                **cache.stats.as_dict(), "hits": cache.stats.hits - cache_stats_before.hits,
                "misses": cache.stats.misses - cache_stats_before.misses},
            "config": config.to_dict(),
        }
        if accelerator.is_main_process:
            final_model.eval()
            facts = _card_facts(config, state, len(train_data), skipped, pairs_per_step, total_steps,
                                final_eval=final_eval)
            save_reward_model(final_model, tokenizer, output, saved_settings(config), facts=facts)
            write_json_atomic(output / METRICS_FILE, metrics)
            write_loss_plot(output, metrics)
            shutil.rmtree(output / CHECKPOINT_DIR, ignore_errors=True)  # the finished model supersedes them
        accelerator.wait_for_everyone()
        if final_eval is not None:
            say(f"eval accuracy {final_eval['accuracy']:.3f} on {final_eval['n']} pairs")
        say(f"saved reward model to {output}")
        if config.push_to_hub and accelerator.is_main_process:
            _push(config, say)
        return TrainResult(output, metrics)
    finally:
        if tracking:  # flushed and closed whatever happens, so a killed run's events are on disk for --resume
            finish_tracking(accelerator)


def _card_facts(
    config: TrainConfig, state: TrainerState, train_pairs: int, skipped: Counter, pairs_per_step: int,
    total_steps: int, *, final_eval: dict | None = None, snapshot: bool = False,
) -> TrainingFacts:
    """What the model card of a model saved now can say about its training."""
    interval = None
    if final_eval is not None and final_eval.get("n") and final_eval.get("accuracy") is not None:
        interval = wilson_interval(round(final_eval["accuracy"] * final_eval["n"]), int(final_eval["n"]))
    return TrainingFacts(
        data=config.data, train_pairs=train_pairs, skipped=dict(skipped), steps=state.step, total_steps=total_steps,
        pairs_per_step=pairs_per_step, epochs=config.epochs if config.max_steps is None else None, lr=config.lr,
        lr_scheduler_type=config.lr_scheduler_type, num_processes=state.num_processes,
        eval_data=config.eval_data if final_eval is not None else None, eval=final_eval, snapshot=snapshot,
        eval_interval=interval, interval_method=WILSON_METHOD if interval is not None else None,
    )


def write_loss_plot(output: str | Path, metrics: dict[str, Any]) -> Path:
    """``OUTPUT/loss.png`` from a run's ``metrics.json`` content, stamped with the run's options and machine."""
    config = metrics.get("config") or {}
    options = TrainConfig(**config).changed_options() if config else {}
    processes = metrics.get("num_processes", 1)
    footer = (f"rewardlab train {' '.join(f'{k}={v}' for k, v in options.items())} | {provenance(describe_machine())}"
              f"{f', {processes} processes' if processes > 1 else ''} | {metrics.get('steps')} steps, "
              f"wall time {_duration(metrics.get('wall_time_s') or 0.0)} (this session)")
    final_step = metrics.get("steps") if metrics.get("eval") else None
    evals = [e for e in metrics.get("eval_history") or [] if e["step"] != final_step]
    if metrics.get("eval"):  # the final evaluation, drawn once even when an interval evaluation fell on the last step
        evals.append({"step": metrics.get("steps"), **metrics["eval"]})
    title = (f"{Path(output).resolve().name}: reg={config.get('reg')}, alpha={config.get('alpha')}, "
             f"head={config.get('head')}")
    return plot_training_curves(metrics.get("history") or [], evals, Path(output) / LOSS_PLOT, footer=footer,
                                title=title)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _push(config: TrainConfig, say: Callable[[str], None]) -> None:
    """``push_to_hub``: upload the saved model; a failure says the model is saved and how to retry."""
    from rewardlab.models.hub import HubError, push_reward_model

    repo_id = config.hub_repo_id()
    try:
        result = push_reward_model(config.output, repo_id, private=config.hub_private_repo)
    except HubError as error:
        raise HubError(f"{error} (the model is saved in {config.output}; retry with `rewardlab push {config.output} "
                       f"{repo_id}`)") from None
    say(f"pushed {len(result.files)} files to {result.url} ({result.commit_url})")
