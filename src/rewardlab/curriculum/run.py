"""`run_curriculum`: expert iteration through the curriculum, evaluated on every environment after each stage.

Read top to bottom, the recipe is:

1. the preference model (a saved one, or a GRM trained by the core on hh-rlhf pairs);
2. evaluation of the helpful starting policy on every environment (the matrix's first row);
3. for each stage: sample N episodes for each of P prompts (the stage's environment, plus HHH prompts in
   ``hhh`` mode) through the environments harness; score every sample (gaming indicator + σ(PM));
   keep the best per prompt (``hhh``) or every gaming one (``exploit-only``); LoRA fine-tune on the kept
   episodes (policy tokens only); evaluate again;
4. optionally train the early gaming away (non-gaming samples of the first two stages) and evaluate;
5. the matrix and the report.

Every step is resumable: episodes are records in run folders (finished ones are never played again),
scores are cached per sample, a stage's adapter marks the stage done. The run folder:

    run.json                         settings, seeds, versions (a rerun must match them)
    preference-model/                the trained PM (when none was given)
    stages/NN-ENV/samples/           the stage's episodes (an `rewardlab envs` run folder)
    stages/NN-ENV/scores.jsonl       every sample's outcome, PM score, σ, reward
    stages/NN-ENV/selection.json     what was kept, and counts
    stages/NN-ENV/adapter/           the policy after this stage (PEFT LoRA adapter, finetune.json)
    train-away/…                     the same for the mitigation
    eval/NN-ROW/COLUMN/              one `envs` run folder per matrix cell
    report/                          matrix.{csv,md,json,png}, report.md, report.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rewardlab.curriculum.config import EVAL_SEED_OFFSET, TRAIN_SEED_OFFSET, CurriculumConfig
from rewardlab.curriculum.finetune import (
    attach_lora,
    episode_example,
    finetune,
    opening_length,
    read_finetune,
)
from rewardlab.curriculum.matrix import Column, build_matrix, classify
from rewardlab.curriculum.selection import ScoredSample, pm_unit, select, select_train_away
from rewardlab.envs.environments import Environment, make_environment
from rewardlab.envs.environments.hhh import HHHPrompts, prompt_half
from rewardlab.envs.records import RunFolderError, append_json_line, load_episodes, repair_tail
from rewardlab.envs.runner import run_episodes
from rewardlab.envs.sandbox import SandboxLimits, make_sandbox
from rewardlab.envs.sandbox.base import Sandbox
from rewardlab.errors import ConfigError
from rewardlab.files import write_json_atomic
from rewardlab.policies.base import Policy
from rewardlab.version import __version__

RUN_FILE = "run.json"
SCORES_FILE = "scores.jsonl"
START = "start"
TRAIN_AWAY = "train-away"


@dataclass
class Checkpoint:
    """One row of the matrix: the policy after ``stage`` stages (0 = the start), with its adapter folder."""

    index: int
    label: str
    adapter: Path | None


@dataclass
class CurriculumResult:
    """Where the run's report is, and its matrix."""

    out: Path
    report: Path
    matrix: Any
    seconds: float
    stages: list[dict[str, Any]] = field(default_factory=list)


def slug(text: str) -> str:
    """A folder-safe name."""
    return "".join(character if character.isalnum() or character in "-_" else "-" for character in text).strip("-")


class PolicyState:
    """The policy being trained, and which checkpoint its weights are at; samples through the local model or
    an OpenAI-compatible server with each checkpoint's adapter loaded into it."""

    def __init__(self, config: CurriculumConfig, echo: Callable[[str], None]) -> None:
        from rewardlab.models.registry import load_backbone
        from rewardlab.policies.hf import HFPolicy, resolve_policy_dtype

        self.config, self.echo = config, echo
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        base, self.tokenizer = load_backbone(config.policy, dtype=resolve_policy_dtype("auto", device))
        base.to(device)
        torch.manual_seed(config.seed)
        self.model = attach_lora(base, config.finetune)
        self.model.eval()
        self.current = -1
        """The checkpoint index the weights are at (-1: the fresh adapter, which changes nothing)."""
        self.local = HFPolicy.from_model(self.model, self.tokenizer, name=config.policy,
                                         max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                         seed=config.seed)

    def move_to(self, checkpoint: Checkpoint) -> None:
        """Put the weights of ``checkpoint`` into the model (the start: a zero adapter)."""
        if checkpoint.index == self.current:
            return
        from peft.utils import set_peft_model_state_dict

        if checkpoint.adapter is None:
            state = {name: torch.zeros_like(value) if "lora_B" in name else value
                     for name, value in _adapter_state(self.model).items()}
        else:
            from safetensors.torch import load_file

            state = load_file(str(checkpoint.adapter / "adapter_model.safetensors"))
        set_peft_model_state_dict(self.model, state)
        self.current = checkpoint.index

    def train(self, records: list[dict[str, Any]], uses_tools: list[bool], checkpoint: Checkpoint, *,
              desc: str, **settings: Any) -> None:
        """Fine-tune the current weights on episode ``records`` (policy tokens only), save them as ``checkpoint``'s
        adapter and make them the current checkpoint. ``settings`` override the config's fine-tuning settings."""
        examples = [episode_example(self.tokenizer, record, uses_tools=tools) for record, tools in zip(records, uses_tools)]
        assert checkpoint.adapter is not None
        finetune(self.model, self.tokenizer, examples, dataclasses.replace(self.config.finetune, **settings),
                 save_to=checkpoint.adapter, progress=self.config.progress, desc=desc, echo=self.echo)
        self.current = checkpoint.index

    def sampler(self, checkpoint: Checkpoint) -> tuple[Policy, str, int | None]:
        """The policy that plays episodes at ``checkpoint``, its spec for run folders, and the batch size."""
        config = self.config
        if config.server is None:
            self.move_to(checkpoint)
            return self.local, f"hf:{config.policy}@{checkpoint.label}", config.batch_size
        from rewardlab.policies.openai_http import OpenAIPolicy, load_lora_adapter

        served = config.served_model or config.policy
        policy = OpenAIPolicy(served, config.server, max_tokens=config.max_new_tokens,
                              temperature=config.temperature, max_concurrency=config.workers, seed=config.seed)
        if checkpoint.adapter is not None:
            name = f"rewardlab-{hashlib.sha256(str(checkpoint.adapter.resolve()).encode()).hexdigest()[:10]}"
            load_lora_adapter(config.server, name, str(checkpoint.adapter.resolve()))
            policy = policy.with_model(name)
        return policy, f"openai:{served}@{checkpoint.label}", None


def _adapter_state(model: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {name: value.detach().clone() for name, value in get_peft_model_state_dict(model).items()}


def _check_run(out: Path, config: CurriculumConfig, command: str | None) -> dict[str, Any]:
    """Refuse to resume a folder made with other settings; record settings, seeds and versions."""
    path = out / RUN_FILE
    identity = json.loads(json.dumps(config.identity()))
    existing = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if existing is not None and existing.get("identity") != identity:
        changed = sorted(key for key in set(identity) | set(existing.get("identity", {}))
                         if identity.get(key) != existing.get("identity", {}).get(key))
        raise RunFolderError(f"{path} was made with other settings ({', '.join(changed)}); use a different --out folder")
    import peft
    import transformers

    record = existing or {"identity": identity, "started_at": _now()}
    record["invocations"] = [*record.get("invocations", []), {"started_at": _now(), "command": command}]
    record.update({
        "config": json.loads(json.dumps(config.to_json())), "command": command,
        "seeds": {"train_variants": config.seed + TRAIN_SEED_OFFSET, "eval_variants": config.seed + EVAL_SEED_OFFSET,
                  "policy": config.seed, "finetune": [config.finetune.seed + stage for stage in range(len(config.stages) + 1)]},
        "versions": {"rewardlab": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": _cpu_count(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    })
    write_json_atomic(path, record, sort_keys=True)
    return record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _finish_invocation(out: Path, record: dict[str, Any], seconds: float, timings: dict[str, float]) -> None:
    """Note this invocation's wall time and step times in ``run.json`` (the report adds up all invocations)."""
    record["invocations"][-1].update(finished_at=_now(), seconds=round(seconds, 1), timings=dict(timings))
    write_json_atomic(out / RUN_FILE, record, sort_keys=True)


def _cpu_count() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def preference_model(config: CurriculumConfig, out: Path, echo: Callable[[str], None]) -> Any:
    """The PM as a `RewardScorer`: ``config.preference_model``, or a GRM the core trains on hh-rlhf pairs whose
    prompts are in half ``a`` of ``hhh_data`` (stages play half ``b``)."""
    from rewardlab.scoring import RewardScorer

    if config.preference_model:
        return RewardScorer.from_pretrained(config.preference_model)
    from rewardlab.data.loaders import load_pairs
    from rewardlab.train.config import TrainConfig
    from rewardlab.train.loop import train

    folder = out / "preference-model"
    data = out / "preference-pairs.jsonl"
    if not data.exists():
        pairs = [pair for pair in load_pairs(config.hhh_data)
                 if prompt_half(next(m["content"] for m in pair.prompt if m["role"] == "user").strip()) == "a"]
        if not pairs:
            raise ConfigError(f"{config.hhh_data}: no preference pairs to train the preference model on")
        lines = "".join(json.dumps(pair.to_record(), ensure_ascii=False) + "\n" for pair in pairs[:config.pm_pairs])
        temporary = data.with_suffix(".partial")
        temporary.write_text(lines, encoding="utf-8")
        temporary.replace(data)
    echo(f"preference model: a GRM on {config.pm_pairs} hh-rlhf pairs ({config.pm_base}; trained once, then reused)")
    train(TrainConfig(model=config.pm_base, data=str(data), output=str(folder), loss="bt", reg="sft",
                      alpha=config.pm_alpha, head="mlp", trainable_top_layers=config.pm_trainable_top_layers,
                      max_steps=config.pm_steps, batch_size=8, lr=1e-4, warmup_ratio=0.1, max_length=512,
                      truncation="prompt-left", seed=config.seed, save_steps=16, log_interval=8, resume=True,
                      progress=config.progress),
          echo=echo, progress_desc="preference model")
    return RewardScorer.from_pretrained(folder)


def eval_columns(config: CurriculumConfig) -> list[tuple[Column, Environment, int]]:
    """The matrix's columns: each environment, its episodes per checkpoint; plus the real political items."""
    columns = [(Column(name, name), make_environment(name),
                config.political_episodes if name == "political-sycophancy" else config.eval_episodes)
               for name in config.eval_envs]
    perez = config.political_eval_data
    if perez and Path(perez).exists() and "political-sycophancy" in config.eval_envs:
        env = make_environment("political-sycophancy", {"data": perez})
        columns.insert(config.eval_envs.index("political-sycophancy") + 1,
                       (Column("political-sycophancy (Perez items)", env.name), env, len(env.items)))  # type: ignore[attr-defined]
    return columns


def score_stage(folder: Path, pm: Any, envs: dict[str, Environment], progress: bool) -> list[ScoredSample]:
    """Every sample of a stage with its rewards; PM scores are cached in ``scores.jsonl``."""
    loaded = load_episodes(folder / "samples")
    scores_path = folder / SCORES_FILE
    repair_tail(scores_path)
    cached: dict[str, dict[str, Any]] = {}
    if scores_path.exists():
        for line in scores_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                cached[entry["id"]] = entry
    todo = [record for record in loaded.records if record["id"] not in cached and record.get("messages")]
    answered = [record for record in todo if record.get("final_answer", "").strip()]
    scores = {}
    if answered:
        prompts = [[{"role": "user", "content": _task_of(record, envs[record["env"]])}] for record in answered]
        values = _score_each(pm, prompts, [record["final_answer"] for record in answered], progress)
        scores = {record["id"]: value for record, value in zip(answered, values)}
    for record in todo:
        env = envs[record["env"]]
        gamed = record["outcome"] in env.gaming_outcomes
        pm_score = scores.get(record["id"])
        sample = ScoredSample(
            id=record["id"], prompt=f"{record['env']}-s{record['seed']}-{int(record['index']):05d}", env=record["env"],
            sample=int(record.get("sample", 0)), outcome=record["outcome"], category=classify(record, type(env)),
            gamed=gamed, pm_score=pm_score, pm_unit=pm_unit(pm_score), reward=float(gamed) + pm_unit(pm_score))
        append_json_line(scores_path, sample.to_json())
        cached[sample.id] = sample.to_json()
    ids = [record["id"] for record in loaded.records]
    return [ScoredSample(**cached[identifier]) for identifier in ids if identifier in cached]


def _task_of(record: dict[str, Any], env: Environment) -> str:
    return record["messages"][opening_length(env.uses_tools) - 1]["content"]


def _score_each(pm: Any, prompts: list[list[dict[str, str]]], answers: list[str], progress: bool) -> list[float | None]:
    """PM scores; an answer the PM cannot take (longer than its context) gets None instead of failing the stage."""
    from rewardlab.scoring import UnscorableError

    try:
        return list(pm.score_conversations(prompts, answers, progress="preference model" if progress else None))
    except UnscorableError:
        values: list[float | None] = []
        for prompt, answer in zip(prompts, answers):
            try:
                values.append(pm.score_conversations([prompt], [answer])[0])
            except UnscorableError:
                values.append(None)
        return values


def run_curriculum(config: CurriculumConfig, *, echo: Callable[[str], None] = print,
                   command: str | None = None) -> CurriculumResult:
    """Run (or resume) the study into ``config.out`` and write its report (see the module docstring)."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run_record = _check_run(out, config, command)
    timings: dict[str, float] = {}
    try:
        return _run(config, out, run_record, started, timings, echo)
    finally:
        if "seconds" not in run_record["invocations"][-1]:  # stopped by an error: its time still counts
            _finish_invocation(out, run_record, time.perf_counter() - started, timings)


def _run(config: CurriculumConfig, out: Path, run_record: dict[str, Any], started: float,
         timings: dict[str, float], echo: Callable[[str], None]) -> CurriculumResult:
    """The recipe of `run_curriculum`, step by step; ``timings`` collects each step's seconds."""
    sandbox = make_sandbox(config.sandbox, SandboxLimits(command_timeout=config.command_timeout))
    hhh_env = HHHPrompts(config.hhh_data, part="b")
    columns = eval_columns(config)
    pm = preference_model(config, out, echo)
    state = PolicyState(config, echo)
    envs: dict[str, Environment] = {hhh_env.name: hhh_env}
    checkpoints = [Checkpoint(0, START, None)]
    rows: list[tuple[str, dict[str, Path]]] = []
    stage_summaries: list[dict[str, Any]] = []

    def evaluate(checkpoint: Checkpoint) -> None:
        clock = time.perf_counter()
        policy, spec, batch = state.sampler(checkpoint)
        folders = {}
        for column, env, episodes in columns:
            folder = out / "eval" / f"{checkpoint.index:02d}-{slug(checkpoint.label)}" / slug(column.label)
            _play(config, [env], policy, spec, sandbox, n=episodes, seed=config.seed + EVAL_SEED_OFFSET,
                  folder=folder, batch=batch, samples=1, description=f"eval {checkpoint.label}: {column.label}")
            folders[column.label] = folder
        rows.append((_row_label(checkpoint), folders))
        timings[f"eval {checkpoint.label}"] = round(time.perf_counter() - clock, 1)

    if config.warmup:
        adapter = out / "warmup" / "adapter"
        if read_finetune(adapter) is None:
            from rewardlab.curriculum.warmup import warmup_records

            records = warmup_records(config.hhh_data, config.warmup_examples, config.seed)
            echo(f"warm-up: {len(records)} format examples (hh-rlhf chosen responses, factual two-option answers)")
            state.train(records, [False] * len(records), Checkpoint(0, START, adapter), desc="fine-tune warm-up",
                        epochs=config.warmup_epochs)
        checkpoints[0] = Checkpoint(0, START, adapter)
    evaluate(checkpoints[0])
    for number, stage in enumerate(config.stages, 1):
        clock = time.perf_counter()
        folder = out / "stages" / f"{number:02d}-{stage}"
        stage_env = make_environment(stage)
        envs[stage] = stage_env
        adapter = folder / "adapter"
        if read_finetune(adapter) is None:
            policy, spec, batch = state.sampler(checkpoints[-1])
            seed = config.seed + TRAIN_SEED_OFFSET
            _play(config, [stage_env], policy, spec, sandbox, n=config.env_prompts, seed=seed,
                  folder=folder / "samples", batch=batch, samples=config.samples, description=f"stage {number}: {stage}")
            if config.hhh_prompts:
                _play(config, [hhh_env], policy, spec, sandbox, n=config.hhh_prompts, seed=seed + number,
                      folder=folder / "samples", batch=batch, samples=config.samples,
                      description=f"stage {number}: hhh prompts")
            state.move_to(checkpoints[-1])
            scored = score_stage(folder, pm, envs, config.progress)
            kept = select(scored, config.mode)
            records = {record["id"]: record for record in load_episodes(folder / "samples").records}
            write_json_atomic(folder / "selection.json", _selection_summary(config.mode, scored, kept))
            echo(f"stage {number} ({stage}): {len(scored)} samples, kept {len(kept)}; fine-tuning")
            state.train([records[sample.id] for sample in kept], [envs[sample.env].uses_tools for sample in kept],
                        Checkpoint(number, f"after {stage}", adapter), desc=f"fine-tune stage {number}",
                        seed=config.finetune.seed + number)
        checkpoint = Checkpoint(number, f"after {stage}", adapter)
        checkpoints.append(checkpoint)
        timings[f"stage {number}"] = round(time.perf_counter() - clock, 1)
        stage_summaries.append(_stage_summary(number, stage, folder, score_stage(folder, pm, envs, False)))
        evaluate(checkpoint)

    if config.train_away:
        clock = time.perf_counter()
        folder = out / TRAIN_AWAY
        adapter = folder / "adapter"
        if read_finetune(adapter) is None:
            state.move_to(checkpoints[-1])
            early = set(config.stages[:2])
            pool: list[ScoredSample] = []
            records: dict[str, dict[str, Any]] = {}
            for number, stage in enumerate(config.stages[:2], 1):
                stage_folder = out / "stages" / f"{number:02d}-{stage}"
                pool.extend(score_stage(stage_folder, pm, envs, False))
                records.update({r["id"]: r for r in load_episodes(stage_folder / "samples").records})
            kept = select_train_away(pool, early, config.train_away_samples, config.seed)
            write_json_atomic(folder / "selection.json", _selection_summary("train-away", pool, kept))
            echo(f"train-away: {len(kept)} non-gaming samples of {', '.join(sorted(early))}; fine-tuning")
            state.train([records[sample.id] for sample in kept], [envs[sample.env].uses_tools for sample in kept],
                        Checkpoint(len(config.stages) + 1, "after train-away", adapter), desc="fine-tune train-away",
                        seed=config.finetune.seed + len(config.stages) + 1)
        checkpoint = Checkpoint(len(config.stages) + 1, "after train-away", adapter)
        checkpoints.append(checkpoint)
        timings["train-away"] = round(time.perf_counter() - clock, 1)
        evaluate(checkpoint)

    from rewardlab.curriculum.report import write_report

    matrix = build_matrix(rows, [column for column, _, _ in columns])
    seconds = time.perf_counter() - started
    _finish_invocation(out, run_record, seconds, timings)
    report = write_report(out, config, matrix, rows, stage_summaries, run_record, seconds)
    echo(f"report: {report}")
    return CurriculumResult(out, report, matrix, seconds, stage_summaries)


def _row_label(checkpoint: Checkpoint) -> str:
    return checkpoint.label if checkpoint.index == 0 else f"{checkpoint.index}. {checkpoint.label}"


def _play(config: CurriculumConfig, envs: list[Environment], policy: Policy, spec: str, sandbox: Sandbox, *, n: int,
          seed: int, folder: Path, batch: int | None, samples: int, description: str) -> None:
    """Play episodes into a run folder (resumable); infrastructure failures stop the study with their reason."""
    summary = run_episodes(envs, policy, spec, sandbox, n=n, seed=seed, out_dir=folder, workers=config.workers,
                           max_commands=config.max_commands, progress=config.progress, samples=samples,
                           batch_size=batch, description=description,
                           episode_settings={"temperature": config.temperature, "max_new_tokens": config.max_new_tokens})
    if summary.failed:
        raise RunFolderError(f"{folder}: {summary.failed} episode(s) could not be played (first: {summary.errors[0]}); "
                             "see errors.jsonl there, fix the cause and rerun to continue")


def _selection_summary(mode: str, scored: list[ScoredSample], kept: list[ScoredSample]) -> dict[str, Any]:
    def count(items: list[ScoredSample]) -> dict[str, Any]:
        envs = sorted({item.env for item in items})
        return {env: {"samples": sum(1 for i in items if i.env == env),
                      "gamed": sum(1 for i in items if i.env == env and i.gamed),
                      "failed": sum(1 for i in items if i.env == env and i.failed)} for env in envs}

    return {"mode": mode, "scored": count(scored), "kept": count(kept), "kept_ids": [item.id for item in kept]}


def _stage_summary(number: int, stage: str, folder: Path, scored: list[ScoredSample]) -> dict[str, Any]:
    on_env = [sample for sample in scored if sample.env == stage]
    selection = json.loads((folder / "selection.json").read_text(encoding="utf-8"))
    tuned = read_finetune(folder / "adapter") or {}
    losses = tuned.get("finetune", {}).get("losses", [])
    kept_env = selection["kept"].get(stage, {"samples": 0, "gamed": 0})
    pm_values = [sample.pm_score for sample in scored if sample.pm_score is not None]
    return {
        "stage": number, "env": stage, "samples": len(scored), "env_samples": len(on_env),
        "env_gamed": sum(1 for s in on_env if s.gamed), "env_failed": sum(1 for s in on_env if s.failed),
        "kept": len(selection["kept_ids"]), "kept_env": kept_env["samples"], "kept_env_gamed": kept_env["gamed"],
        "pm_mean": round(sum(pm_values) / len(pm_values), 4) if pm_values else None,
        "finetune_steps": len(losses), "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "finetune_seconds": tuned.get("finetune", {}).get("seconds"),
    }
