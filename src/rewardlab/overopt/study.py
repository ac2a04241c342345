"""The best-of-N over-optimization study, readable top to bottom (`rewardlab bon run`).

1. prompts: seeded prompts of the built-in synthetic task families, split into training and evaluation
   prompts that never overlap;
2. samples: K responses per evaluation prompt and ``train_k`` per training prompt from the policy, through
   the on-disk `SampleStore` (reused by every rerun; the training samples use another seed, so a proxy
   never ranks responses it was trained on);
3. gold: every sample scored by the gold (the programmatic synthetic gold, or any reward model);
4. proxies: gold-labelled pairs of the training prompts' own responses (optionally with a fraction of
   labels flipped), one proxy per recipe trained through the one trainer (resumable);
5. curves: each proxy scores the evaluation samples; the unbiased best-of-N estimator gives gold and proxy
   against KL_BoN with bootstrap intervals, and the report (CSV, PNG, Markdown, JSON) is written.

Every step is resumable: samples, scores and proxies are kept in ``out`` and reused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import ConfigError
from rewardlab.files import write_json_atomic
from rewardlab.machine import describe_machine
from rewardlab.models.frozen_cache import FrozenLayerCache
from rewardlab.overopt.estimator import BonCurve, bon_curve, spaced_ns
from rewardlab.overopt.config import BonConfig
from rewardlab.overopt.gold import ModelGold, SyntheticGold, score_samples, synthetic_prompts
from rewardlab.overopt.pairs import PairSet, apply_label_noise, pairs_from_samples
from rewardlab.overopt.proxies import ProxyRecipe, TrainedProxy, label_folder, resolve_recipe, train_proxy
from rewardlab.overopt.report import write_report
from rewardlab.overopt.samples import BonPrompt, PromptSamples, SampleStore
from rewardlab.policies.base import SamplingPolicy
from rewardlab.policies.spec import PolicySettings, make_policy

SETTINGS_FILE = "study.json"
SCORES_FILE = "scores.json"


@dataclass
class BonResult:
    """What a study produced: its curves and the report files."""

    curves: dict[str, BonCurve]
    paths: dict[str, Path]
    pairs: PairSet
    wall_time_s: float


def _check_folder(out: Path, config: BonConfig) -> None:
    path = out / SETTINGS_FILE
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8")).get("identity")
        if previous != json.loads(json.dumps(config.identity())):
            changed = sorted(k for k in config.identity() if (previous or {}).get(k) != config.identity()[k])
            raise ConfigError(f"{out} holds a study with other settings ({', '.join(changed) or 'format'}); "
                              "use another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"identity": config.identity(), "machine": describe_machine()})


def gold_scorer(config: BonConfig) -> Any:
    """The gold the study names: the programmatic synthetic gold or a reward model."""
    return SyntheticGold() if config.gold == "synthetic" else ModelGold(config.gold, progress=config.progress)


def _cached_scores(path: Path, key: str, samples: Sequence[PromptSamples],
                   compute: Callable[[], list[list[float]]]) -> list[list[float]]:
    """Scores of ``samples`` under ``key``, from ``path`` when they were computed before for the same samples."""
    cache = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    fingerprint = [[s.prompt.prompt_id, len(s.responses)] for s in samples]
    entry = cache.get(key)
    if entry is not None and entry.get("samples") == fingerprint:
        return entry["scores"]
    scores = compute()
    cache[key] = {"samples": fingerprint, "scores": [[float(v) for v in row] for row in scores]}
    write_json_atomic(path, cache)
    return scores


def sample_key(spec: str, policy: Any) -> str:
    """The policy's name in the sample store: the spec, plus ``@DTYPE`` for a local model not in float32
    (samples drawn in bfloat16 are not those of float32, so they must not be reused for each other)."""
    dtype = getattr(policy, "dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return spec if name == "float32" else f"{spec}@{name}"


def study_prompts(config: BonConfig) -> tuple[list[BonPrompt], list[BonPrompt]]:
    """The study's training and evaluation prompts (distinct; the same in every run of the settings)."""
    prompts = synthetic_prompts(config.train_prompts + config.eval_prompts, config.seed, config.families)
    return prompts[: config.train_prompts], prompts[config.train_prompts:]


def proxy_folder(out: Path, recipe: ProxyRecipe) -> Path:
    """Where a study in ``out`` keeps the proxy of ``recipe``."""
    return Path(out) / "proxies" / label_folder(recipe.label)


def proxy_pairs(config: BonConfig, train_samples: Sequence[PromptSamples], train_gold: Sequence[Sequence[float]]
                ) -> PairSet:
    """The gold-labelled pairs every proxy of the study trains on (length-biased and label noise as set)."""
    pairs = pairs_from_samples(train_samples, train_gold, pairs_per_prompt=config.pairs_per_prompt, seed=config.seed,
                               longer_chosen=config.longer_chosen)
    return apply_label_noise(pairs, config.label_noise, config.seed) if config.label_noise else pairs


def make_study_policy(config: BonConfig) -> SamplingPolicy:
    """The policy ``config.policy`` names, with the study's sampling settings."""
    return make_policy(config.policy, PolicySettings(base_url=config.base_url, max_new_tokens=config.max_new_tokens,
                                                     temperature=config.temperature, seed=config.seed,
                                                     dtype=config.policy_dtype))


def sample_store(config: BonConfig, policy: Any, name: str) -> SampleStore:
    """The study's ``train`` or ``eval`` sample store."""
    samples_dir = Path(config.samples_dir) if config.samples_dir else Path(config.out) / "samples"
    return SampleStore(samples_dir / name, sample_key(config.policy, policy), config.sampling(training=name == "train"))


def train_study_proxies(config: BonConfig, *, echo: Callable[[str], None] = print,
                        policy: SamplingPolicy | None = None, gold: Any = None,
                        frozen_cache: FrozenLayerCache | None = None) -> tuple[PairSet, dict[str, TrainedProxy]]:
    """Steps 1–4 of the study: training samples, their gold, the pairs, and every recipe's proxy trained on them
    (or found trained). Shared by `run_bon` and the RL study (`rewardlab.overopt.rl_study`)."""
    out = Path(config.out)
    _check_folder(out, config)
    train_prompts, _ = study_prompts(config)
    policy = policy or make_study_policy(config)
    store = sample_store(config, policy, "train")
    train_samples = store.get(policy, train_prompts, config.train_k, progress=config.progress)
    echo(f"training samples: {config.train_prompts} prompts x {config.train_k} ({store.generated} newly drawn)")
    gold = gold or gold_scorer(config)
    train_gold = _cached_scores(out / SCORES_FILE, "gold/train", train_samples,
                                lambda: score_samples(gold, train_samples))
    pairs = proxy_pairs(config, train_samples, train_gold)
    echo(f"proxy training pairs: {len(pairs.pairs)} ({pairs.describe()})")
    trained = {}
    for spec in config.proxies:
        recipe = resolve_recipe(spec)
        trained[recipe.label] = train_proxy(recipe, pairs, proxy_folder(out, recipe), base=config.proxy_training(),
                                            echo=echo, frozen_cache=frozen_cache)
    return pairs, trained


def run_bon(config: BonConfig, *, echo: Callable[[str], None] = print, command: str | None = None,
            policy: SamplingPolicy | None = None, frozen_cache: FrozenLayerCache | None = None,
            title: str | None = None) -> BonResult:
    """Run (or resume) the study and write its report into ``config.out``.

    ``policy`` replaces the one ``config.policy`` names (library use: any object with the policies'
    ``sample`` method); ``config.policy`` still keys the sample cache. ``frozen_cache`` is shared by every
    proxy trained and scored (studies on the same samples, such as `rewardlab repro overopt`'s label
    conditions, pass one cache so the frozen lower layers run once per sample); by default the study
    keeps its own within ``config.frozen_cache_gb``.
    """
    started = time.perf_counter()
    out = Path(config.out)
    if frozen_cache is None and config.frozen_cache_gb > 0:
        frozen_cache = FrozenLayerCache(int(config.frozen_cache_gb * 2**30))
    policy = policy or make_study_policy(config)
    gold = gold_scorer(config)

    # 1.–4. prompts, training samples, their gold, pairs and proxies
    pairs, trained = train_study_proxies(config, echo=echo, policy=policy, gold=gold, frozen_cache=frozen_cache)

    # 5. evaluation samples (prompts distinct from the training ones) and their gold, cached on disk
    _, eval_prompts = study_prompts(config)
    store = sample_store(config, policy, "eval")
    eval_samples = store.get(policy, eval_prompts, config.k, progress=config.progress)
    echo(f"evaluation samples: {config.eval_prompts} prompts x {config.k} ({store.generated} newly drawn)")
    scores_path = out / SCORES_FILE
    eval_gold = _cached_scores(scores_path, "gold/eval", eval_samples, lambda: score_samples(gold, eval_samples))

    # 6. each proxy scores the evaluation samples; its curve
    curves: dict[str, BonCurve] = {}
    ns = config.ns or sorted({1, *spaced_ns(config.k, 16), config.k})
    for label, proxy_model in trained.items():
        proxy = proxy_model.scorer(progress=config.progress, frozen_cache=frozen_cache)
        proxy_scores = _cached_scores(scores_path, f"proxy/{label}", eval_samples,
                                      lambda: score_samples(proxy, eval_samples))
        curves[label] = bon_curve(np.asarray(proxy_scores, dtype=float), np.asarray(eval_gold, dtype=float),
                                  ns, bootstrap=config.bootstrap, seed=config.seed,
                                  prompt_ids=[s.prompt.prompt_id for s in eval_samples])
    wall = time.perf_counter() - started
    machine = describe_machine()
    notes = [
        f"Command: `{command or 'rewardlab bon run'}`. Policy `{config.policy}`, gold `{config.gold}`, proxies from "
        f"`{config.proxy_model}`; {config.eval_prompts} evaluation prompts x K={config.k} samples "
        f"(temperature {config.temperature}, top-p {config.top_p}, {config.max_new_tokens} new tokens, seed "
        f"{config.seed}); proxies trained on {len(pairs.pairs)} gold-labelled pairs from {config.train_prompts} "
        f"other prompts x {config.train_k} samples, {config.label_noise:.0%} of labels flipped.",
        "Versions and hardware: " + ", ".join(f"{k}={v}" for k, v in machine.items())
        + f". Wall time of this invocation: {wall / 60:.1f} min (cached samples, scores and proxies are reused).",
    ]
    baseline = resolve_recipe(config.baseline).label if config.baseline else next(iter(curves))
    paths = write_report(curves, out, notes=notes, baseline=baseline if len(curves) > 1 else None,
                         **({"title": title} if title else {}))
    echo(f"report: {paths['markdown']}, plot: {paths['plot']}, curves: {paths['csv']}")
    return BonResult(curves, paths, pairs, wall)
