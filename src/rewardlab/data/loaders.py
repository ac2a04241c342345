"""`load_pairs`: one entry point from a data spec string to a list of `PreferencePair`.

Spec forms:

* ``synthetic``, ``synthetic:id``, ``synthetic:ood``, optionally with options
  ``?n=200&seed=3&spurious_correlation=0.9`` (see `rewardlab.data.synthetic`);
* a file: ``.jsonl``, ``.jsonl.gz``, ``.json`` (one list of objects), ``.json.gz``, ``.parquet``;
* a folder written by ``datasets``' ``save_to_disk`` (or a folder of data files ``load_dataset`` reads),
  optionally ``folder?split=test``;
* a hub dataset name, optionally ``name?split=test&config=…&data_dir=…&revision=…``, loaded with
  ``datasets.load_dataset(name, config, split=split or "train")``.

Every spec takes ``?split=`` (the same as the ``split`` argument); without one, a folder or hub dataset
gives its ``train`` split, and one without a ``train`` split is refused with the list of its splits.

Broken input raises `DataError` (file, line/record and field named); unusable records are counted
skips in the `LoadReport`. Skips are never silent: without a report from the caller they are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import chain, islice
from pathlib import Path

from rewardlab.data.formats import SkipRecord, detect_format, record_to_pair
from rewardlab.data.pair import PreferencePair
from rewardlab.data.report import DataError, LoadReport
from rewardlab.data.sources import (
    Record,
    looks_like_path,
    read_data_files_folder,
    read_dataset_folder,
    read_file,
    read_hub_dataset,
)
from rewardlab.data.synthetic import SPLITS as SYNTHETIC_SPLITS
from rewardlab.data.synthetic import generate

__all__ = ["DataError", "LoadReport", "load_pairs", "parse_spec"]

SYNTHETIC_DEFAULTS = {"n": 1000, "seed": 0, "spurious_correlation": 0.8}
DATASET_FOLDER_MARKERS = ("dataset_dict.json", "state.json")

logger = logging.getLogger(__name__)


def load_pairs(
    spec: str,
    *,
    split: str | None = None,
    report: LoadReport | None = None,
    limit: int | None = None,
) -> list[PreferencePair]:
    """Load preference pairs from ``spec``; at most ``limit`` kept pairs if given.

    ``split`` (or ``?split=`` in the spec) picks a split of a dataset folder or hub dataset (default
    ``train``); for synthetic data it may be ``id``/``ood``; files have no splits, so passing one is an
    error. A source without a single record is an error too.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer; got {limit!r}")
    caller_report = report is not None
    report = report if report is not None else LoadReport()
    report.source = report.source or spec

    base, options = parse_spec(spec)
    split = _merge_split(spec, options.pop("split", None), split)
    if base == "synthetic" or base.startswith("synthetic:"):
        pairs = _load_synthetic(spec, base, options, split, limit)
        report.format = "synthetic"
        report.kept += len(pairs)
        return pairs

    records = _open_records(spec, base, options, split)
    pairs = _convert(spec, records, report, limit)
    if not pairs and report.total_skipped:
        raise DataError(spec, f"no usable preference pairs: {report.summary()}")
    if report.total_skipped and not caller_report:
        logger.warning("%s", report.summary())
    return pairs


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``"base?key=value&key=value"`` into the base and its options (existing paths are kept whole)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"data spec must be a non-empty string; got {spec!r}")
    if "?" not in spec or Path(spec).expanduser().exists():
        return spec, {}
    base, _, query = spec.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataError(spec, f"option {item!r} must look like key=value")
        if key in options:
            raise DataError(spec, f"option {key!r} given twice")
        options[key] = value
    return base, options


def _merge_split(spec: str, from_spec: str | None, argument: str | None) -> str | None:
    if from_spec is not None and not from_spec:
        raise DataError(spec, "option split= needs a split name, e.g. ?split=test")
    if from_spec is not None and argument is not None and from_spec != argument:
        raise DataError(spec, f"spec names split {from_spec!r} but split={argument!r} was passed")
    return from_spec if from_spec is not None else argument


def _load_synthetic(
    spec: str, base: str, options: dict[str, str], split: str | None, limit: int | None
) -> list[PreferencePair]:
    named_split = base.partition(":")[2] or None
    if named_split is not None and named_split not in SYNTHETIC_SPLITS:
        raise DataError(spec, f"unknown synthetic split {named_split!r}; use synthetic:id or synthetic:ood")
    if split is not None and split not in SYNTHETIC_SPLITS:
        raise DataError(spec, f"synthetic data has splits {', '.join(SYNTHETIC_SPLITS)}, not {split!r}")
    if named_split and split and named_split != split:
        raise DataError(spec, f"spec names split {named_split!r} but split={split!r} was passed")
    settings = dict(SYNTHETIC_DEFAULTS)
    for key, value in options.items():
        if key not in settings:
            raise DataError(spec, f"unknown option {key!r}; allowed: {', '.join(SYNTHETIC_DEFAULTS)}")
        try:
            settings[key] = float(value) if key == "spurious_correlation" else int(value)
        except ValueError as exc:
            raise DataError(spec, f"option {key}={value!r} is not a number") from exc
    try:
        pairs = generate(
            split=named_split or split or "id",
            n=int(settings["n"]),
            seed=int(settings["seed"]),
            spurious_correlation=float(settings["spurious_correlation"]),
        )
    except ValueError as exc:
        raise DataError(spec, str(exc)) from exc
    # Slicing (rather than generating fewer) keeps a limited load a prefix of the full one.
    return pairs if limit is None else pairs[:limit]


def _open_records(spec: str, base: str, options: dict[str, str], split: str | None) -> Iterable[Record]:
    """The raw records behind a non-synthetic spec."""
    path = Path(base).expanduser()
    if path.is_dir():
        if options:
            raise DataError(spec, f"local folders take only the option split=, not {', '.join(options)}")
        if any((path / marker).exists() for marker in DATASET_FOLDER_MARKERS):
            return read_dataset_folder(base, split)
        return read_data_files_folder(base, split)
    if looks_like_path(base):
        if options:
            raise DataError(spec, f"files take no options (got {', '.join(options)})")
        if split is not None:
            raise DataError(spec, f"a file has no splits, but split={split!r} was passed")
        return read_file(base)
    return read_hub_dataset(base, split, options)


def _convert(spec: str, records: Iterable[Record], report: LoadReport, limit: int | None) -> list[PreferencePair]:
    """Validate and convert records until ``limit`` pairs are kept, counting every skip."""
    pairs: list[PreferencePair] = []
    if limit == 0:
        return pairs
    iterator = iter(records)
    first: list[Record] = list(islice(iterator, 1))
    if not first:
        raise DataError(spec, "holds no records (the file or split is empty)")
    location, record = first[0]
    record_format = detect_format(record, location)
    report.format = report.format or record_format
    for location, record in chain(first, iterator):
        try:
            pairs.append(record_to_pair(record, location, record_format=record_format))
        except SkipRecord as skip:
            report.skip(skip.reason, location)
            continue
        report.kept += 1
        if limit is not None and len(pairs) >= limit:
            break
    return pairs

