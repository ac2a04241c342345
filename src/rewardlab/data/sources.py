"""Read raw records, each with its location, from files, local `datasets` folders and the hub.

Locations are ``path:line`` (1-based) for JSON Lines and ``path[index]`` (0-based) for everything else,
so every error and skip can point back at the record.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewardlab.data.report import DataError

FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
HUB_OPTIONS = ("config", "data_dir", "revision")

Record = tuple[str, Any]
"""``(location, record)``: a raw record as read, before any validation."""


def looks_like_path(spec: str) -> bool:
    """Whether ``spec`` is meant as a local path (so a missing file is an error, not a hub lookup)."""
    return (
        spec.endswith(FILE_SUFFIXES)
        or spec.startswith(("/", "./", "../", "~", "."))
        or Path(spec).expanduser().exists()
    )


def read_file(path_text: str) -> Iterator[Record]:
    """Records of a ``.jsonl[.gz]``, ``.json[.gz]`` (one list of objects) or ``.parquet`` file."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(path_text, "file not found" if not path.exists() else "not a regular file")
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _read_parquet(path, path_text)
    raw = _read_bytes(path, path_text)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_json_lines(raw, path_text)
    if name.endswith((".json", ".json.gz")):
        return _read_json_list(raw, path_text)
    raise DataError(path_text, f"unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")


def read_dataset_folder(path_text: str, split: str | None) -> Iterator[Record]:
    """Records of a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(Path(path_text).expanduser()))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(path_text, f"cannot read as a saved datasets folder: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        split = _pick_split(loaded, split, path_text)
        return _read_rows(loaded[split], f"{path_text}[{split}]")
    if split is not None and str(loaded.split) not in (split, "None"):
        raise DataError(path_text, f"holds one dataset of split {loaded.split!r}, not {split!r}")
    return _read_rows(loaded, path_text)


def read_hub_dataset(name: str, split: str | None, options: dict[str, str]) -> Iterator[Record]:
    """Records of a hub dataset (or a local folder of data files) via ``datasets.load_dataset``."""
    import datasets

    unknown = sorted(set(options) - set(HUB_OPTIONS))
    if unknown:
        raise DataError(name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(HUB_OPTIONS)}")
    split = split or "train"
    try:
        dataset = datasets.load_dataset(
            name,
            options.get("config"),
            split=split,
            data_dir=options.get("data_dir"),
            revision=options.get("revision"),
        )
    except Exception as exc:  # datasets raises many types (network, missing split, bad config)
        raise DataError(name, f"could not load dataset (split {split!r}): {type(exc).__name__}: {exc}") from exc
    return _read_rows(dataset, f"{name}[{split}]")


def _read_bytes(path: Path, path_text: str) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(path_text, f"cannot read file: {exc}") from exc


def _read_json_lines(raw: bytes, path_text: str) -> Iterator[Record]:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        location = f"{path_text}:{number}"
        text = _decode(line, location, strip_bom=number == 1).strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(location, f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
        yield location, record


def _read_json_list(raw: bytes, path_text: str) -> Iterator[Record]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path_text}:{line}", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path_text}:{exc.lineno}",
            f"invalid JSON: {exc.msg} (column {exc.colno}); a .json file must hold one list of objects "
            "(use .jsonl for one object per line)",
        ) from exc
    if not isinstance(data, list):
        raise DataError(path_text, f"a .json file must hold a list of objects, got {type(data).__name__}")
    for index, record in enumerate(data):
        yield f"{path_text}[{index}]", record


def _read_parquet(path: Path, path_text: str) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(path_text, f"cannot read as Parquet: {exc}") from exc
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            yield f"{path_text}[{index}]", record
            index += 1


def _read_rows(dataset: Any, label: str) -> Iterator[Record]:
    index = 0
    for batch in dataset.iter(batch_size=1024):
        columns = list(batch)
        for row in zip(*(batch[column] for column in columns)):
            yield f"{label}[{index}]", dict(zip(columns, row))
            index += 1


def _pick_split(dataset_dict: Any, split: str | None, label: str) -> str:
    available = list(dataset_dict)
    if split is None:
        if "train" in dataset_dict:
            return "train"
        if len(available) == 1:
            return available[0]
        raise DataError(label, f"holds several splits ({', '.join(available)}); choose one with split=")
    if split not in dataset_dict:
        raise DataError(label, f"has no split {split!r}; available: {', '.join(available)}")
    return split


def _decode(line: bytes, location: str, *, strip_bom: bool) -> str:
    if strip_bom and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(location, f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from exc
