"""`rewardlab repro overopt`: the GRM paper's best-of-N over-optimization study in miniature, top to bottom.

1. samples: one policy's K responses per evaluation prompt and ``train_k`` per training prompt, drawn
   once into ``OUT/samples`` and shared by every condition (a rerun or a larger K draws only what is new);
2. conditions: the same best-of-N study (`rewardlab.overopt.study.run_bon`) once per label condition:
   the proxies' gold-labelled pairs as they are (``clean``) and with ``label_noise`` of them flipped
   (``noise-25``: the paper's noisy setting); each condition's own report lands in ``OUT/<condition>/``;
3. one report: ``OUT/overopt.md`` (every condition's summary, the verdicts, sizes and budget),
   ``OUT/overopt_curves.png`` (a panel per condition, on one gold scale) and ``OUT/overopt_curves.csv``
   (a ``condition`` column in front of the studies' curves).

Every proxy of every condition comes from the same base with the same frozen lower layers, so one
`FrozenLayerCache` serves all their trainings and scorings: the frozen layers run once per pair and once
per sample, not once per proxy. Resumable throughout: samples, gold, proxies and scores are reused.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.errors import ConfigError
from rewardlab.files import write_text_atomic
from rewardlab.machine import describe_machine
from rewardlab.overopt.config import BonConfig, RLConfig

DEFAULT_FAMILIES = ("arithmetic", "capitals", "elements", "units", "list_count")
"""The synthetic families smollm2-135m sometimes solves; it solved 0 of 288 letter_case and 1 of 288 refusal samples
(16 samples of each of 18 prompts), so those prompts could only add all-zero gold rows."""
DEFAULT_PROXIES = ("bt", "bt-margin", "ensemble?k=3&combine=mean&lambda=1", "grm-sft", "grm-dpo-noref")
DEFAULT_RL_PROXIES = ("bt", "grm-sft")
REPORT_NAME, PLOT_NAME, CSV_NAME = "overopt.md", "overopt_curves.png", "overopt_curves.csv"
RL_PLOT_NAME, RL_CSV_NAME = "overopt_rl.png", "overopt_rl.csv"
BUDGET_NOTE = (
    "The best-of-N defaults are sized for a 2-core CPU in under 2 hours: hf:smollm2-135m, 160 evaluation prompts x K=64 samples "
    "(48 new tokens), 96 training prompts x 16 samples, of the five task families it sometimes solves, five proxy "
    "recipes (seven trained models) per label condition, two conditions. The RL step (GRPO with LoRA, 60 steps of "
    "16 completions against bt and grm-sft, clean and noisy labels) takes about 75 min more. On a GPU or with a "
    "vLLM server (--policy openai:MODEL --base-url URL) raise --eval-prompts, -k and --proxy-steps (and --rl-steps, "
    "--rl-batch-size with --rl-policy MODEL --rl-bf16); nothing else changes."
)


@dataclass
class OveroptReproConfig:
    """The settings of `rewardlab repro overopt` (one config dataclass, TRL style)."""

    out: str = "repro-overopt"
    policy: str = "hf:smollm2-135m"
    base_url: str | None = None
    policy_dtype: str = "auto"
    gold: str = "synthetic"
    proxy_model: str = "smollm2-135m"
    proxies: tuple[str, ...] = DEFAULT_PROXIES
    label_noise: float = 0.25  # the noisy condition; the clean one always runs
    longer_chosen: float | None = None  # adds a condition of length-biased pairs (see `pairs_from_samples`)
    families: tuple[str, ...] | None = DEFAULT_FAMILIES  # None: every family
    eval_prompts: int = 160
    train_prompts: int = 96
    k: int = 64
    train_k: int = 16
    max_new_tokens: int = 48
    temperature: float = 1.0
    pairs_per_prompt: int | None = 8
    proxy_steps: int = 64
    proxy_batch_size: int = 8
    proxy_lr: float = 1e-4
    proxy_trainable_top_layers: int | None = 4
    proxy_bf16: bool = False
    seed: int = 0
    bootstrap: int = 1000
    frozen_cache_gb: float = 6.0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # further `BonConfig` fields, the same for every condition
    # the RL step (after best-of-N): RL against these proxies of these conditions; rl_steps 0 skips it
    rl_steps: int = 60
    rl_proxies: tuple[str, ...] = DEFAULT_RL_PROXIES
    rl_conditions: tuple[str, ...] | None = None  # None: clean and the noisy condition
    rl: dict[str, Any] = field(default_factory=dict)  # further `RLConfig` fields

    def __post_init__(self) -> None:
        if not 0.0 < self.label_noise <= 0.5:
            raise ConfigError(f"label_noise (the noisy condition) must be in (0, 0.5], got {self.label_noise}")
        if self.longer_chosen is not None and not 0.0 <= self.longer_chosen <= 1.0:
            raise ConfigError(f"longer_chosen must be in [0, 1], got {self.longer_chosen}")
        known = {f.name for f in dataclasses.fields(BonConfig)}
        unknown = sorted(set(self.extra) - known)
        if unknown:
            raise ConfigError(f"unknown best-of-N settings {', '.join(unknown)}")
        for condition in self.conditions():  # every study's settings are checked before anything runs
            self.study(condition)
        if self.rl_steps < 0:
            raise ConfigError(f"rl_steps must be 0 (no RL step) or more, got {self.rl_steps}")
        if self.rl_steps:
            unknown = [c for c in self.rl_condition_names() if c not in self.conditions()]
            if unknown:
                raise ConfigError(f"RL conditions {', '.join(unknown)} are not among {', '.join(self.conditions())}")
            from rewardlab.overopt.proxies import resolve_recipe

            labels = {resolve_recipe(p).label for p in self.proxies}
            missing = [p for p in self.rl_proxies if resolve_recipe(p).label not in labels]
            if missing:
                raise ConfigError(f"RL proxies {', '.join(missing)} are not among the best-of-N proxies")
            self.rl_settings()

    def rl_condition_names(self) -> tuple[str, ...]:
        """The conditions the RL step runs in (default: clean and the noisy one)."""
        return self.rl_conditions if self.rl_conditions is not None else tuple(list(self.conditions())[:2])

    def rl_settings(self) -> RLConfig:
        """The RL step's settings (its folder is set per condition, inside the condition's study)."""
        policy = self.policy.removeprefix("hf:")
        if policy == self.policy and self.rl.get("policy") is None:
            raise ConfigError(f"the RL step trains a local causal LM and --policy {self.policy} is not an hf: policy; "
                              "name one with --rl-policy MODEL (rl={'policy': MODEL}), or skip the step with --rl-steps 0")
        return RLConfig(**{"policy": policy, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                           "seed": self.seed, "progress": self.progress, "steps": self.rl_steps, **self.rl})

    def conditions(self) -> dict[str, dict[str, Any]]:
        """Condition name -> its proxy-data settings: clean labels, flipped labels, optionally length-biased pairs."""
        conditions: dict[str, dict[str, Any]] = {
            "clean": {"label_noise": 0.0},
            f"noise-{round(100 * self.label_noise)}": {"label_noise": self.label_noise},
        }
        if self.longer_chosen is not None:
            conditions[f"longer-chosen-{round(100 * self.longer_chosen)}"] = {"label_noise": 0.0,
                                                                               "longer_chosen": self.longer_chosen}
        return conditions

    def study(self, condition: str) -> BonConfig:
        """The best-of-N study of one condition: its own folder, the shared samples."""
        settings = self.conditions()[condition]
        out = Path(self.out)
        shared = {name: getattr(self, name) for name in (
            "policy", "base_url", "policy_dtype", "gold", "proxy_model", "eval_prompts", "train_prompts", "k",
            "train_k", "max_new_tokens", "temperature", "pairs_per_prompt", "proxy_steps", "proxy_batch_size",
            "proxy_lr", "proxy_trainable_top_layers", "proxy_bf16", "seed", "bootstrap", "frozen_cache_gb", "progress")}
        return BonConfig(**shared, **settings, **self.extra, out=str(out / condition), samples_dir=str(out / "samples"),
                         proxies=list(self.proxies), families=list(self.families) if self.families else None)


@dataclass
class OveroptReproResult:
    """Each condition's study and the combined report's files."""

    studies: dict[str, Any]
    paths: dict[str, Path]
    wall_time_s: float
    frozen_cache: dict[str, Any] = field(default_factory=dict)  # its hits, misses and size
    rl: dict[str, Any] = field(default_factory=dict)  # condition -> its `RLStudyResult`


def run_repro_overopt(config: OveroptReproConfig, *, echo: Callable[[str], None] = print,
                      command: str | None = None, policy: Any = None) -> OveroptReproResult:
    """Run (or resume) every condition's best-of-N study and write the combined report into ``config.out``.

    ``policy`` replaces the one ``config.policy`` names (library use and tests; see `run_bon`).
    """
    from rewardlab.models.frozen_cache import FrozenLayerCache
    from rewardlab.overopt.study import make_study_policy, run_bon

    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    command = command or "rewardlab repro overopt"
    frozen_cache = FrozenLayerCache(int(config.frozen_cache_gb * 2**30)) if config.frozen_cache_gb > 0 else None
    if policy is None:  # one policy (one model load) serves every condition
        policy = make_study_policy(config.study(next(iter(config.conditions()))))
    studies = {}
    timings = {}
    for condition in config.conditions():
        echo(f"== condition {condition} ==")
        begun = time.perf_counter()
        studies[condition] = run_bon(config.study(condition), echo=echo, frozen_cache=frozen_cache, policy=policy,
                                     command=f"{command} (condition {condition})",
                                     title=f"Best-of-N over-optimization, {condition} labels")
        timings[condition] = time.perf_counter() - begun
    rl_results = {}
    if config.rl_steps:
        from rewardlab.overopt.proxies import resolve_recipe
        from rewardlab.overopt.rl_study import rl_config_for, run_rl_study

        for condition in config.rl_condition_names():
            echo(f"== RL, condition {condition} ==")
            begun = time.perf_counter()
            study = config.study(condition)
            rl_results[condition] = run_rl_study(
                rl_config_for(study, config.rl_settings()), study, echo=echo, policy=policy,
                frozen_cache=frozen_cache, proxies=[resolve_recipe(p).label for p in config.rl_proxies],
                command=f"{command} (RL step, condition {condition})", title=f"RL over-optimization, {condition} labels")
            timings[f"RL {condition}"] = time.perf_counter() - begun
    wall = time.perf_counter() - started
    paths = write_overopt_report(config, studies, out, command=command, wall_time_s=wall, timings=timings,
                                 rl_results=rl_results)
    echo(f"report: {paths['markdown']}, plot: {paths['plot']}, curves: {paths['csv']}")
    return OveroptReproResult(studies, paths, wall, frozen_cache.stats.as_dict() if frozen_cache else {}, rl_results)


def _verdict(summary: Any) -> str:
    """One sentence on whether this proxy's gold turned down, from the data's peak and its paired drop."""
    peak = summary.peak
    if peak.n == peak.last_n:
        return "gold still rising (or flat) at the largest N: no over-optimization seen"
    if peak.n == 1:
        return (f"gold falls from N=1 ({peak.drop.value:.3f} [{peak.drop.low:.3f}, {peak.drop.high:.3f}] by "
                f"N={peak.last_n}): the proxy ranks against gold from the start")
    if peak.drop.low > 0:
        return (f"over-optimized: gold peaks at N={peak.n} and falls by {peak.drop.value:.3f} "
                f"[{peak.drop.low:.3f}, {peak.drop.high:.3f}] by N={peak.last_n} (interval excludes 0)")
    return (f"gold peaks at N={peak.n}; the fall to N={peak.last_n} ({peak.drop.value:.3f} "
            f"[{peak.drop.low:.3f}, {peak.drop.high:.3f}]) is within noise")


def write_overopt_report(config: OveroptReproConfig, studies: Mapping[str, Any], out: Path, *, command: str,
                         wall_time_s: float, timings: Mapping[str, float],
                         rl_results: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """``overopt.md``, ``overopt_curves.png`` and ``overopt_curves.csv`` of every condition's study; with RL
    results also ``overopt_rl.png`` (best-of-N and RL side by side per condition) and ``overopt_rl.csv``."""
    from rewardlab.overopt.report import panels_to_csv, plot_panels, summarize, to_markdown

    panels = {condition: result.curves for condition, result in studies.items()}
    paths = {"markdown": out / REPORT_NAME, "plot": out / PLOT_NAME, "csv": out / CSV_NAME}
    write_text_atomic(paths["csv"], panels_to_csv(panels))
    plot_panels({_panel_title(config, c): curves for c, curves in panels.items()}, paths["plot"],
                title="Best-of-N: gold (solid) and proxy (dashed) gain over N=1")
    rl_lines = _rl_section(config, studies, rl_results or {}, out, paths)
    machine = describe_machine()
    lines = [
        "# Best-of-N over-optimization (GRM paper, Figure 3 in miniature)", "",
        f"Command: `{command}`. Policy `{config.policy}`, gold `{config.gold}`, proxies from `{config.proxy_model}` "
        f"(top {config.proxy_trainable_top_layers} layers trained, {config.proxy_steps} steps of "
        f"{config.proxy_batch_size} pairs).",
        "",
        "Versions and hardware: " + ", ".join(f"{k}={v}" for k, v in machine.items()) + ". "
        f"Wall time of this invocation: {wall_time_s / 60:.1f} min ("
        + ", ".join(f"{c} {t / 60:.1f} min" for c, t in timings.items())
        + "; samples, scores and proxies made by earlier invocations are reused, not redone).",
        "",
        f"Sizes: {config.eval_prompts} evaluation prompts x K={config.k} samples, {config.train_prompts} training "
        f"prompts x {config.train_k} samples, up to {config.pairs_per_prompt} gold-labelled pairs per training "
        f"prompt. {BUDGET_NOTE}",
        "",
        "## Verdicts", "",
        "| condition | recipe | training pairs | gold at N=1 | peak N | gold at largest N | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for condition, result in studies.items():
        for recipe, summary in summarize(result.curves).items():
            peak = summary.peak
            lines.append(f"| {condition} | {recipe} | {len(result.pairs.pairs)} | "
                         f"{summary.curve.gold_start.value:.3f} | {peak.n} | {peak.last_gold.value:.3f} | "
                         f"{_verdict(summary)} |")
    lines += ["", f"![best-of-N curves]({PLOT_NAME})", "", *rl_lines]
    for condition, result in studies.items():
        section = to_markdown(summarize(result.curves), title=f"Condition {condition}", plot_name=None,
                              differences=_differences(result), baseline=_baseline(result))
        lines += ["#" + line if line.startswith("#") else line for line in section.splitlines()]
        lines += ["", f"(Full report of this condition: `{condition}/bon_report.md`.)", ""]
    write_text_atomic(paths["markdown"], "\n".join(lines) + "\n")
    return paths


def _panel_title(config: OveroptReproConfig, condition: str) -> str:
    settings = config.conditions()[condition]
    if settings.get("longer_chosen") is not None:
        return f"clean labels, {settings['longer_chosen']:.0%} of pairs with the longer response chosen"
    if settings["label_noise"]:
        return f"{settings['label_noise']:.0%} of training labels flipped"
    return "clean labels"


def _baseline(result: Any) -> str | None:
    return next(iter(result.curves)) if len(result.curves) > 1 else None


def _differences(result: Any) -> Any:
    from rewardlab.overopt.report import compare_to

    baseline = _baseline(result)
    return compare_to(result.curves, baseline) if baseline else None


def _rl_section(config: OveroptReproConfig, studies: Mapping[str, Any], rl_results: Mapping[str, Any], out: Path,
                paths: dict[str, Path]) -> list[str]:
    """Write the side-by-side plot and RL CSV; return the report's RL section (empty without RL results)."""
    if not rl_results:
        return []
    from rewardlab.overopt.rl_report import plot_bon_and_rl, to_csv, to_markdown

    paths["rl_plot"], paths["rl_csv"] = out / RL_PLOT_NAME, out / RL_CSV_NAME
    plot_bon_and_rl({_panel_title(config, c): (studies[c].curves, r.curves) for c, r in rl_results.items()},
                    paths["rl_plot"])
    tables = [to_csv(r.curves, condition=c) for c, r in rl_results.items()]
    write_text_atomic(paths["rl_csv"], tables[0] + "".join(t.split("\n", 1)[1] for t in tables[1:]))
    lines = ["## Best-of-N and RL side by side", "",
             "Left: best-of-N (x: KL_BoN); right: RL against the same proxies (x: KL to the initial policy, sampled). "
             "Gold solid, proxy dashed, both as gains over their start.", "", f"![best-of-N and RL]({RL_PLOT_NAME})", ""]
    for condition, result in rl_results.items():
        section = to_markdown(result.curves, title=f"RL, condition {condition}", plot_name=f"{condition}/rl/rl_curves.png",
                              notes=result.notes, heading="##")
        lines += [*section.splitlines(), "", f"(Full RL report of this condition: `{condition}/rl/rl_report.md`.)", ""]
    return lines
