"""`run_repro_grm`: train every method for every seed on one split, evaluate, and report.

Resumable at every level: the data split is written once; each (method, seed) model is trained by
the core trainer with ``resume=True`` (a finished model is skipped, an interrupted one continues
from its last checkpoint); each model's evaluation outcomes are cached per dataset; the report is
rebuilt from what is on disk. Rerunning the same command after an interruption finishes the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rewardlab.errors import ConfigError
from rewardlab.machine import describe_machine
from rewardlab.files import read_json_store, write_text_atomic
from rewardlab.repro.analysis import Analysis, analyze, model_name
from rewardlab.repro.config import ReproConfig, identity_differences
from rewardlab.repro.data import prepare_split
from rewardlab.repro.evaluation import ModelOutcomes, evaluate_model, plan_evaluation
from rewardlab.repro.methods import parse_methods
from rewardlab.repro.report import ReportContext, write_report

RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"
RUNS_FOLDER = "runs"


@dataclass
class ReproResult:
    """Paths of the written report files and the numbers behind them."""

    out_dir: Path
    paths: dict[str, Path]
    analysis: Analysis
    trained_now: list[str]
    evaluated_now: list[str]


def _check_identity(out_dir: Path, config: ReproConfig) -> None:
    """Record the settings that define the models; refuse a rerun that changes them."""
    run_file = out_dir / RUN_FILE
    current = {k: list(v) if isinstance(v, tuple) else v for k, v in config.identity().items()}
    if run_file.is_file():
        stored = json.loads(run_file.read_text(encoding="utf-8"))
        diffs = identity_differences(stored.get("identity", {}), current)
        if diffs:
            raise ConfigError(
                f"{out_dir} holds a run with other settings ({'; '.join(diffs)}); rerun with the same settings to "
                "resume it, or choose another --out"
            )
        return
    write_text_atomic(run_file, json.dumps({"identity": current}, indent=2) + "\n")


class Progress:
    """Per-model training and evaluation seconds and per-invocation wall times, kept on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = read_json_store(path) or {"sessions": [], "timings": {}}
        self.began = time.perf_counter()
        self.data["sessions"].append({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": 0.0})
        self.save()

    def add(self, model: str, stage: str, seconds: float) -> None:
        timing = self.data["timings"].setdefault(model, {})
        timing[stage] = round(timing.get(stage, 0.0) + seconds, 1)
        self.save()

    @property
    def session_wall_s(self) -> float:
        return time.perf_counter() - self.began

    @property
    def total_wall_s(self) -> float:
        return sum(s["wall_s"] for s in self.data["sessions"])

    def save(self) -> None:
        self.data["sessions"][-1]["wall_s"] = round(self.session_wall_s, 1)
        write_text_atomic(self.path, json.dumps(self.data, indent=2) + "\n")


def environment() -> dict[str, str]:
    """Versions and hardware for the report."""
    return describe_machine(("torch", "transformers", "peft"))


def _is_finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() and (run_dir / "rewardlab_config.json").is_file()


@dataclass
class Pace:
    """Training and evaluation seconds measured in this invocation, for a time-left estimate."""

    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)

    def remaining(self, models_left: int, trainings_left: int) -> str:
        if not models_left:
            return "all models done"
        if (trainings_left and not self.train_seconds) or not self.eval_seconds:
            return f"{models_left} models left"
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        estimate = trainings_left * mean(self.train_seconds) + models_left * mean(self.eval_seconds)
        return f"{models_left} models left, about {estimate / 60:.0f} min at this invocation's pace"


def run_repro_grm(
    config: ReproConfig,
    *,
    echo: Callable[[str], None] = print,
    progress: bool = True,
    after_model: Callable[[str], None] | None = None,
) -> ReproResult:
    """Run (or finish) the whole experiment and write ``report.md``, ``report.json`` and ``accuracy.png``.

    ``after_model(name)`` is called once a model is trained and evaluated. ``config.threads``
    applies for the duration of the call.
    """
    import torch

    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, echo, progress, after_model)
    finally:
        torch.set_num_threads(previous_threads)


def _run(
    config: ReproConfig, echo: Callable[[str], None], progress: bool, after_model: Callable[[str], None] | None
) -> ReproResult:
    from rewardlab.models.registry import load_tokenizer
    from rewardlab.models.frozen_cache import FrozenLayerCache
    from rewardlab.repro.lm_check import BASE_MODEL, held_out_lm_nll
    from rewardlab.train.loop import train

    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_identity(out_dir, config)
    tracker = Progress(out_dir / PROGRESS_FILE)
    methods = parse_methods(list(config.methods))

    split = prepare_split(config, out_dir, load_tokenizer(config.model), echo=echo)
    not_applicable: dict[str, str] = {}
    note = split.margin_note()
    for method in methods:
        if method.needs_margins and note is not None:
            not_applicable[method.name] = note
            echo(f"{method.label}: {note}; not trained")
    plan = plan_evaluation(
        split, config.suite_names, data_root=config.data_root, limit=config.eval_limit, seed=config.data_seed
    )
    for name, reason in plan.excluded.items():
        echo(f"evaluation: {name} left out: {reason}")
    echo(
        f"evaluation: in-distribution {len(plan.in_distribution.items)} pairs; out-of-distribution "
        + (", ".join(f"{d.name} {len(d.items)}" for d in plan.out_of_distribution) or "none")
    )

    todo = [(m, s) for m in methods if m.name not in not_applicable for s in config.seeds]
    run_dirs = {(m.name, s): out_dir / RUNS_FOLDER / m.name / f"seed-{s}" for m, s in todo}
    unfinished = lambda pending: sum(not _is_finished(run_dirs[(m.name, s)]) for m, s in pending)  # noqa: E731
    echo(f"{len(todo)} models ({unfinished(todo)} still to train); {config.backbone_description()}")

    outcomes: dict[str, ModelOutcomes] = {}
    trained_now: list[str] = []
    evaluated_now: list[str] = []
    pace = Pace()
    # Every model trains on the same pairs and scores the same conversations from the same frozen base:
    # the frozen layers run once per pair and once per conversation.
    frozen_cache = FrozenLayerCache()
    measure_nll = lambda name, model_dir: held_out_lm_nll(  # noqa: E731
        name, model_dir, base_model=config.model, heldout_file=split.heldout_file, max_length=config.max_length,
        trainable_top_layers=None if config.lora else config.trainable_top_layers, out_dir=out_dir,
        device=config.device, frozen_cache=frozen_cache)
    lm_nll = {BASE_MODEL: measure_nll(BASE_MODEL, None)}
    echo(f"language-model check: the base model's NLL of the held-out chosen responses is "
         f"{lm_nll[BASE_MODEL]['nll_per_token']:.4f} nat/token")
    for number, (method, seed) in enumerate(todo, start=1):
        began = time.perf_counter()
        name, run_dir = model_name(method.name, seed), run_dirs[(method.name, seed)]
        echo(f"\n[{number}/{len(todo)}] {name}: {method.describe(config.alpha, config.beta, config.label_smoothing)}, "
             f"{method.head} head")
        if _is_finished(run_dir):
            echo(f"{run_dir}: already trained")
        else:
            train(config.train_config(method.name, seed, split.train_file, run_dir), echo=echo,
                  progress_desc=f"train {name}", frozen_cache=frozen_cache)
            pace.train_seconds.append(time.perf_counter() - began)
            tracker.add(name, "train_s", pace.train_seconds[-1])
            trained_now.append(name)
        result = evaluate_model(name, run_dir, plan, out_dir, device=config.device, batch_size=config.eval_batch_size,
                                progress=progress, frozen_cache=frozen_cache)
        outcomes[name] = result
        lm_nll[name] = measure_nll(name, run_dir)
        echo(f"{name}: NLL of the held-out chosen responses {lm_nll[name]['nll_per_token']:.4f} nat/token "
             f"(base {lm_nll[BASE_MODEL]['nll_per_token']:.4f})")
        if result.reused:
            echo(f"{name}: evaluation reused from an earlier run")
        else:
            pace.eval_seconds.append(result.seconds)
            tracker.add(name, "eval_s", result.seconds)
            evaluated_now.append(name)
            echo(f"{name}: scored {result.conversations} conversations in {result.seconds:.0f} s")
        if name in trained_now or name in evaluated_now:
            left = todo[number:]
            echo(f"{name} done in {(time.perf_counter() - began) / 60:.1f} min; {pace.remaining(len(left), unfinished(left))}")
        if after_model is not None:
            after_model(name)

    analysis = analyze(plan, outcomes, methods, config.seeds, not_applicable, config.bootstrap_samples)
    tracker.save()
    context = ReportContext(
        config=config,
        methods=methods,
        plan=plan,
        split=split.summary,
        environment=environment(),
        timings={model_name(m.name, s): tracker.data["timings"].get(model_name(m.name, s), {}) for m, s in todo},
        session_wall_s=tracker.session_wall_s,
        total_wall_s=tracker.total_wall_s,
        sessions=len(tracker.data["sessions"]),
        lm_nll=lm_nll,
    )
    paths = write_report(analysis, context, out_dir)
    tracker.save()
    echo(f"\nwrote {paths['markdown']}, {paths['json']} and {paths['plot']}")
    return ReproResult(out_dir, paths, analysis, trained_now, evaluated_now)
