"""RL over-optimization: a policy optimized against each proxy with TRL, the gold watched throughout.

Readable top to bottom (`run_rl`, one proxy at a time in `run_rl_proxy`):

1. the policy (LoRA on a causal LM by default) and TRL's `GRPOTrainer` (or `RLOOTrainer`), whose reward is
   the proxy through `rewardlab.integrations.trl.RewardFunction`, plus the gold with weight 0 so TRL logs the
   gold of its training batches beside the proxy's (``rewards/gold/mean``);
2. at step 0 and every ``eval_every`` steps, `HeldoutProbe` draws ``eval_samples`` responses to each held-out
   prompt through the policy interface (`HFPolicy.sample_tokens` on the live model, seeded per sample and the
   same seeds at every step), scores them by proxy and gold, and estimates KL(π ‖ π_init) from the sampled
   sequences' log-probabilities under the policy and under the initial policy (the LoRA adapter disabled);
3. everything is kept in the run folder: ``evals.jsonl`` (one record per evaluation), ``generations.jsonl``
   (every evaluated response with its scores and log-probabilities), ``train_log.json`` (TRL's per-step
   history, its own KL estimate included) and checkpoints every ``eval_every`` steps. A rerun resumes from
   the last checkpoint, drops log records after it, and goes on; a finished run is not trained again.

GRPO is the default because its advantages are standardized within each prompt's group of completions: the
proxies' scales (logits of differently trained models) then do not change the optimization, so recipes
compare at equal settings. With ``beta`` > 0 TRL adds its per-token KL penalty and logs it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.envs.records import append_json_line, json_safe, repair_tail
from rewardlab.errors import ConfigError
from rewardlab.files import write_json_atomic, write_text_atomic
from rewardlab.integrations.trl import RewardFunction
from rewardlab.machine import describe_machine
from rewardlab.overopt.config import RLConfig
from rewardlab.overopt.gold import detect_features, feature_shares
from rewardlab.overopt.proxies import label_folder
from rewardlab.overopt.samples import BonPrompt

RUN_FILE, EVALS_FILE, GENERATIONS_FILE, TRAIN_LOG_FILE = "run.json", "evals.jsonl", "generations.jsonl", "train_log.json"
CHECKPOINTS = "checkpoints"


@dataclass
class RLRun:
    """One finished (or resumed-and-finished) run against one proxy: its held-out evaluations and TRL's log."""

    label: str
    folder: Path
    evals: list[dict[str, Any]]
    train_log: list[dict[str, Any]]
    wall_time_s: float


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    se = float(array.std(ddof=1) / math.sqrt(array.size)) if array.size > 1 else math.nan
    return float(array.mean()), se


def trl_k3(logp: np.ndarray, ref_logp: np.ndarray) -> float:
    """TRL's KL estimate of one sampled sequence: the mean over its tokens of exp(r) − r − 1, r = log π_ref − log π."""
    if logp.size == 0:
        return 0.0
    ratio = ref_logp - logp
    return float(np.mean(np.exp(ratio) - ratio - 1.0))


class GoldReward:
    """The gold as a TRL reward function (given weight 0: logged beside the proxy, never optimized)."""

    __name__ = "gold"

    def __init__(self, gold: Any, prompts: Sequence[BonPrompt]) -> None:
        self.gold = gold
        self.by_id = {p.prompt_id: p for p in prompts}

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], prompt_id: Sequence[str],
                 **_: Any) -> list[float]:
        from rewardlab.integrations.trl import completion_text

        return [float(v) for v in self.gold.score([self.by_id[i] for i in prompt_id],
                                                  [completion_text(c, n) for n, c in enumerate(completions)])]


class HeldoutProbe:
    """Held-out evaluation of the live policy: proxy, gold, sampled KL to the initial policy, length, features."""

    def __init__(self, config: RLConfig, prompts: Sequence[BonPrompt], proxy: Any, gold: Any) -> None:
        self.config = config
        self.prompts = list(prompts)
        self.proxy = proxy
        self.gold = gold
        self.settings = config.eval_sampling()

    def __call__(self, model: Any, tokenizer: Any, step: int, reference: Any = None) -> tuple[dict[str, Any],
                                                                                           list[dict[str, Any]]]:
        """The evaluation record at ``step`` and its generations; ``reference`` is a frozen initial policy model
        (None: ``model`` is a PEFT model whose adapter is disabled for the reference)."""
        from rewardlab.policies.hf import HFPolicy

        started = time.perf_counter()
        was_training = model.training
        model.eval()
        policy = HFPolicy.from_model(model, tokenizer, name=self.config.policy,
                                     max_new_tokens=self.config.max_new_tokens)
        ref_policy = HFPolicy.from_model(reference, tokenizer) if reference is not None else None
        rows: list[dict[str, Any]] = []
        messages = [list(p.messages) for p in self.prompts]
        try:
            sampled = [s.tokens for s in policy.sample_tokens_many(messages, self.config.eval_samples, self.settings)]
            logp = policy.continuation_token_logprobs(messages, sampled, self.settings)
            if ref_policy is not None:
                ref_logp = ref_policy.continuation_token_logprobs(messages, sampled, self.settings)
            else:
                with model.disable_adapter():
                    ref_logp = policy.continuation_token_logprobs(messages, sampled, self.settings)
        finally:
            model.train(was_training)
        for prompt, samples, lps, ref_lps in zip(self.prompts, sampled, logp, ref_logp):
            for index, tokens in enumerate(samples):
                mine, initial = np.array(lps[index]), np.array(ref_lps[index])
                rows.append({"step": step, "prompt_id": prompt.prompt_id, "sample": index,
                             "response": tokenizer.decode(tokens, skip_special_tokens=True),
                             "tokens": len(tokens), "logp": float(mine.sum()), "ref_logp": float(initial.sum()),
                             "k3_per_token": trl_k3(mine, initial)})
        by_id = {p.prompt_id: p for p in self.prompts}
        prompts = [by_id[r["prompt_id"]] for r in rows]
        responses = [r["response"] for r in rows]
        proxy_scores = self.proxy.score(prompts, responses)
        gold_scores = self.gold.score(prompts, responses)
        for row, proxy_value, gold_value in zip(rows, proxy_scores, gold_scores):
            row.update(proxy=float(proxy_value), gold=float(gold_value), kl=row["logp"] - row["ref_logp"],
                       features=sorted(detect_features(row["response"])))
        record: dict[str, Any] = {"step": step}
        for key in ("proxy", "gold", "kl"):
            record[key], record[f"{key}_se"] = _mean_se([r[key] for r in rows])
        record["kl_k3_per_token"] = float(np.mean([r["k3_per_token"] for r in rows]))
        record["length_tokens"] = float(np.mean([r["tokens"] for r in rows]))
        record["truncated"] = float(np.mean([r["tokens"] >= self.config.max_new_tokens for r in rows]))
        record["features"] = feature_shares(responses)
        record["samples"] = len(rows)
        record["wall_s"] = time.perf_counter() - started
        return record, rows


class RunLog:
    """The run folder's logs: evaluation records and generations, appended line by line (fsync'd)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.evals_path = folder / EVALS_FILE
        self.generations_path = folder / GENERATIONS_FILE

    def evals(self) -> list[dict[str, Any]]:
        """The evaluation records, in step order, one per step (a torn last line is cut off first)."""
        return read_log_lines(self.evals_path)

    def keep_until(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run evaluates those steps again)."""
        for path in (self.evals_path, self.generations_path):
            records = read_log_lines(path)
            kept = [r for r in records if r.get("step", math.inf) <= step]
            if len(kept) != len(records):
                write_text_atomic(path, "".join(json.dumps(json_safe(r), ensure_ascii=False) + "\n" for r in kept))

    def add(self, record: dict[str, Any], generations: Sequence[dict[str, Any]]) -> None:
        """Generations first, then the record: a record in the log always has its generations."""
        for row in generations:
            append_json_line(self.generations_path, row)
        append_json_line(self.evals_path, record)


def read_log_lines(path: Path) -> list[dict[str, Any]]:
    repair_tail(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a torn line of an older crash: its step is evaluated again
    return records


def _last_checkpoint(folder: Path) -> tuple[Path | None, int]:
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None, 0
    found = get_last_checkpoint(str(folder))
    return (Path(found), int(Path(found).name.rsplit("-", 1)[-1])) if found else (None, 0)


def _check_run_folder(folder: Path, identity: dict[str, Any]) -> None:
    path = folder / RUN_FILE
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8")).get("identity")
        if previous != json.loads(json.dumps(identity)):
            changed = sorted(k for k in identity if (previous or {}).get(k) != identity[k])
            raise ConfigError(f"{folder} holds an RL run with other settings ({', '.join(changed) or 'format'}); "
                              "use another --out folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"identity": identity, "machine": describe_machine(("torch", "transformers", "trl", "peft"))})


def _trainer_classes(name: str) -> tuple[Any, Any]:
    if name == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOConfig, RLOOTrainer
    from trl import GRPOConfig, GRPOTrainer

    return GRPOConfig, GRPOTrainer


def _trainer_args(config: RLConfig, folder: Path) -> Any:
    import torch

    args_class, _ = _trainer_classes(config.trainer)
    cuda = torch.cuda.is_available()
    return args_class(
        output_dir=str(folder / CHECKPOINTS), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        num_generations=config.num_generations, max_completion_length=config.max_new_tokens,
        temperature=config.temperature, learning_rate=config.lr, lr_scheduler_type="constant", beta=config.beta,
        reward_weights=[1.0, 0.0], logging_steps=1, save_strategy="steps", save_steps=config.eval_every,
        save_total_limit=2, report_to="none", seed=config.seed, bf16=config.bf16 and cuda, use_cpu=not cuda,
        disable_tqdm=not config.progress, use_vllm=config.use_vllm, dataloader_num_workers=0,
        gradient_checkpointing=config.gradient_checkpointing,
    )


def _dataset(prompts: Sequence[BonPrompt]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [dict(m) for m in p.messages], "prompt_id": p.prompt_id} for p in prompts])


def _saved_train_log(folder: Path, checkpoint: Path | None) -> list[dict[str, Any]]:
    """TRL's per-step log as last written, else as the last checkpoint holds it."""
    for path, key in ((folder / TRAIN_LOG_FILE, None), (checkpoint and checkpoint / "trainer_state.json", "log_history")):
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            return list(data if key is None else data.get(key, []))
    return []


def _train_log(trainer: Any) -> list[dict[str, Any]]:
    return [json_safe({k: v for k, v in entry.items()}) for entry in trainer.state.log_history]


def run_rl_proxy(config: RLConfig, label: str, proxy: Any, gold: Any, train_prompts: Sequence[BonPrompt],
                 eval_prompts: Sequence[BonPrompt], folder: Path, *, echo: Callable[[str], None] = print) -> RLRun:
    """Optimize the policy against ``proxy`` (a scorer of `BonPrompt` responses) and log the held-out curve."""
    import torch
    from transformers import TrainerCallback

    from rewardlab.models.registry import load_backbone

    started = time.perf_counter()
    folder = Path(folder)
    _check_run_folder(folder, {**config.identity(), "proxy": label,
                               "train_prompts": [p.prompt_id for p in train_prompts],
                               "eval_prompts": [p.prompt_id for p in eval_prompts]})
    log = RunLog(folder)
    checkpoint, done_steps = _last_checkpoint(folder / CHECKPOINTS)
    log.keep_until(done_steps)
    logged = {r["step"] for r in log.evals()}
    if done_steps >= config.steps and config.steps in logged:
        echo(f"RL {label}: finished earlier ({done_steps} steps); nothing to train")
        return RLRun(label, folder, log.evals(), _saved_train_log(folder, checkpoint), time.perf_counter() - started)

    probe = HeldoutProbe(config, eval_prompts, proxy, gold)
    dtype = torch.bfloat16 if config.bf16 and torch.cuda.is_available() else None
    model, tokenizer = load_backbone(config.policy, dtype=dtype)
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    reward = RewardFunction(_ProxyConversations(proxy), name="proxy")
    _, trainer_class = _trainer_classes(config.trainer)
    holder: dict[str, Any] = {}

    class Probe(TrainerCallback):
        """Runs the held-out probe at step 0 and every ``eval_every`` steps, and keeps TRL's log on disk."""

        def _evaluate(self, state: Any) -> None:
            trainer = holder["trainer"]
            if state.global_step in logged or not trainer.accelerator.is_main_process:
                return
            unwrapped = trainer.accelerator.unwrap_model(trainer.model)
            record, rows = probe(unwrapped, tokenizer, state.global_step, reference=holder.get("reference"))
            log.add(record, rows)
            logged.add(state.global_step)
            echo(f"RL {label} step {state.global_step}: proxy {record['proxy']:.3f}, gold {record['gold']:.3f}, "
                 f"KL {record['kl']:.3f} nats, {record['length_tokens']:.1f} tokens ({record['wall_s']:.0f} s)")

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._evaluate(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % config.eval_every == 0 or state.global_step == config.steps:
                self._evaluate(state)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            write_json_atomic(folder / TRAIN_LOG_FILE, _train_log(holder["trainer"]))

    trainer = trainer_class(model=model, processing_class=tokenizer, reward_funcs=[reward, GoldReward(gold, train_prompts)],
                            args=_trainer_args(config, folder), train_dataset=_dataset(train_prompts),
                            peft_config=peft_config, callbacks=[Probe()])
    holder["trainer"] = trainer
    if not config.progress:  # quiet: TRL's per-step log stays in train_log.json instead of on the console
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if not config.lora:  # the initial policy: TRL's reference model when it made one (beta > 0), else a copy
        holder["reference"] = getattr(trainer, "ref_model", None) or load_backbone(config.policy, dtype=dtype)[0].to(
            trainer.accelerator.device).eval()
    if checkpoint is not None:
        echo(f"RL {label}: resuming from step {done_steps}")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    if config.steps not in logged:  # the last step was not a multiple of eval_every and training had ended
        Probe()._evaluate(trainer.state)
    train_log = _train_log(trainer)
    write_json_atomic(folder / TRAIN_LOG_FILE, train_log)
    return RLRun(label, folder, log.evals(), train_log, time.perf_counter() - started)


class _ProxyConversations:
    """A `BonPrompt` scorer seen as a scorer of bare chat messages (what `RewardFunction` calls)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer

    def score_conversations(self, messages: Sequence[Sequence[Mapping[str, str]]],
                            responses: Sequence[str]) -> list[float]:
        if callable(getattr(self.scorer, "score_conversations", None)):
            return self.scorer.score_conversations(messages, responses)
        return self.scorer.score([BonPrompt(f"conversation/{i}", tuple(m)) for i, m in enumerate(messages)],
                                 responses)


def run_rl(config: RLConfig, proxies: Mapping[str, Any], gold: Any, train_prompts: Sequence[BonPrompt],
           eval_prompts: Sequence[BonPrompt], *, echo: Callable[[str], None] = print) -> dict[str, RLRun]:
    """`run_rl_proxy` for every proxy (label → scorer), each in ``config.out/<label>``; resumable."""
    if not proxies:
        raise ConfigError("name at least one proxy to optimize against")
    if len(eval_prompts) < 1 or len(train_prompts) < config.prompts_per_step:
        raise ConfigError(f"RL needs at least {config.prompts_per_step} training prompts and 1 held-out prompt "
                          f"(got {len(train_prompts)} and {len(eval_prompts)})")
    out = Path(config.out)
    return {label: run_rl_proxy(config, label, proxy, gold, train_prompts, eval_prompts, out / label_folder(label),
                                echo=echo)
            for label, proxy in proxies.items()}
