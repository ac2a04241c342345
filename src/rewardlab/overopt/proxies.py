"""Proxy reward models for best-of-N studies: recipes trained through `rewardlab.train.loop.train`.

A recipe is a set of `TrainConfig` overrides applied to a base configuration (model, lr, steps, ...):

=====================  ======================================================================
``bt``                 Bradley–Terry, no regularizer
``bt-margin``          BT with the pair's margin (the gold difference): ``-log σ(Δr − m)``
``bt-label-smoothing`` BT with label smoothing ε = 0.1
``ensemble``           ``k`` BT models with seeds ``seed, seed+1, …`` (default k = 3), combined by
                       ``mean``, ``min`` (worst case) or ``uncertainty``: mean − λ·std (population
                       std over members, default λ = 1); options: ``ensemble?k=5&combine=min&lambda=0.5``
``grm-sft``            GRM: BT + SFT regularizer on the chosen response (α = 0.01, β = 0.1)
``grm-dpo-noref``      GRM: BT + reference-free DPO regularizer (α = 0.01, β = 0.1)
``saved:PATH``         a saved model, not trained: a proxy folder, a rewardlab folder or a seq-cls checkpoint
=====================  ======================================================================

`train_proxy` writes the pairs to ``FOLDER/pairs.jsonl`` and trains each member into ``FOLDER/model``
(or ``FOLDER/member-<i>``); ``FOLDER/proxy.json`` records the training settings and the pairs' hash.
Rerunning reuses the folder: a finished member is not retrained, an interrupted one resumes from its
checkpoint (as `train` does), a larger ``k`` trains only the new members, and a folder trained with
other settings or pairs is refused. Ensemble members are put on one scale before they are combined
(BT rewards have arbitrary offsets, so ``min`` of raw rewards would just pick the lowest-offset
member): each member's rewards are standardized by their mean and std over the responses of its
training pairs, measured once after training and kept in ``proxy.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.data.loaders import parse_spec
from rewardlab.data.pair import Message, PreferencePair
from rewardlab.data.report import DataError
from rewardlab.errors import ConfigError, UserFileError
from rewardlab.files import read_json_store, write_json_atomic, write_text_atomic
from rewardlab.overopt.gold import ModelGold
from rewardlab.overopt.pairs import PairSet, pairs_file_text
from rewardlab.overopt.samples import BonPrompt
from rewardlab.train.config import TrainConfig

__all__ = [
    "COMBINE_RULES", "PROXY_FILE", "PROXY_RECIPES", "ProxyRecipe", "ProxyScorer", "TrainedProxy", "combine_scores",
    "resolve_recipe", "train_proxy",
]

PROXY_FILE = "proxy.json"
PAIRS_FILE = "pairs.jsonl"
PROXY_FORMAT = 1
COMBINE_RULES = ("mean", "min", "uncertainty")
DEFAULT_ENSEMBLE_SIZE = 3
# Options that change how a run is watched or saved midway, not the model it produces.
_NOT_IDENTITY = ("output", "data", "resume", "overwrite", "progress", "save_steps", "log_interval",
                 "eval_interval", "frozen_cache_gb")


@dataclass(frozen=True)
class ProxyRecipe:
    """How to get one proxy: `TrainConfig` overrides, the number of members and how to combine them."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    members: int = 1
    combine: str = "mean"
    lam: float = 1.0
    path: str | None = None  # saved:PATH: nothing to train

    @property
    def label(self) -> str:
        """The recipe as a spec string (``ensemble?k=3&combine=min&lambda=1``, ``saved:PATH``)."""
        if self.path is not None:
            return f"saved:{self.path}"
        if self.name == "ensemble":
            return f"ensemble?k={self.members}&combine={self.combine}&lambda={self.lam:g}"
        return self.name


_NO_REG = {"reg": "none"}
PROXY_RECIPES: dict[str, ProxyRecipe] = {
    "bt": ProxyRecipe("bt", {"loss": "bt", **_NO_REG}),
    "bt-margin": ProxyRecipe("bt-margin", {"loss": "margin", **_NO_REG}),
    "bt-label-smoothing": ProxyRecipe("bt-label-smoothing", {"loss": "label-smoothing", "label_smoothing": 0.1,
                                                             **_NO_REG}),
    "ensemble": ProxyRecipe("ensemble", {"loss": "bt", **_NO_REG}, members=DEFAULT_ENSEMBLE_SIZE),
    "grm-sft": ProxyRecipe("grm-sft", {"loss": "bt", "reg": "sft", "alpha": 0.01, "beta": 0.1}),
    "grm-dpo-noref": ProxyRecipe("grm-dpo-noref", {"loss": "bt", "reg": "dpo-noref", "alpha": 0.01, "beta": 0.1}),
}
"""The built-in recipes (``saved:PATH`` is resolved by `resolve_recipe`)."""


def label_folder(label: str) -> str:
    """A file-system-safe folder name for a recipe label (``ensemble?k=3&…`` → ``ensemble_k=3_…``)."""
    return label.replace("?", "_").replace("&", "_").replace("/", "_").replace(":", "_")


def resolve_recipe(spec: str | ProxyRecipe) -> ProxyRecipe:
    """The recipe named by ``spec``: a recipe name, ``ensemble?k=…&combine=…&lambda=…`` or ``saved:PATH``."""
    if isinstance(spec, ProxyRecipe):
        return spec
    if spec.startswith("saved:"):
        path = spec.removeprefix("saved:")
        if not path:
            raise ConfigError("saved: needs a path, e.g. saved:runs/my-reward-model")
        return ProxyRecipe("saved", path=path)
    try:
        base, options = parse_spec(spec)
    except (ValueError, DataError) as error:
        raise ConfigError(f"proxy recipe {spec!r}: {error}") from None
    if base not in PROXY_RECIPES:
        raise ConfigError(f"unknown proxy recipe {base!r}; choose one of {', '.join(PROXY_RECIPES)} or saved:PATH")
    recipe = PROXY_RECIPES[base]
    if options and base != "ensemble":
        raise ConfigError(f"proxy recipe {base!r} takes no options (only ensemble has k, combine, lambda)")
    unknown = set(options) - {"k", "combine", "lambda"}
    if unknown:
        raise ConfigError(f"proxy recipe {spec!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                          "ensemble takes k, combine, lambda")
    try:
        members = int(options.get("k", recipe.members))
        lam = float(options.get("lambda", recipe.lam))
    except ValueError:
        raise ConfigError(f"proxy recipe {spec!r}: k must be a whole number and lambda a number") from None
    combine = options.get("combine", recipe.combine)
    if members < 1 or combine not in COMBINE_RULES or not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"proxy recipe {spec!r}: needs k ≥ 1, combine one of {', '.join(COMBINE_RULES)}, "
                          "lambda ≥ 0")
    return dataclasses.replace(recipe, members=members, combine=combine, lam=lam)


def combine_scores(member_scores: np.ndarray, rule: str, lam: float = 1.0) -> np.ndarray:
    """Combine ``[members, n]`` scores into ``[n]``: ``mean``, ``min`` or ``uncertainty`` (mean − λ·std, ddof 0)."""
    scores = np.asarray(member_scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 1:
        raise ValueError(f"member scores must be a [members, n] array with at least one member, got {scores.shape}")
    if rule == "mean":
        return scores.mean(axis=0)
    if rule == "min":
        return scores.min(axis=0)
    if rule == "uncertainty":
        return scores.mean(axis=0) - lam * scores.std(axis=0)
    raise ConfigError(f"unknown ensemble combination {rule!r}; choose one of {', '.join(COMBINE_RULES)}")


class ProxyScorer:
    """A proxy reward for best-of-N prompts: one model, or an ensemble whose members' scores are combined.

    Members score through `ModelGold` (so a rewardlab model goes through `RewardScorer`); ``calibration``
    gives each member's (mean, std) to standardize by before combining (None: raw scores).
    """

    def __init__(
        self,
        members: Sequence[Any],
        *,
        combine: str = "mean",
        lam: float = 1.0,
        calibration: Sequence[tuple[float, float]] | None = None,
        name: str = "proxy",
    ) -> None:
        if not members:
            raise ValueError("a proxy needs at least one member")
        if combine not in COMBINE_RULES:
            raise ConfigError(f"unknown ensemble combination {combine!r}; choose one of {', '.join(COMBINE_RULES)}")
        if calibration is not None and len(calibration) != len(members):
            raise ValueError(f"{len(members)} members but {len(calibration)} calibrations")
        self.members = list(members)
        self.combine = combine
        self.lam = lam
        self.calibration = None if calibration is None else [(float(m), float(s)) for m, s in calibration]
        self.name = name

    @classmethod
    def load(
        cls, path: str | Path, *, name: str | None = None, device: str | None = None, batch_size: int = 16,
        combine: str | None = None, lam: float | None = None, members: int | None = None, progress: bool = False,
        frozen_cache: Any = None,
    ) -> "ProxyScorer":
        """A proxy folder written by `train_proxy` (its members, combination and calibration; ``combine``,
        ``lam`` and ``members`` override them), or any single reward model `ModelGold` loads; ``progress`` shows
        a progress bar per member while scoring; ``frozen_cache`` is shared by the members (see `ModelGold`)."""
        folder = Path(path)
        label = name or folder.name
        record = read_json_store(folder / PROXY_FILE)
        if not record:
            return cls([ModelGold(path, name=label, device=device, batch_size=batch_size, progress=progress,
                                  frozen_cache=frozen_cache)], name=label)
        names = list(record.get("members") or [])
        if members is not None:
            if members > len(names):
                raise ConfigError(f"{folder} holds {len(names)} trained members; asked for {members}")
            names = names[:members]
        missing = [n for n in names if not (folder / n).is_dir()]
        if not names or missing:
            raise UserFileError(f"{folder}: proxy members missing ({', '.join(missing) or 'none recorded'}); rerun "
                                "its training to finish them")
        recipe = record.get("recipe", {})
        calibrations = record.get("calibration", {})
        calibration = None
        if len(names) > 1:
            if any(n not in calibrations for n in names):
                raise UserFileError(f"{folder}: ensemble members lack calibration; rerun its training to finish it")
            calibration = [(calibrations[n]["mean"], calibrations[n]["std"]) for n in names]
        scorers = [ModelGold(folder / n, name=f"{label}/{n}", device=device, batch_size=batch_size, progress=progress,
                             frozen_cache=frozen_cache) for n in names]
        return cls(scorers, combine=combine or recipe.get("combine", "mean"),
                   lam=recipe.get("lambda", 1.0) if lam is None else lam, calibration=calibration, name=label)

    def member_scores(self, prompts: Sequence[BonPrompt], responses: Sequence[str]) -> np.ndarray:
        """``[members, n]`` scores, standardized by each member's calibration where there is one."""
        rows = np.array([member.score(prompts, responses) for member in self.members], dtype=np.float64)
        if self.calibration is not None:
            means = np.array([m for m, _ in self.calibration])[:, None]
            stds = np.array([s for _, s in self.calibration])[:, None]
            rows = (rows - means) / stds
        return rows.reshape(len(self.members), len(responses))

    def score(self, prompts: Sequence[BonPrompt], responses: Sequence[str]) -> list[float]:
        """Proxy scores of ``responses[i]`` answering ``prompts[i]`` (the ensemble's combination)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if len(self.members) == 1 and self.calibration is None:
            return [float(v) for v in self.members[0].score(prompts, responses)]
        return combine_scores(self.member_scores(prompts, responses), self.combine, self.lam).tolist()

    def score_conversations(self, messages: Sequence[Sequence[Message]], responses: Sequence[str]) -> list[float]:
        """`score` for bare chat-message prompts (the interface of `rewardlab.integrations.trl.RewardFunction`)."""
        return self.score([BonPrompt(f"conversation/{i}", tuple(m)) for i, m in enumerate(messages)], responses)

    def describe(self) -> dict[str, Any]:
        return {"kind": "proxy", "name": self.name, "members": [m.describe() for m in self.members],
                "combine": self.combine, "lambda": self.lam, "calibration": self.calibration}


@dataclass
class TrainedProxy:
    """A proxy ready to score: its folder (or saved model path), recipe and each trained member's metrics."""

    folder: Path
    recipe: ProxyRecipe
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def scorer(self, *, device: str | None = None, batch_size: int = 16, progress: bool = False,
               frozen_cache: Any = None) -> ProxyScorer:
        """The `ProxyScorer` of this proxy (the recipe's members, combination and λ)."""
        options = {"name": self.recipe.label, "device": device, "batch_size": batch_size, "progress": progress,
                   "frozen_cache": frozen_cache}
        if self.recipe.path is not None:
            return ProxyScorer.load(self.recipe.path, **options)
        return ProxyScorer.load(self.folder, combine=self.recipe.combine, lam=self.recipe.lam,
                                members=self.recipe.members, **options)


def train_proxy(
    recipe: str | ProxyRecipe,
    pairs: Sequence[PreferencePair] | PairSet,
    folder: str | Path,
    *,
    base: TrainConfig,
    echo: Callable[[str], None] = print,
    device: str | None = None,
    frozen_cache: Any = None,
) -> TrainedProxy:
    """Train ``recipe`` on ``pairs`` into ``folder`` (resumable; see the module doc); ``saved:PATH`` trains nothing.

    ``base`` gives everything but the recipe's loss settings, ``data``, ``output`` and the member seeds
    (``base.seed + i``). ``device`` is where ensemble members are scored for their calibration.
    ``frozen_cache`` (a `FrozenLayerCache`) is shared by every member and proxy trained from the same base
    with the same frozen layers, so their outputs for a pair are computed once.
    """
    from rewardlab.train.loop import train

    recipe = resolve_recipe(recipe)
    if recipe.path is not None:
        return TrainedProxy(Path(recipe.path), recipe)
    items = list(pairs.pairs if isinstance(pairs, PairSet) else pairs)
    folder = Path(folder)
    if not items:
        raise DataError(str(folder), "no gold-labelled pairs to train a proxy on (every candidate pair was a tie?)")
    if recipe.overrides.get("loss") == "margin" and any(p.margin is None for p in items):
        raise DataError(str(folder), f"recipe {recipe.name} needs a margin (gold difference) on every pair")
    text = pairs_file_text(items)
    identity = {
        "recipe": recipe.name,
        "train": {k: v for k, v in {**base.to_dict(), **recipe.overrides}.items() if k not in _NOT_IDENTITY},
        "pairs_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    record = _prepare_folder(folder, identity, text)
    names = ["model"] if recipe.name != "ensemble" else [f"member-{i}" for i in range(recipe.members)]
    record["recipe"] = {"name": recipe.name, "combine": recipe.combine, "lambda": recipe.lam}
    write_json_atomic(folder / PROXY_FILE, record)
    metrics = []
    for i, name in enumerate(names):
        output = folder / name
        config = dataclasses.replace(
            base, **recipe.overrides, data=str(folder / PAIRS_FILE), output=str(output), seed=base.seed + i,
            resume=output.is_dir() and any(output.iterdir()), overwrite=False,
        )
        desc = f"proxy {recipe.name}" + (f" {i + 1}/{len(names)}" if len(names) > 1 else "")
        result = train(config, echo=echo, progress_desc=desc, frozen_cache=frozen_cache)
        metrics.append(result.metrics)
        if recipe.name == "ensemble" and name not in record.setdefault("calibration", {}):
            record["calibration"][name] = _calibrate(output, items, device=device, batch_size=max(8, base.batch_size),
                                                     progress=base.progress, frozen_cache=frozen_cache)
        # Listed once finished (and calibrated), so a loaded proxy never holds a half-trained member.
        record["members"] = sorted(set(record.get("members", [])) | {name}, key=_member_order)
        write_json_atomic(folder / PROXY_FILE, record)
    return TrainedProxy(folder, recipe, metrics)


def _member_order(name: str) -> tuple[int, str]:
    return (int(name.rpartition("-")[2]) if name.startswith("member-") else -1, name)


def _prepare_folder(folder: Path, identity: dict[str, Any], text: str) -> dict[str, Any]:
    """The folder's proxy record (new or matching ``identity``), with ``pairs.jsonl`` in place."""
    if folder.exists() and not folder.is_dir():
        raise UserFileError(f"proxy folder {folder} is a file; choose another folder")
    record = read_json_store(folder / PROXY_FILE)
    if record:
        if record.get("identity") != identity:
            old = record.get("identity", {})
            changed = sorted(k for k in set(old.get("train", {})) | set(identity["train"])
                             if old.get("train", {}).get(k) != identity["train"].get(k))
            if old.get("pairs_sha256") != identity["pairs_sha256"]:
                changed.append("the training pairs")
            if old.get("recipe") != identity["recipe"]:
                changed.append("the recipe")
            raise ConfigError(f"{folder} holds a proxy trained with other settings ({', '.join(changed) or 'format'}); "
                              "choose another folder or delete it")
        if not (folder / PAIRS_FILE).is_file():
            raise UserFileError(f"{folder / PAIRS_FILE} is missing; delete {folder} to retrain the proxy")
        return record
    if folder.is_dir() and any(p.name != PAIRS_FILE for p in folder.iterdir()):
        raise UserFileError(f"{folder} is not empty and holds no {PROXY_FILE}; choose an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / PAIRS_FILE, text)
    return {"format": PROXY_FORMAT, "identity": identity, "members": [], "calibration": {}}


def _calibrate(
    model: Path, pairs: Sequence[PreferencePair], *, device: str | None, batch_size: int, progress: bool,
    frozen_cache: Any = None,
) -> dict[str, float]:
    """Mean and std of ``model``'s rewards over the distinct (prompt, response) conversations of ``pairs``."""
    seen: dict[str, tuple[BonPrompt, str]] = {}
    for pair in pairs:
        for response in (pair.chosen, pair.rejected):
            key = json.dumps([list(pair.prompt), response], sort_keys=True)
            seen.setdefault(key, (BonPrompt("calibration", pair.prompt), response))
    prompts, responses = zip(*seen.values())
    scorer = ModelGold(model, name=f"calibration {model.name}", device=device, batch_size=batch_size, progress=progress,
                       frozen_cache=frozen_cache)
    values = np.array(scorer.score(prompts, responses))
    std = float(values.std())
    return {"mean": float(values.mean()), "std": std if std > 0 else 1.0, "n": int(values.size)}
