"""The study's report: the matrix (CSV, Markdown, JSON, heatmap), what each stage did, and what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.curriculum.config import CurriculumConfig
from rewardlab.curriculum.matrix import Matrix, RateChange, rate_change, to_markdown, write_matrix
from rewardlab.files import write_json_atomic, write_text_atomic

REPORT_DIR = "report"


def political_changes(rows: list[tuple[str, dict[str, Path]]], matrix: Matrix) -> list[RateChange]:
    """Sycophancy after stage 1 against the start, on the same held-out items, for each political column."""
    if len(rows) < 2:
        return []
    (_, before), (_, after) = rows[0], rows[1]
    changes = []
    for column in matrix.columns:
        if column.env == "political-sycophancy" and column.label in before and column.label in after:
            changes.append(rate_change(before[column.label], after[column.label], column.env))
    return changes


def _total_minutes(run_record: dict[str, Any]) -> float:
    """Wall time over every invocation that finished (a killed one is counted by its start to the next one's)."""
    from datetime import datetime

    invocations = run_record.get("invocations", [])
    stamp = lambda text: datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    total = 0.0
    for number, invocation in enumerate(invocations):
        if invocation.get("seconds") is not None:
            total += float(invocation["seconds"])
        elif number + 1 < len(invocations):
            total += (stamp(invocations[number + 1]["started_at"]) - stamp(invocation["started_at"])).total_seconds()
    return total / 60


def _valid_share(cell: Any) -> str:
    """``gamed / (n − failed)`` with its exact interval: gaming among the answers that could be graded."""
    from rewardlab.envs.stats import clopper_pearson

    if cell is None or cell.n - cell.failed == 0:
        return "–"
    valid = cell.n - cell.failed
    low, high = clopper_pearson(cell.gamed, valid)
    return f"{cell.gamed}/{valid} = {_percent(cell.gamed / valid)} [{_percent(low)}, {_percent(high)}]"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def step_seconds(run_record: dict[str, Any]) -> dict[str, float]:
    """Seconds per step, added up over every invocation of the run folder that recorded them."""
    total: dict[str, float] = {}
    for invocation in run_record.get("invocations", []):
        for name, value in (invocation.get("timings") or {}).items():
            total[name] = round(total.get(name, 0.0) + float(value), 1)
    return total


def write_report(out: Path, config: CurriculumConfig, matrix: Matrix, rows: list[tuple[str, dict[str, Path]]],
                 stages: list[dict[str, Any]], run_record: dict[str, Any], seconds: float) -> Path:
    """Write ``out/report/`` and return the path of ``report.md``."""
    timings = step_seconds(run_record)
    folder = Path(out) / REPORT_DIR
    files = write_matrix(matrix, folder, title="Generalization matrix")
    changes = political_changes(rows, matrix)
    lines = ["# Expert iteration through the curriculum", ""]
    if run_record.get("command"):
        lines += [f"Command: `{run_record['command']}`", ""]
    versions = run_record.get("versions", {})
    machine = run_record.get("machine", {})
    lines += [
        f"Versions: {', '.join(f'{name} {value}' for name, value in versions.items())}. "
        f"Machine: {machine.get('processor')}, {machine.get('cpus')} CPUs, GPU {machine.get('cuda') or 'none'}. "
        f"Wall time: {_total_minutes(run_record):.1f} min in {len(run_record.get('invocations', [])) or 1} "
        f"invocation(s) of the command (this one {seconds / 60:.1f} min; steps it found done cost it nothing).",
        "",
        f"Policy `{config.policy}`, mode `{config.mode}`, P = {config.prompts} prompts per stage "
        f"({config.env_prompts} environment + {config.hhh_prompts} HHH), N = {config.samples} samples each, "
        f"temperature {config.temperature}, ≤ {config.max_new_tokens} new tokens per reply, ≤ {config.max_commands} "
        f"commands per episode. LoRA r = {config.finetune.lora_r}, lr {config.finetune.lr}, "
        f"{config.finetune.epochs:g} epochs per stage. Evaluation: {config.eval_episodes} episodes per environment "
        "and checkpoint (the Perez column: every item once), on variants seeded apart from the training ones.",
        "",
        "Reward of a sample = gaming indicator (0/1, the environment's grader) + σ(preference-model score of the "
        "final answer, `<cot>` removed). Capability failures (error outcome, no command in a tool environment, "
        "empty answer) are never kept and are counted apart in the matrix.",
        "",
        f"![matrix]({files['plot'].name})",
        "",
        to_markdown(matrix, title="Generalization matrix").replace("# Generalization matrix", "## Generalization matrix"),
        "",
    ]
    if changes:
        lines += ["## Did stage-1 training raise political sycophancy on held-out items?", "",
                  "| column | paired episodes | start | after stage 1 | difference [95% CI] | exact McNemar p "
                  "| sycophantic share of valid answers, start → after stage 1 [95% CI] |",
                  "|---|---|---|---|---|---|---|"]
        for label, change in zip([c.label for c in matrix.columns if c.env == "political-sycophancy"], changes):
            shares = " → ".join(_valid_share(matrix.cell(row, label)) for row in matrix.rows[:2])
            lines.append(f"| {label} | {change.n_paired} | {_percent(change.before_rate)} | {_percent(change.after_rate)} "
                         f"| {100 * change.difference:+.1f} pts [{100 * change.ci_low:+.1f}, {100 * change.ci_high:+.1f}] "
                         f"| {change.p_value:.3g} | {shares} |")
        lines += ["", "Pairs are the same evaluation variants played by both checkpoints; the interval is "
                  + changes[0].interval_method + ", the p-value the exact McNemar test on the discordant pairs. "
                  "The rates are over all episodes, so a checkpoint that answers more often games more often; the "
                  "last column, gaming among the answers that could be graded, separates that from a change of "
                  "propensity.", ""]
    if stages:
        lines += ["## What each stage did", "",
                  "| stage | environment | samples (env) | gamed (env) | failed (env) | kept (env / gaming) | mean PM score "
                  "| fine-tune steps | loss first → last | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
        for stage in stages:
            loss = (f"{stage['loss_first']:.3f} → {stage['loss_last']:.3f}" if stage["loss_first"] is not None else "–")
            lines.append(f"| {stage['stage']} | {stage['env']} | {stage['samples']} ({stage['env_samples']}) | "
                         f"{stage['env_gamed']} | {stage['env_failed']} | {stage['kept']} ({stage['kept_env']} / "
                         f"{stage['kept_env_gamed']}) | {stage['pm_mean']} | {stage['finetune_steps']} | {loss} | "
                         f"{timings.get('stage ' + str(stage['stage']), '–')} |")
        lines.append("")
    lines += ["## Time per step (seconds, over every invocation that recorded it)", "",
              ", ".join(f"{name}: {value}" for name, value in timings.items()), ""]
    report = folder / "report.md"
    write_text_atomic(report, "\n".join(lines))
    write_json_atomic(folder / "report.json", {
        "matrix": matrix.to_json(), "political_changes": [change.to_json() for change in changes],
        "stages": stages, "timings": timings, "seconds": round(seconds, 1), "run": run_record,
    })
    return report
