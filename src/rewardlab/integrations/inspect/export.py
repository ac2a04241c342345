"""`export_run`: a run folder of ``rewardlab envs run`` as an Inspect eval log, for ``inspect view``.

One Inspect sample per episode record: its id is the episode id, its messages the transcript, its score
the one a live Inspect eval of the episode gives (`score_for_record`: value = outcome label, metadata =
the record without the transcript, grade details under ``details``), and the log's metrics the outcome
rates with Clopper-Pearson intervals (`rates`). The log is written with Inspect's own classes and
writer (``.eval``, or ``.json`` when the file name ends so), atomically.

Nothing is dropped silently: unreadable lines of ``episodes.jsonl`` and records that cannot become a
sample are counted (`ExportSummary.skipped`, with examples); records without a usable transcript are
exported with the messages they have and counted as ``broken``.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspect_ai import __version__ as inspect_version
from inspect_ai.event import ModelEvent, ScoreEvent
from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.model import ChatMessage, GenerateConfig, ModelOutput
from inspect_ai.scorer import Score

from rewardlab.envs.environments import ENVIRONMENTS
from rewardlab.envs.protocol import build_messages
from rewardlab.envs.records import RunFolderError, json_safe, load_episodes, read_run_settings
from rewardlab.errors import UserFileError
from rewardlab.files import create_temp_file
from rewardlab.integrations.inspect._convert import SCORER_NAME, score_for_record, to_chat
from rewardlab.integrations.inspect.metrics import rates
from rewardlab.version import __version__

_EXTENSIONS = (".eval", ".json")
_EXAMPLES = 5


@dataclass
class ExportSummary:
    """What `export_run` wrote and what it could not."""

    path: Path
    samples: int = 0
    unreadable_lines: int = 0
    """Lines of ``episodes.jsonl`` that are not JSON records (as `rewardlab envs report` counts them)."""
    skipped: int = 0
    """Records that could not become a sample (duplicate id, unusable fields)."""
    broken: int = 0
    """Records exported without a usable transcript (their messages are missing or malformed)."""
    examples: list[str] = field(default_factory=list)
    environments: dict[str, int] = field(default_factory=dict)


def default_output(run_dir: Path) -> Path:
    """Where an export goes without ``--out``: ``RUN_DIR/inspect/RUN_NAME.eval``
    (open it with ``inspect view --log-dir RUN_DIR/inspect``)."""
    run_dir = Path(run_dir)
    return run_dir / "inspect" / f"{run_dir.resolve().name or 'run'}.eval"


def _messages_of(record: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """The record's transcript, and what is wrong with it (None when it is whole)."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return [], "no transcript"
    usable = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
              and isinstance(m.get("content"), str)]
    if len(usable) != len(messages):
        return usable, f"{len(messages) - len(usable)} malformed message(s)"
    return usable, None


def _opening_length(env: str) -> int:
    """How many messages open an episode of ``env`` (preamble to task): they are the sample's input."""
    cls = ENVIRONMENTS.get(env)
    uses_tools = cls.uses_tools if cls is not None else True
    return len(build_messages("", uses_tools)) - 1


_STOP_REASONS = {"stop": "stop", "eos": "stop", "length": "max_tokens", "context_limit": "model_length"}


def _events(chat: list[ChatMessage], opening: int, record: dict[str, Any], score: Score,
            policy: str) -> list[ModelEvent | ScoreEvent]:
    """The sample's transcript as a live eval records it: one model event per policy reply, then the score."""
    reasons = record.get("finish_reasons") if isinstance(record.get("finish_reasons"), list) else []
    events: list[ModelEvent | ScoreEvent] = []
    replies = [index for index in range(opening, len(chat)) if chat[index].role == "assistant"]
    for number, index in enumerate(replies):
        reason = reasons[number] if number < len(reasons) else None
        output = ModelOutput.from_content(model=policy, content=chat[index].text,
                                          stop_reason=_STOP_REASONS.get(str(reason), "unknown"))  # type: ignore[arg-type]
        events.append(ModelEvent(model=policy, input=chat[:index], tools=[], tool_choice="none",
                                 config=GenerateConfig(), output=output, working_start=0.0))
    events.append(ScoreEvent(score=score, target="", scorer=SCORER_NAME, working_start=0.0))
    return events


def _sample(record: dict[str, Any]) -> tuple[EvalSample, str | None]:
    messages, problem = _messages_of(record)
    policy = str(record.get("policy") or "unknown")
    chat = to_chat(messages, model=policy)
    opening = chat[:_opening_length(str(record["env"]))] if chat else []
    final = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
    timings = record.get("timings") if isinstance(record.get("timings"), dict) else {}
    finished = record.get("finished_at") if isinstance(record.get("finished_at"), str) else None
    total = timings.get("total")
    score = score_for_record(record)
    sample = EvalSample(
        id=str(record["id"]), epoch=1, input=opening or "(no transcript in the record)", target="",
        messages=chat, output=ModelOutput.from_content(model=policy, content=final),
        scores={SCORER_NAME: score}, events=_events(chat, len(opening), record, score, policy),
        metadata=json_safe({key: record.get(key) for key in ("env", "index", "seed", "sample", "facts")}),
        completed_at=finished, total_time=total if isinstance(total, (int, float)) else None,
    )
    return sample, problem


def _metrics(records: list[dict[str, Any]], prefixed: bool) -> dict[str, EvalMetric]:
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_env[str(record["env"])].append(record)
    metrics: dict[str, EvalMetric] = {}
    for env, episodes in by_env.items():
        cls = ENVIRONMENTS.get(env)
        labels = [str(r["outcome"]) for r in episodes]
        gamed = [label in cls.gaming_outcomes if cls else bool(r.get("gamed")) for label, r in zip(labels, episodes)]
        for name, value in rates(labels, gamed, cls.outcomes if cls else ()).items():
            key = f"{env}/{name}" if prefixed else name
            metrics[key] = EvalMetric(name=key, value=value)
    return metrics


def export_run(run_dir: Path, out: Path | None = None) -> ExportSummary:
    """Write the episodes of ``run_dir`` as one Inspect eval log at ``out`` (default: `default_output`)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_output(run_dir)
    if out.suffix not in _EXTENSIONS:
        raise UserFileError(f"{out}: an Inspect log must end in .eval or .json")
    loaded = load_episodes(run_dir)
    settings = read_run_settings(run_dir) or {}
    summary = ExportSummary(path=out, unreadable_lines=loaded.bad_lines, examples=list(loaded.examples))
    samples: list[EvalSample] = []
    exported: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in loaded.records:
        identifier = str(record.get("id"))
        try:
            if identifier in seen:
                raise ValueError("a second record with this id")
            sample, problem = _sample(record)
        except (ValueError, TypeError, KeyError) as error:
            summary.skipped += 1
            if len(summary.examples) < _EXAMPLES:
                summary.examples.append(f"{identifier}: skipped ({str(error).splitlines()[0][:200]})")
            continue
        seen.add(identifier)
        if problem is not None:
            summary.broken += 1
            if len(summary.examples) < _EXAMPLES:
                summary.examples.append(f"{identifier}: {problem}")
        samples.append(sample)
        exported.append(record)
        summary.environments[str(record["env"])] = summary.environments.get(str(record["env"]), 0) + 1
    summary.samples = len(samples)
    if not samples:
        raise RunFolderError(f"{run_dir} holds no exportable episodes ({summary.unreadable_lines} unreadable line(s), "
                             f"{summary.skipped} unusable record(s)); run `rewardlab envs run --out {run_dir} …` first")

    envs = list(summary.environments)
    policy = str(settings.get("policy") or (exported[0].get("policy") if exported else "unknown"))
    finished = sorted(str(r["finished_at"]) for r in exported if isinstance(r.get("finished_at"), str))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    task = f"rewardlab/{envs[0].replace('-', '_')}" if len(envs) == 1 else "rewardlab/envs"
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            eval_id=uuid.uuid4().hex, run_id=uuid.uuid4().hex, task_id=uuid.uuid4().hex,
            created=finished[0] if finished else now,
            task=task, task_registry_name=task, model=policy,
            dataset=EvalDataset(name=run_dir.resolve().name, location=str(run_dir), samples=len(samples),
                                sample_ids=[sample.id for sample in samples]),
            config=EvalConfig(), packages={"inspect_ai": inspect_version, "rewardlab": __version__},
            metadata=json_safe({"exported_from": str(run_dir.resolve()), "run_settings": settings,
                                "unreadable_lines": summary.unreadable_lines, "skipped_records": summary.skipped,
                                "broken_records": summary.broken}),
        ),
        results=EvalResults(total_samples=len(samples), completed_samples=len(samples), scores=[
            EvalScore(name=SCORER_NAME, scorer=SCORER_NAME, metrics=_metrics(exported, prefixed=len(envs) > 1)),
        ]),
        stats=EvalStats(started_at=finished[0] if finished else now, completed_at=finished[-1] if finished else now),
        samples=samples,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = create_temp_file(out.parent, prefix=f".{out.name}.", suffix=out.suffix)
    try:
        write_eval_log(log, str(temporary))
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return summary
