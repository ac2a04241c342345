"""The reward-model training recipe, readable top to bottom.

1. load the base causal LM (kept whole) and put a reward head on it;
2. optionally wrap it with LoRA or freeze its lower layers;
3. render every pair once through the one rendering path;
4. for each optimizer step: forward chosen+rejected together, reward loss on the two rewards,
   regularizer on log-probs of the response tokens, ``(1-α)·reward + α·reg``, backward, step
   (``packing``, the default: each pair runs as one padding-free [prompt, chosen, rejected] row,
   see `train/packing.py`; `train/step.py:compute_batch_loss` takes either batch kind; with frozen
   lower layers their outputs are computed once per pair and reused, see `models/frozen_cache.py`);
5. checkpoint periodically (atomic, resumable), evaluate periodically, save the final model.

Runs unchanged under ``accelerate launch`` (DDP): each process takes its share of every global batch.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from rewardlab import __version__
from rewardlab.data.loaders import LoadReport, load_pairs
from rewardlab.data.pair import PreferencePair
from rewardlab.files import write_json_atomic
from rewardlab.losses import LossBreakdown
from rewardlab.models.frozen_cache import FrozenCacheStats, FrozenLayerCache, frozen_cache_unusable_reason
from rewardlab.models.heads import HeadConfig
from rewardlab.models.layers import frozen_lower_layer_count
from rewardlab.models.lora import apply_lora, freeze_lower_layers
from rewardlab.models.packed import packing_unsupported_reason
from rewardlab.models.persistence import save_reward_model
from rewardlab.models.registry import load_backbone
from rewardlab.models.reward_model import RewardModel
from rewardlab.scoring import RewardScorer, pairwise_accuracy
from rewardlab.train.batches import PairBatch, TokenizedPair, collate_pairs, tokenize_pairs
from rewardlab.train.checkpoint import CHECKPOINT_DIR, TrainerState, latest_checkpoint, load_checkpoint, save_checkpoint
from rewardlab.train.config import TrainConfig
from rewardlab.train.packing import PackedPairBatch, collate_packed_pairs
from rewardlab.train.step import compute_batch_loss, pair_logprobs

METRICS_FILE = "metrics.json"


@dataclass
class TrainResult:
    output: Path
    metrics: dict[str, Any]


def build_model(config: TrainConfig, dtype: torch.dtype | None = None) -> tuple[RewardModel, Any]:
    """Base causal LM + reward head, with LoRA or frozen lower layers as configured."""
    backbone, tokenizer = load_backbone(config.model, dtype=dtype)
    head = HeadConfig(type=config.head, hidden_size=backbone.config.hidden_size)
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

    Defined by the index alone, so a resumed run sees exactly the batches an uninterrupted run would.
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
    model: RewardModel, lora: bool
) -> Callable[[PairBatch | PackedPairBatch], tuple[torch.Tensor, torch.Tensor]]:
    """Frozen reference log-probs for DPO: the adapter switched off (LoRA) or a frozen copy."""
    frozen = None if lora else copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def reference(batch: PairBatch | PackedPairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if frozen is None:
            with model.lm.disable_adapter():
                return pair_logprobs(model, batch)
        return pair_logprobs(frozen, batch)

    return reference


def evaluate_accuracy(model: RewardModel, tokenizer: Any, config: TrainConfig, pairs: Sequence[PreferencePair]) -> dict:
    scorer = RewardScorer(
        model, tokenizer, {"max_length": config.max_length}, batch_size=max(8, 2 * config.batch_size),
        packing=config.packing,
    )
    chosen, rejected = scorer.score_pairs(pairs, progress="eval" if config.progress else None)
    return {"accuracy": pairwise_accuracy(chosen, rejected), "n": len(pairs)}


def _frozen_layer_cache(
    config: TrainConfig, model: RewardModel, accelerator: Accelerator, shared: FrozenLayerCache | None, *,
    packed: bool, echo: Callable[[str], None],
) -> FrozenLayerCache | None:
    """The cache of frozen lower layers' outputs this run uses, or None where it cannot help."""
    if config.lora or config.trainable_top_layers is None or config.frozen_cache_gb <= 0:
        return None
    reason = "training runs on padded batches" if not packed else frozen_cache_unusable_reason(model.causal_lm)
    if reason is not None:
        echo(f"frozen lower layers recomputed every step ({reason})")
        return None
    cache = shared if shared is not None else FrozenLayerCache(int(config.frozen_cache_gb * 2**30))
    cache.bind(model.causal_lm, frozen_lower_layer_count(model.causal_lm), str(accelerator.mixed_precision))
    return cache


def train(
    config: TrainConfig,
    *,
    echo: Callable[[str], None] = print,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress_desc: str = "train",
    frozen_cache: FrozenLayerCache | None = None,
) -> TrainResult:
    """Train a reward model as configured and save it to ``config.output``.

    ``on_step(step, logs)`` is called after every optimizer step (after any checkpoint of that step).
    ``frozen_cache`` lets several runs (and scorers) on the same frozen base share the frozen lower
    layers' outputs (by default each run keeps its own, reused across its epochs).
    """
    output = Path(config.output)
    if (output / METRICS_FILE).exists() and (output / "rewardlab_config.json").exists():
        if config.resume:
            echo(f"{output} already holds a finished run; nothing to resume")
            return TrainResult(output, json.loads((output / METRICS_FILE).read_text(encoding="utf-8")))
    if not config.resume and latest_checkpoint(output) is not None:
        raise FileExistsError(
            f"{output} has checkpoints from an earlier run: pass --resume to continue it, or choose another --output"
        )
    output.mkdir(parents=True, exist_ok=True)

    accelerator = Accelerator(mixed_precision="bf16" if config.bf16 else "no")
    set_seed(config.seed)
    loss_config = config.loss_config()

    # 1-2. model
    model, tokenizer = build_model(config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    echo(f"model {config.model}: {n_trainable:,} of {n_total:,} parameters trainable ({100 * n_trainable / n_total:.2f}%)")

    # 3. data, rendered once
    skipped: Counter = Counter()
    train_pairs = _load_split(config.data, config.train_limit, "train", echo)
    train_data = tokenize_pairs(
        tokenizer, train_pairs, max_length=config.max_length, truncation=config.truncation, skipped=skipped
    )
    if skipped:
        echo(f"skipped at rendering: {dict(skipped)}")
    if not train_data:
        raise ValueError(f"no training pairs left from {config.data} after rendering (max_length={config.max_length})")
    eval_pairs = _load_split(config.eval_data, config.eval_limit, "eval", echo) if config.eval_data else []

    pairs_per_step = config.batch_size * config.grad_accum * accelerator.num_processes
    steps_per_epoch = max(1, len(train_data) // pairs_per_step)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    if len(train_data) < config.batch_size * accelerator.num_processes:
        raise ValueError(f"only {len(train_data)} training pairs, fewer than one batch of {config.batch_size}")

    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    state = TrainerState()
    checkpoint = latest_checkpoint(output) if config.resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)
        echo(f"resumed from {checkpoint} (step {state.step} of {total_steps})")
    elif config.resume:
        echo(f"no checkpoint in {output}; starting from scratch")
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model: RewardModel = accelerator.unwrap_model(model)
    reference = make_reference(raw_model, config.lora) if loss_config.needs_reference else None
    # Packed batches (prompt computed once, no padding) give the same losses as padded ones, faster.
    unpackable = packing_unsupported_reason(raw_model.causal_lm) if config.packing else None
    if unpackable:
        echo(f"packing unavailable ({unpackable}); training on padded batches")
    if config.packing and not unpackable:
        collate = collate_packed_pairs
    else:
        collate = lambda items: collate_pairs(items, tokenizer.pad_token_id)  # noqa: E731
    cache = _frozen_layer_cache(config, raw_model, accelerator, frozen_cache, packed=config.packing and not unpackable,
                                echo=echo)
    cache_stats_before = FrozenCacheStats(**vars(cache.stats)) if cache is not None else None

    # 4. the loop
    model.train()
    order_cache: dict = {}
    started = time.perf_counter()
    window: list[LossBreakdown] = []
    tokens_seen = 0
    bar = tqdm(
        total=total_steps, initial=state.step, desc=progress_desc, disable=not (config.progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    steps_this_session = 0
    while state.step < total_steps:
        for micro in range(config.grad_accum):
            items = _micro_batch(
                train_data, state.step * config.grad_accum + micro, config.batch_size, config.seed,
                accelerator.process_index, accelerator.num_processes, order_cache,
            )
            batch = collate(items).to(accelerator.device)
            tokens_seen += batch.sequence_tokens
            last = micro == config.grad_accum - 1
            with (nullcontext() if last else accelerator.no_sync(model)), accelerator.autocast():
                if cache is not None:
                    keys = [(tuple(p.chosen_ids), tuple(p.rejected_ids)) for p in items]  # one packed group each
                    batch = batch.with_lower_states(
                        cache.lower_states(raw_model.causal_lm, keys, batch.packed), cache.lower_layers)
                breakdown = compute_batch_loss(raw_model, batch, loss_config, reference)
                accelerator.backward(breakdown.total / config.grad_accum)
            window.append(breakdown)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        steps_this_session += 1

        logs = {
            "loss": sum(float(b.total.detach()) for b in window) / len(window),
            "reward_loss": sum(b.reward for b in window) / len(window),
            "reg_loss": sum(b.regularizer for b in window) / len(window),
            "train_accuracy": sum(b.accuracy for b in window) / len(window),
        }
        if state.step % config.log_interval == 0 or state.step == total_steps:
            state.history.append({"step": state.step, "lr": scheduler.get_last_lr()[0], **logs})
            window = []
        bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['train_accuracy']:.2f}")
        bar.update(1)

        if eval_pairs and config.eval_interval and state.step % config.eval_interval == 0 and state.step < total_steps:
            result = evaluate_accuracy(raw_model, tokenizer, config, eval_pairs)
            state.eval_history.append({"step": state.step, **result})
            bar.write(f"step {state.step}: eval accuracy {result['accuracy']:.3f} on {result['n']} pairs")
            model.train()
        if config.save_steps and state.step % config.save_steps == 0 and state.step < total_steps:
            if accelerator.is_main_process:
                save_checkpoint(output, raw_model, optimizer, scheduler, state)
            accelerator.wait_for_everyone()
        if on_step is not None:
            on_step(state.step, logs)
    bar.close()
    elapsed = time.perf_counter() - started

    # 5. final evaluation and save
    final_eval = evaluate_accuracy(raw_model, tokenizer, config, eval_pairs) if eval_pairs else None
    metrics = {
        "steps": state.step,
        "train_pairs": len(train_data),
        "skipped_at_rendering": dict(skipped),
        "pairs_per_step": pairs_per_step,
        "wall_time_s": round(elapsed, 2),
        "pairs_per_s_this_session": round(steps_this_session * pairs_per_step / elapsed, 3) if elapsed > 0 else None,
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
        raw_model.eval()
        save_reward_model(raw_model, tokenizer, output, saved_settings(config))
        write_json_atomic(output / METRICS_FILE, metrics)
        shutil.rmtree(output / CHECKPOINT_DIR, ignore_errors=True)  # the finished model supersedes them
    accelerator.wait_for_everyone()
    if final_eval is not None:
        echo(f"eval accuracy {final_eval['accuracy']:.3f} on {final_eval['n']} pairs")
    echo(f"saved reward model to {output}")
    return TrainResult(output, metrics)
