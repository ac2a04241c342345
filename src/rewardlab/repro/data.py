"""The training and held-out split of `rewardlab repro grm`, written once and reused on reruns.

Pairs are loaded with the core loader, exact duplicates are dropped, pairs whose chosen or rejected
conversation is longer than ``max_length`` tokens are dropped (counted, never truncated), and a
seeded shuffle puts ``heldout_pairs`` aside for the in-distribution evaluation before the
``train_pairs`` training pairs are taken. Both parts are written as JSON Lines in the TRL
conversational format, so the trainer and the evaluator read exactly the same pairs every run.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport, load_pairs
from rewardlab.data.pair import PreferencePair
from rewardlab.data.render import render_pairs
from rewardlab.errors import ConfigError
from rewardlab.files import write_text_atomic
from rewardlab.evaluate.suites import default_data_root
from rewardlab.repro.config import HH_RLHF_HARMLESS_FILE, HUB_TRAIN_DATA, TRAIN_DATA_ALIASES, ReproConfig

DATA_FOLDER = "data"
TRAIN_FILE = "train.jsonl"
HELDOUT_FILE = "heldout.jsonl"
SPLIT_FILE = "split.json"
SPLIT_FIELDS = ("model", "train_data", "train_pairs", "heldout_pairs", "data_seed", "max_length")
TOO_LONG = "longer than max_length"
DUPLICATE = "exact duplicate"


@dataclass
class PreparedSplit:
    """Where the split lives and how it was made (counts of everything dropped)."""

    train_file: Path
    heldout_file: Path
    summary: dict[str, Any]

    @property
    def has_margins(self) -> bool:
        return bool(self.summary["train_with_margin"]) and self.summary["train_with_margin"] == self.summary["train"]

    def margin_note(self) -> str | None:
        """Why the margin loss cannot run on this data, or None when every training pair has a margin."""
        with_margin, total = self.summary["train_with_margin"], self.summary["train"]
        if with_margin == total:
            return None
        if with_margin == 0:
            return "n/a: no margins in the data"
        return f"n/a: only {with_margin} of {total} training pairs have a margin"


def resolve_train_data(spec: str, data_root: str | Path | None = None) -> str:
    """``hh-rlhf-harmless`` becomes the file under the data root; other specs pass through unchanged."""
    if spec in TRAIN_DATA_ALIASES:
        root = Path(data_root).expanduser() if data_root is not None else default_data_root()
        path = root / TRAIN_DATA_ALIASES[spec]
        if not path.is_file():
            raise DataError(
                str(path), f"training data {spec!r} is missing; pass --data-root to the folder that holds {HH_RLHF_HARMLESS_FILE}"
            )
        return str(path)
    return spec


def unified_feedback_subsample(
    source: str, *, config: str | None, every: int, report: LoadReport | None = None
) -> list[PreferencePair]:
    """Unified-Feedback's ``train`` split (hub name or local folder), equal ratings dropped, then every
    ``every``-th pair: how GRM builds its 40K (every 20th) and 400K (every 2nd) training sets."""
    from rewardlab.data.sources import read_hub_dataset
    from rewardlab.evaluate.formats.unified_feedback import unified_feedback_pairs

    records = read_hub_dataset(source, "train", {"config": config} if config else {})
    pairs = unified_feedback_pairs(records, report=report)
    kept = pairs[::every]
    if report is not None:
        report.kept += len(kept)
    return kept


def load_training_pairs(spec: str, data_root: str | Path | None, report: LoadReport) -> tuple[str, list[PreferencePair]]:
    """The source description and the pairs of a training-data spec or alias (see `repro.config`)."""
    if spec in HUB_TRAIN_DATA:
        source, config, every = HUB_TRAIN_DATA[spec]
        described = f"{source} (config {config}, train split, every {every}th pair after dropping equal ratings)"
        return described, unified_feedback_subsample(source, config=config, every=every, report=report)
    resolved = resolve_train_data(spec, data_root)
    return resolved, load_pairs(resolved, report=report)


def pair_key(prompt: Any, chosen: str, rejected: str) -> str:
    """A stable identity for a (prompt, chosen, rejected) triple."""
    text = json.dumps([[dict(m) for m in prompt], chosen, rejected], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_jsonl(path: Path, pairs: list[PreferencePair]) -> str:
    text = "".join(json.dumps(p.to_record(), ensure_ascii=False) + "\n" for p in pairs)
    write_text_atomic(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_split(config: ReproConfig, out_dir: Path, tokenizer: Any, echo=print) -> PreparedSplit:
    """Build (or reuse) ``out_dir/data/{train,heldout}.jsonl`` for ``config``.

    An existing split made with other settings, or whose files changed, is an error rather than
    a silent rebuild: the models trained on it would no longer match.
    """
    folder = out_dir / DATA_FOLDER
    split_path = folder / SPLIT_FILE
    settings = {name: getattr(config, name) for name in SPLIT_FIELDS}
    if split_path.is_file():
        summary = json.loads(split_path.read_text(encoding="utf-8"))
        if summary.get("settings") != settings:
            raise ConfigError(f"{split_path} was made with {summary.get('settings')}, not {settings}; use another --out")
        for name, key in ((TRAIN_FILE, "train_sha256"), (HELDOUT_FILE, "heldout_sha256")):
            if not (folder / name).is_file() or _file_sha256(folder / name) != summary[key]:
                raise ConfigError(f"{folder / name} is missing or was changed since the split was made; use another --out")
        echo(f"data split: reusing {folder} ({summary['train']} training, {summary['heldout']} held-out pairs)")
        return PreparedSplit(folder / TRAIN_FILE, folder / HELDOUT_FILE, summary)

    report = LoadReport()
    spec, pairs = load_training_pairs(config.train_data, config.data_root, report)
    echo(f"training data {spec}: {report.summary()}")
    dropped: Counter = Counter()
    unique: list[PreferencePair] = []
    seen: set[str] = set()
    for pair in pairs:
        key = pair_key(pair.prompt, pair.chosen, pair.rejected)
        if key in seen:
            dropped[DUPLICATE] += 1
            continue
        seen.add(key)
        unique.append(pair)
    fitting = []
    for pair, rendered in zip(unique, render_pairs(tokenizer, unique, config.max_length, "drop")):
        if rendered is None:
            dropped[TOO_LONG] += 1
        else:
            fitting.append(pair)
    needed = config.train_pairs + config.heldout_pairs
    if len(fitting) < needed:
        raise ConfigError(
            f"{spec}: only {len(fitting)} usable pairs of at most {config.max_length} tokens "
            f"({dict(dropped)} dropped), but --train-pairs {config.train_pairs} + --heldout-pairs "
            f"{config.heldout_pairs} = {needed} are needed; lower them or raise --max-length"
        )
    random.Random(config.data_seed).shuffle(fitting)
    heldout = fitting[: config.heldout_pairs]
    train = fitting[config.heldout_pairs : needed]
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "settings": settings,
        "source": spec,
        "loaded": len(pairs),
        "skipped_by_loader": dict(report.skipped),
        "dropped": dict(dropped),
        "usable": len(fitting),
        "train": len(train),
        "heldout": len(heldout),
        "train_with_margin": sum(p.margin is not None for p in train),
        "hh_rlhf_test_split": spec.endswith(HH_RLHF_HARMLESS_FILE),
        "train_sha256": _write_jsonl(folder / TRAIN_FILE, train),
        "heldout_sha256": _write_jsonl(folder / HELDOUT_FILE, heldout),
    }
    write_text_atomic(split_path, json.dumps(summary, indent=2) + "\n")
    echo(
        f"data split: {len(pairs)} pairs loaded, {sum(dropped.values())} dropped ({dict(dropped) or 'none'}), "
        f"{len(heldout)} held out, {len(train)} for training; written to {folder}"
    )
    return PreparedSplit(folder / TRAIN_FILE, folder / HELDOUT_FILE, summary)
