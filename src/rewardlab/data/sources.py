"""Read raw records, each with its location, from files, local `datasets` folders and the hub.

Locations are ``path:line`` (1-based) for JSON Lines and ``path[index]`` (0-based) for everything else,
so every error and skip can point back at the record.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewardlab.data.report import DataError

FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
# Data files a folder may hold that `read_file` reads exactly as `datasets` would, with line numbers.
# (``datasets`` also reads JSON Lines from a ``.json`` file, which `read_file` refuses, so those go to it.)
NATIVE_FOLDER_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
HUB_OPTIONS = ("config", "data_dir", "revision")
SPLIT_HINT = "choose one with ?split=NAME"

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
    import pyarrow as pa

    try:
        loaded = datasets.load_from_disk(str(Path(path_text).expanduser()))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        # A damaged folder: missing or truncated arrow files, an unreadable state.json/dataset_dict.json.
        raise DataError(path_text, f"cannot read as a saved datasets folder: {_describe(exc)}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        split = pick_split(list(loaded), split, path_text)
        return _read_rows(loaded[split], f"{path_text}[{split}]")
    if split is not None and str(loaded.split) not in (split, "None"):
        raise DataError(path_text, f"holds one dataset of split {loaded.split!r}, not {split!r}")
    return _read_rows(loaded, path_text)


def read_data_files_folder(path_text: str, split: str | None) -> Iterator[Record]:
    """Records of a local folder of data files, split into splits by ``datasets``' own file-name rules.

    JSON Lines and Parquet files are read here, so errors and sources name ``file:line`` / ``file[index]``;
    any other layout (CSV, ``.json``, …) goes through ``datasets.load_dataset``.
    """
    import datasets

    try:
        data_files = datasets.load_dataset_builder(str(Path(path_text).expanduser())).config.data_files
    except Exception as exc:  # datasets raises many types for a folder it cannot make sense of
        raise DataError(path_text, f"cannot read as a folder of data files: {_describe(exc)}") from exc
    files = {str(name): [str(file) for file in listed] for name, listed in (data_files or {}).items()}
    native = files and all(f.lower().endswith(NATIVE_FOLDER_SUFFIXES) for listed in files.values() for f in listed)
    if not native or (split is not None and "[" in split):  # slices such as "train[:100]" are datasets' syntax
        return read_hub_dataset(path_text, split, {})
    chosen = pick_split(list(files), split, path_text)
    return (record for file in files[chosen] for record in read_file(file))


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
    except ValueError as exc:
        available = _available_splits(exc)
        if available is None:
            raise DataError(name, f"could not load dataset (split {split!r}): {_describe(exc)}") from exc
        raise DataError(name, f"has no split {split!r}; available: {', '.join(available)}; {SPLIT_HINT}") from exc
    except Exception as exc:  # datasets raises many types (network, missing dataset, bad config, bad rows)
        raise DataError(name, f"could not load dataset (split {split!r}): {_describe(exc)}") from exc
    return _read_rows(dataset, f"{name}[{split}]")


def pick_split(available: list[str], split: str | None, label: str) -> str:
    """The split to read: ``split`` if given and present, else ``train``; otherwise a `DataError` listing them."""
    if split is None:
        if "train" in available:
            return "train"
        raise DataError(label, f"has no 'train' split (splits: {', '.join(available)}); {SPLIT_HINT}")
    if split not in available:
        raise DataError(label, f"has no split {split!r}; available: {', '.join(available)}; {SPLIT_HINT}")
    return split


def _available_splits(exc: ValueError) -> list[str] | None:
    """The split names in ``datasets``' 'Unknown split "x". Should be one of [...]' error, if it is one."""
    match = re.fullmatch(r'Unknown split "[^"]*"\. Should be one of \[(.*)\]\.', str(exc))
    if match is None:
        return None
    return [name.strip().strip("'\"") for name in match.group(1).split(",") if name.strip()]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an exception and of what caused it (``datasets`` wraps the useful part)."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 3:
        parts.append(f"{type(seen).__name__}: {_one_line(seen)}")
        seen = seen.__cause__
    return "; caused by ".join(parts)


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
        yield location, _parse_json(text, location, whole_file=False)


def _read_json_list(raw: bytes, path_text: str) -> Iterator[Record]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path_text}:{line}", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from exc
    data = _parse_json(text, path_text, whole_file=True)
    if not isinstance(data, list):
        raise DataError(path_text, f"a .json file must hold a list of objects, got {type(data).__name__}")
    for index, record in enumerate(data):
        yield f"{path_text}[{index}]", record


def _parse_json(text: str, location: str, *, whole_file: bool) -> Any:
    """``json.loads`` whose every failure is a `DataError`; for a ``whole_file`` the failing line is named."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if not whole_file:
            raise DataError(location, f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
        raise DataError(
            f"{location}:{exc.lineno}",
            f"invalid JSON: {exc.msg} (column {exc.colno}); a .json file must hold one list of objects "
            "(use .jsonl for one object per line)",
        ) from exc
    except RecursionError as exc:
        raise DataError(location, "invalid JSON: nested too deeply to read") from exc
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise DataError(location, f"invalid JSON: {exc}") from exc


def _read_parquet(path: Path, path_text: str) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(path_text, f"cannot read as Parquet: {_one_line(exc)}") from exc
    index = 0
    batches = parquet.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches, None)
            records = [] if batch is None else batch.to_pylist()
        except (OSError, pa.ArrowException) as exc:
            message = f"cannot read Parquet rows from here on: {_one_line(exc)}"
            raise DataError(f"{path_text}[{index}]", message) from exc
        if batch is None:
            return
        for record in records:
            yield f"{path_text}[{index}]", record
            index += 1


def _read_rows(dataset: Any, label: str) -> Iterator[Record]:
    import pyarrow as pa

    index = 0
    batches = dataset.iter(batch_size=1024)
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{label}[{index}]", f"cannot read rows from here on: {_describe(exc)}") from exc
        if batch is None:
            return
        columns = list(batch)
        for row in zip(*(batch[column] for column in columns)):
            yield f"{label}[{index}]", dict(zip(columns, row))
            index += 1


def _decode(line: bytes, location: str, *, strip_bom: bool) -> str:
    if strip_bom and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(location, f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})") from exc
