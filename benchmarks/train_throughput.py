"""Training throughput: TRL's RewardTrainer vs rewardlab BT and GRM, same model, data and settings.

Configurations (each run in its own subprocess, so peak RSS is per configuration):

    trl-full / trl-lora      (a) TRL RewardTrainer on AutoModelForSequenceClassification
    bt-full / bt-lora        (b) rewardlab, reg=none (Bradley–Terry only)
    grm-full / grm-lora      (c) rewardlab, reg=sft (GRM: BT + SFT regularizer, α=0.01, β=0.1)
    grm-padded-full / -lora  (c) with packing off: the straightforward padded path, for reference
    score-packed / -padded   rewardlab scoring (`RewardScorer.score_pairs`, no gradients) of the same
                             batches with packing on / off, for the scoring fast path
    trl-top, bt-top,         only the top --top-layers decoder layers (default 4), the final norm and
    grm-top,                 the reward head train, the rest is frozen (the demo's and the repro's
    grm-top-nocache          CPU setting); rewardlab reuses the frozen layers' outputs
                             (`models/frozen_cache.py`), -nocache recomputes them every step. These
                             train for several epochs over the warm-up's pairs only, so every timed
                             step is a later-epoch step, the cache's steady state. TRL gets the same
                             batches (rewardlab's epoch permutations, one after another).

All of them train on the same pairs in the same order: hh-rlhf harmless-base pairs whose chosen and
rejected renderings both fit --max-length (so TRL's length filter drops nothing), ordered by
rewardlab's seeded epoch permutation and fed to TRL with its sequential sampler. TRL receives the
pairs in its conversational format and tokenizes them with the same chat template; the child checks
that its token ids equal rewardlab's rendering. Same batch size, max length, float32, AdamW (same
lr, no weight decay), gradient clipping 5.0, LoRA r=32/α=64/dropout 0.05 on q,k,v,o, no gradient
checkpointing. Each step is timed end to end (data collation, forward, backward, optimizer) by the
trainers' own step callbacks; the first --warmup steps are not counted; medians over the rest.

Not a timed test: run it by hand (minutes per configuration on a small CPU).

    python benchmarks/train_throughput.py --model tiny-random --steps 3      # quick check
    python benchmarks/train_throughput.py                                      # smollm2-135m, all six
    python benchmarks/train_throughput.py --configs grm-full,grm-padded-full --profile
    python benchmarks/train_throughput.py --configs trl-top,bt-top,grm-top,grm-top-nocache
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rewardlab.machine import hardware, package_versions

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "anthropic-hh-rlhf" / "harmless-base-test.jsonl.gz"
ALL_CONFIGS = ("trl-full", "bt-full", "grm-full", "trl-lora", "bt-lora", "grm-lora")
TOP_LAYER_CONFIGS = ("trl-top", "bt-top", "grm-top", "grm-top-nocache")
KNOWN_CONFIGS = ALL_CONFIGS + ("grm-padded-full", "grm-padded-lora", "bt-padded-full", "bt-padded-lora",
                               "score-packed", "score-padded") + TOP_LAYER_CONFIGS
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
SEED = 42


# --- environment --------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def matmul_ceiling(seconds: float = 3.0) -> float:
    """Best float32 FLOP/s of square-ish matmuls shaped like this model's (the MFU denominator)."""
    best = 0.0
    for m, k, n in ((2048, 576, 1536), (2048, 1536, 576), (2048, 2048, 2048)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        deadline = time.perf_counter() + seconds / 3
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            for _ in range(5):
                torch.mm(a, b)
            best = max(best, 5 * 2 * m * k * n / (time.perf_counter() - started))
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- data ---------------------------------------------------------------------------------------


def prepare_pairs(model: str, data: str, max_length: int, count: int, out_file: Path) -> dict:
    """Write the first ``count`` pairs whose both renderings fit ``max_length`` (TRL conversational JSONL)."""
    from collections import Counter

    from rewardlab.data.loaders import LoadReport, load_pairs
    from rewardlab.models.registry import load_tokenizer
    from rewardlab.train.batches import tokenize_pairs

    report = LoadReport()
    pairs = load_pairs(data, report=report)
    tokenizer = load_tokenizer(model)
    skipped: Counter = Counter()
    kept = []
    for pair in pairs:
        if tokenize_pairs(tokenizer, [pair], max_length=max_length, truncation="drop", skipped=skipped):
            kept.append(pair)
            if len(kept) == count:
                break
    if len(kept) < count:
        raise SystemExit(f"only {len(kept)} pairs of {data} fit max_length={max_length}; need {count}")
    with out_file.open("w", encoding="utf-8") as handle:
        for pair in kept:
            handle.write(json.dumps({
                "prompt": [dict(m) for m in pair.prompt],
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
            }) + "\n")
    return {"loaded": len(pairs), "skipped_at_loading": dict(report.skipped),
            "too_long_before_enough": sum(skipped.values()), "used": len(kept)}


def step_batches(model: str, data_file: Path, max_length: int, batch_size: int, steps: int) -> list[list]:
    """The pairs of each optimizer step, exactly as rewardlab's training loop draws them."""
    from rewardlab.data.loaders import load_pairs
    from rewardlab.models.registry import load_tokenizer
    from rewardlab.train.batches import tokenize_pairs
    from rewardlab.train.loop import _micro_batch

    items = tokenize_pairs(load_tokenizer(model), load_pairs(str(data_file)), max_length=max_length, truncation="drop")
    cache: dict = {}
    return [_micro_batch(items, step, batch_size, SEED, 0, 1, cache) for step in range(steps)]


# --- FLOP accounting ----------------------------------------------------------------------------


@dataclass
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, model: str) -> "ModelShape":
        from transformers import AutoConfig

        from rewardlab.models.registry import resolve_model_path

        c = AutoConfig.from_pretrained(resolve_model_path(model))
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return cls(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, head_dim,
                   c.intermediate_size, c.vocab_size)

    def body_params(self) -> int:
        """Weights of the decoder's matmuls (embeddings and norms excluded)."""
        attention = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    def lora_params(self, r: int = 32) -> int:
        q = o = r * (self.hidden + self.heads * self.head_dim)
        k = v = r * (self.hidden + self.kv_heads * self.head_dim)
        return self.layers * (q + k + v + o)


def step_flops(
    shape: ModelShape, batch: list, *, shared_prompt: bool, lm_head: bool, mode: str, top_layers: int = 0
) -> float:
    """Model FLOPs of one step for the tokens this method actually runs (no padding, no recompute).

    Forward: 2·params per token for the decoder matmuls (plus LoRA adapters), 4·layers·heads·head_dim
    per attended (query, key) pair, 2·vocab·hidden per chosen response token for GRM's LM head.
    ``mode`` "full": ×3 (forward, input and weight gradients); "lora": the frozen weights need
    forward and input gradients only (×2), the adapters ×3; "inference": forward only; "top":
    the top layers ×3, the frozen LM head ×2, the frozen lower layers ×1; "top-cached": the same
    without the lower layers (their outputs are reused).
    """
    from rewardlab.models.packed import common_prefix_length

    tokens = attended = lm_tokens = 0
    for pair in batch:
        lc, lr = len(pair.chosen_ids), len(pair.rejected_ids)
        shared = common_prefix_length([pair.chosen_ids, pair.rejected_ids]) if shared_prompt else 0
        tokens += lc + lr - shared
        attended += lc * (lc + 1) // 2 + lr * (lr + 1) // 2 - shared * (shared + 1) // 2
        lm_tokens += lc - pair.chosen_start if lm_head else 0
    per_token = 2 * shape.body_params()
    attention = 4 * shape.layers * shape.heads * shape.head_dim * attended
    head = 2 * shape.vocab * shape.hidden * lm_tokens
    forward = per_token * tokens + attention + head
    if mode in ("top", "top-cached"):
        body = per_token * tokens + attention
        top = body * top_layers / shape.layers
        return 3.0 * top + 2.0 * head + (body - top if mode == "top" else 0.0)
    if mode == "inference":
        return forward
    if mode == "full":
        return 3.0 * forward
    return 2.0 * forward + 3.0 * 2 * shape.lora_params() * tokens


def tokens_run(batch: list, *, packed: bool) -> int:
    """Token positions the model computes for one batch: padded to the longest sequence, or packed."""
    from rewardlab.models.packed import common_prefix_length

    if packed:
        return sum(len(p.chosen_ids) + len(p.rejected_ids) - common_prefix_length([p.chosen_ids, p.rejected_ids])
                   for p in batch)
    return 2 * len(batch) * max(max(len(p.chosen_ids), len(p.rejected_ids)) for p in batch)


# --- the children -------------------------------------------------------------------------------


def child_rewardlab(args: argparse.Namespace, name: str) -> dict:
    from rewardlab.train.config import TrainConfig
    from rewardlab.train.loop import train

    total = args.warmup + args.steps
    times: list[float] = []
    result: dict = {}

    class Finished(Exception):
        pass

    profiler = None

    def on_step(step: int, logs: dict) -> None:
        nonlocal profiler
        times.append(time.perf_counter())
        if args.profile and step == args.warmup:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler.__enter__()
        if step == total:
            result["peak_rss_mib"] = peak_rss_mib()
            result["final_loss"] = logs["loss"]
            raise Finished()

    with tempfile.TemporaryDirectory() as scratch:
        config = TrainConfig(
            model=args.model, data=str(args.data_file), output=str(Path(scratch) / "run"), max_steps=total,
            batch_size=args.batch_size, lr=args.lr, max_length=args.max_length, truncation="drop",
            reg="sft" if name.startswith("grm") else "none", lora="lora" in name, lora_r=32, lora_alpha=64,
            lora_dropout=0.05, lora_targets=LORA_TARGETS, save_steps=0, log_interval=1, progress=False,
            seed=SEED, bf16=args.bf16, max_grad_norm=5.0, weight_decay=0.0, packing="padded" not in name,
            trainable_top_layers=args.top_layers if "top" in name else None,
            frozen_cache_gb=0.0 if "nocache" in name else 2.0,
        )
        try:
            train(config, echo=lambda line: print(line, flush=True), on_step=on_step)
        except Finished:
            pass
    if profiler is not None:
        profiler.__exit__(None, None, None)
        result["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    result["step_times"] = [b - a for a, b in zip(times, times[1:])][args.warmup - 1:]
    return result


def child_trl(args: argparse.Namespace, name: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from rewardlab.data.loaders import load_pairs
    from rewardlab.models.registry import load_tokenizer, resolve_model_path
    from rewardlab.train.batches import tokenize_pairs

    rows = [json.loads(line) for line in Path(args.data_file).read_text(encoding="utf-8").splitlines()]
    total = args.warmup + args.steps
    order: list[int] = []  # rewardlab's epoch permutations, one after another, fed sequentially
    for epoch in range(-(-total * args.batch_size // len(rows))):
        order += torch.randperm(len(rows), generator=torch.Generator().manual_seed(SEED + epoch)).tolist()
    order = order[: total * args.batch_size]
    dataset = Dataset.from_list([rows[i] for i in order])
    tokenizer = load_tokenizer(args.model)  # the same tokenizer, chat template and pad token as rewardlab's
    times: list[float] = []
    result: dict = {}

    class StepTimer(TrainerCallback):
        profiler = None

        def on_step_end(self, train_args, state, control, **kwargs):
            times.append(time.perf_counter())
            if args.profile and state.global_step == args.warmup:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()
            if state.global_step == total:
                result["peak_rss_mib"] = peak_rss_mib()
                if self.profiler is not None:
                    self.profiler.__exit__(None, None, None)
                    result["profile"] = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)

    with tempfile.TemporaryDirectory() as scratch:
        config = RewardConfig(
            output_dir=scratch, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
            learning_rate=args.lr, weight_decay=0.0, max_grad_norm=5.0, optim="adamw_torch", max_steps=total,
            lr_scheduler_type="cosine", warmup_steps=0, bf16=args.bf16, gradient_checkpointing=False,
            max_length=args.max_length, disable_dropout=False, save_strategy="no", report_to=[], logging_steps=10,
            disable_tqdm=True, seed=SEED, data_seed=SEED, train_sampling_strategy="sequential",
            dataloader_num_workers=0, model_init_kwargs={"dtype": torch.bfloat16 if args.bf16 else torch.float32},
        )
        peft_config = None
        if "lora" in name:
            peft_config = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=LORA_TARGETS,
                                     task_type="SEQ_CLS")
        model = resolve_model_path(args.model)
        if "top" in name:
            model = top_layers_classifier(model, tokenizer, args.bf16, args.top_layers)
        trainer = RewardTrainer(model=model, args=config, train_dataset=dataset,
                                processing_class=tokenizer, peft_config=peft_config, callbacks=[StepTimer()])
        ours = tokenize_pairs(tokenizer, load_pairs(str(args.data_file)), max_length=args.max_length, truncation="drop")
        theirs = trainer.train_dataset
        result["trl_kept_pairs"] = len(theirs)
        result["token_ids_equal_rewardlab"] = sum(
            theirs[k]["chosen_ids"] == ours[i].chosen_ids and theirs[k]["rejected_ids"] == ours[i].rejected_ids
            for k, i in enumerate(order))
        trainer.train()
        result["final_loss"] = next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None)
    result["step_times"] = [b - a for a, b in zip(times, times[1:])][args.warmup - 1:]
    return result


def top_layers_classifier(path: str, tokenizer, bf16: bool, top_layers: int):
    """A sequence classifier with everything below the top layers frozen, as rewardlab's --trainable-top-layers."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.bfloat16 if bf16 else torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False)
    decoder = model.base_model
    for module in [*decoder.layers[-top_layers:], decoder.norm, model.score]:
        module.requires_grad_(True)
    return model


def child_scoring(args: argparse.Namespace, name: str) -> dict:
    """Score each step's pairs with `RewardScorer.score_pairs`, packing on or off."""
    from rewardlab.data.loaders import load_pairs
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.scoring import RewardScorer
    from rewardlab.train.loop import _micro_batch

    torch.manual_seed(SEED)
    model, tokenizer = RewardModel.from_base(args.model, head="linear")
    scorer = RewardScorer(model.eval(), tokenizer, {"max_length": args.max_length}, batch_size=2 * args.batch_size,
                          packing=name == "score-packed")
    pairs = load_pairs(str(args.data_file))
    cache: dict = {}
    times, rewards = [], []
    for step in range(args.warmup + args.steps):
        batch = _micro_batch(pairs, step, args.batch_size, SEED, 0, 1, cache)
        started = time.perf_counter()
        chosen, rejected = scorer.score_pairs(batch)
        times.append(time.perf_counter() - started)
        rewards.extend(chosen + rejected)
    return {"step_times": times[args.warmup:], "peak_rss_mib": peak_rss_mib(), "rewards": rewards}


def run_child(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.child
    if name.startswith("score"):
        result = child_scoring(args, name)
    else:
        result = child_trl(args, name) if name.startswith("trl") else child_rewardlab(args, name)
    result["torch_threads"] = torch.get_num_threads()
    Path(args.out).write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


# --- the parent ---------------------------------------------------------------------------------


def summarize(name: str, raw: dict, batches: list, shape: ModelShape, ceiling: float, args: argparse.Namespace) -> dict:
    timed = batches[args.warmup:]
    times = raw["step_times"]
    if len(times) != len(timed):
        raise RuntimeError(f"{name}: expected {len(timed)} timed steps, got {len(times)}")
    trl_like = name.startswith("trl") or "padded" in name
    mode = "inference" if name.startswith("score") else "lora" if "lora" in name else "full"
    if "top" in name:
        mode = "top" if trl_like or "nocache" in name else "top-cached"
    flops = [step_flops(shape, b, shared_prompt=not trl_like, lm_head=name.startswith("grm"), mode=mode,
                        top_layers=args.top_layers) for b in timed]
    seq_tokens = [sum(len(p.chosen_ids) + len(p.rejected_ids) for p in b) for b in timed]
    run_tokens = [tokens_run(b, packed=not trl_like) for b in timed]
    median = statistics.median(times)
    return {
        "config": name,
        "median_step_s": median,
        "pairs_per_s": args.batch_size / median,
        "tokens_per_s": statistics.median(t / s for t, s in zip(seq_tokens, times)),
        "mean_pairs_per_s": args.batch_size * len(times) / sum(times),
        "mfu": statistics.median(f / s for f, s in zip(flops, times)) / ceiling,
        "model_gflop_per_step": statistics.median(flops) / 1e9,
        "tokens_run_per_step": statistics.median(run_tokens),
        "peak_rss_mib": raw["peak_rss_mib"],
        "step_times": times,
        **{k: v for k, v in raw.items() if k not in ("step_times", "peak_rss_mib", "profile", "rewards")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny-random, or a path")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="pairs (default: hh-rlhf harmless-base test)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step (default 4)")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per rendered sequence (default 512)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2, at least 1)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--top-layers", dest="top_layers", type=int, default=4,
                        help="trainable top decoder layers in the *-top configurations (default 4)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision in every configuration")
    parser.add_argument("--threads", type=int, help="torch threads in each child (default: torch's choice)")
    parser.add_argument("--configs", default=",".join(ALL_CONFIGS),
                        help=f"comma-separated, from {', '.join(KNOWN_CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=1, help="run the whole set this many times (interleaved)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of each timed run")
    parser.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data-file", dest="data_file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in KNOWN_CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join(KNOWN_CONFIGS)}")

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average at start: {load_average()}", flush=True)
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as scratch:
        data_file = Path(scratch) / "pairs.jsonl"
        data_info = prepare_pairs(args.model, args.data, args.max_length, total_steps * args.batch_size, data_file)
        batches = step_batches(args.model, data_file, args.max_length, args.batch_size, total_steps)
        # The top-layer configurations cycle over the warm-up's pairs (see the module docstring).
        cycle_file = Path(scratch) / "cycle-pairs.jsonl"
        cycle_lines = data_file.read_text(encoding="utf-8").splitlines()[: args.warmup * args.batch_size]
        cycle_file.write_text("\n".join(cycle_lines) + "\n", encoding="utf-8")
        cycle_batches = step_batches(args.model, cycle_file, args.max_length, args.batch_size, total_steps)
        shape = ModelShape.of(args.model)
        ceiling = matmul_ceiling()
        print(f"data: the first {data_info['used']} pairs of {args.data} whose chosen and rejected renderings fit "
              f"max_length={args.max_length} ({data_info['too_long_before_enough']} longer ones passed over; "
              f"skipped at loading: {data_info['skipped_at_loading']}); matmul ceiling {ceiling / 1e9:.1f} GFLOP/s",
              flush=True)
        if any(name in TOP_LAYER_CONFIGS for name in configs):
            print(f"the *-top configurations cycle over the first {len(cycle_lines)} of these pairs", flush=True)
        raw_runs: dict[str, list[dict]] = {c: [] for c in configs}
        for repeat in range(args.repeats):
            for name in configs:
                out = Path(scratch) / f"{name}-{repeat}.json"
                command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
                           "--data-file", str(cycle_file if name in TOP_LAYER_CONFIGS else data_file),
                           "--out", str(out), "--model", args.model,
                           "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                           "--steps", str(args.steps), "--warmup", str(args.warmup), "--lr", str(args.lr),
                           "--top-layers", str(args.top_layers)]
                command += (["--bf16"] if args.bf16 else []) + (["--profile"] if args.profile else [])
                command += ["--threads", str(args.threads)] if args.threads else []
                before = load_average()
                started = time.perf_counter()
                completed = subprocess.run(command, capture_output=True, text=True)
                if completed.returncode != 0:
                    print(completed.stdout[-3000:], completed.stderr[-6000:], sep="\n")
                    raise SystemExit(f"configuration {name} failed (exit {completed.returncode})")
                raw = json.loads(out.read_text())
                if "peak_rss_mib" not in raw:
                    raise SystemExit(f"configuration {name} did not reach its last step: {raw}\n"
                                     f"{completed.stdout[-3000:]}")
                raw["load_before"], raw["load_after"] = before, load_average()
                raw_runs[name].append(raw)
                print(f"  {name} (run {repeat + 1}): {time.perf_counter() - started:.0f}s wall, "
                      f"load {before} -> {raw['load_after']}", flush=True)
                if args.profile and "profile" in raw:
                    print(f"--- profile of {name} (timed steps) ---\n{raw['profile']}", flush=True)
        end_ceiling = matmul_ceiling()

    results = []
    for name in configs:
        merged = dict(raw_runs[name][0])
        merged["step_times"] = [t for run in raw_runs[name] for t in run["step_times"]]
        merged["peak_rss_mib"] = max(run["peak_rss_mib"] for run in raw_runs[name])
        merged["loads"] = [f"{run['load_before']} -> {run['load_after']}" for run in raw_runs[name]]
        for key in ("load_before", "load_after"):
            merged.pop(key, None)
        own = cycle_batches if name in TOP_LAYER_CONFIGS else batches
        repeated_batches = own[: args.warmup] + own[args.warmup:] * args.repeats
        # The best the hardware showed in this run: a reading taken while other jobs spike is too low.
        results.append(summarize(name, merged, repeated_batches, shape, max(ceiling, end_ceiling), args))

    print()
    print(f"model {args.model}, batch {args.batch_size} pairs, max_length {args.max_length}, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, {args.steps} timed steps after {args.warmup} warm-up "
          f"(x{args.repeats}); matmul ceiling {ceiling / 1e9:.1f} GFLOP/s (start) / {end_ceiling / 1e9:.1f} (end), "
          f"MFU against the larger")
    header = (f"{'config':<17}{'step s (med)':>13}{'pairs/s':>9}{'tokens/s':>10}{'MFU':>7}{'GFLOP/step':>12}"
              f"{'run tokens/step':>17}{'peak RSS MiB':>14}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['config']:<17}{r['median_step_s']:>13.2f}{r['pairs_per_s']:>9.3f}{r['tokens_per_s']:>10.1f}"
              f"{100 * r['mfu']:>6.1f}%{r['model_gflop_per_step']:>12.0f}{r['tokens_run_per_step']:>17.0f}"
              f"{r['peak_rss_mib']:>14.0f}")
    by_name = {r["config"]: r for r in results}
    ratios = {}
    for mode in ("full", "lora"):
        base = by_name.get(f"trl-{mode}")
        if base is None:
            continue
        for ours in (f"bt-{mode}", f"grm-{mode}", f"grm-padded-{mode}", f"bt-padded-{mode}"):
            if ours in by_name:
                ratios[f"{ours} / trl-{mode}"] = {
                    "pairs_per_s": by_name[ours]["pairs_per_s"] / base["pairs_per_s"],
                    "peak_rss": by_name[ours]["peak_rss_mib"] / base["peak_rss_mib"],
                }
    if "trl-top" in by_name:
        base = by_name["trl-top"]
        for ours in ("bt-top", "grm-top", "grm-top-nocache"):
            if ours in by_name:
                ratios[f"{ours} / trl-top"] = {
                    "pairs_per_s": by_name[ours]["pairs_per_s"] / base["pairs_per_s"],
                    "peak_rss": by_name[ours]["peak_rss_mib"] / base["peak_rss_mib"],
                }
    if "score-packed" in by_name and "score-padded" in by_name:
        packed, padded = by_name["score-packed"], by_name["score-padded"]
        ratios["score-packed / score-padded"] = {
            "pairs_per_s": packed["pairs_per_s"] / padded["pairs_per_s"],
            "peak_rss": packed["peak_rss_mib"] / padded["peak_rss_mib"],
            "max_reward_difference": max(abs(a - b) for a, b in zip(raw_runs["score-packed"][0]["rewards"],
                                                                    raw_runs["score-padded"][0]["rewards"])),
        }
    if ratios:
        print("\nratios (pairs/s; peak RSS)")
        for key, value in ratios.items():
            extra = (f"   largest reward difference {value['max_reward_difference']:.1e}"
                     if "max_reward_difference" in value else "")
            print(f"  {key:<28} {value['pairs_per_s']:.2f}x   RSS {value['peak_rss']:.2f}x{extra}")
    trl_checks = [r for r in results if r["config"].startswith("trl")]
    for r in trl_checks:
        print(f"{r['config']}: TRL kept {r['trl_kept_pairs']} of {data_info['used']} pairs; its token ids equal "
              f"rewardlab's rendering for {r['token_ids_equal_rewardlab']} of them")
    info = {"versions": package_versions(("torch", "transformers", "trl", "peft", "accelerate")),
            "hardware": hardware(), "load_average_end": load_average()}
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("hardware: " + ", ".join(f"{k}: {v}" for k, v in info["hardware"].items()))
    print(f"load average at end: {info['load_average_end']}")
    if args.json_out:
        payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("child", "data_file", "out")},
                   "data": data_info, "model_shape": asdict(shape), "matmul_ceiling_flops": [ceiling, end_ceiling],
                   "results": results, "ratios": ratios, **info}
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
