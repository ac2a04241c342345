"""Shared helpers for the evaluation-format loaders: reading records and checking fields.

Every record comes with a location (``file:line`` for JSON Lines, ``file[index]`` for JSON lists
and Parquet rows, ``name[split][index]`` for hub datasets and local folders, as in the core
loaders), so a bad record becomes a `DataError` naming the file, the record and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rewardlab.data.dialogue import parse_dialogue
from rewardlab.data.loaders import DATASET_FOLDER_MARKERS, DataError, LoadReport, parse_spec
from rewardlab.data.pair import Message
from rewardlab.data.sources import looks_like_path, read_dataset_folder, read_file, read_hub_dataset

ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "system": "system",
}


def read_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, record) from a ``.json``, ``.jsonl[.gz]`` or ``.parquet`` file.

    Files are read by the core reader (`rewardlab.data.sources.read_file`); in addition a JSON
    file may be a BIG-bench task, an object whose ``examples`` list holds the records.
    """
    text = str(path)
    file = Path(text).expanduser()
    if file.name.lower().endswith(".json") and file.is_file():
        try:
            document = json.loads(file.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as error:
            raise DataError(f"{text}:{error.lineno}", f"invalid JSON: {error.msg} (column {error.colno})") from None
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(text, f"cannot read file: {error}") from None
        if isinstance(document, Mapping):
            examples = document.get("examples")
            if not isinstance(examples, list):
                raise DataError(text, "a JSON object must hold an 'examples' list (BIG-bench task layout)")
            for index, record in enumerate(examples):
                yield f"{text}[examples][{index}]", record
            return
        if isinstance(document, list):
            for index, record in enumerate(document):
                yield f"{text}[{index}]", record
            return
    yield from read_file(text)


def read_source(spec: str | Path, *, default_split: str) -> Iterator[tuple[str, Any]]:
    """Yield (location, record) from a file, a local folder or a hub dataset name.

    ``spec`` may end in ``?split=NAME`` (hub names and folders also take ``config``, ``data_dir``
    and ``revision``); without a split, ``default_split`` is read (``filtered`` for RewardBench).
    A hub name goes to ``datasets.load_dataset(name, split=...)``; a local folder laid out like the
    hub repository (data files, or a README with ``configs``) goes through that same call, and a
    ``save_to_disk`` folder is read with ``load_from_disk``. Files are read by `read_records`.
    """
    text = str(spec)
    base, options = parse_spec(text)
    split = options.pop("split", None)
    if split is not None and not split:
        raise DataError(text, "option split= needs a split name, e.g. ?split=test")
    path = Path(base).expanduser()
    if path.is_file():
        if split is not None or options:
            raise DataError(text, "a file has no splits or options; name a folder or hub dataset to choose a split")
        yield from read_records(base)
        return
    if path.is_dir():
        if options:
            raise DataError(text, f"local folders take only the option split=, not {', '.join(options)}")
        if any((path / marker).exists() for marker in DATASET_FOLDER_MARKERS):
            yield from read_dataset_folder(base, split or default_split)
        else:
            yield from read_hub_dataset(base, split or default_split, {})
        return
    if looks_like_path(base):
        yield from read_records(base)  # a missing file: the reader names it
        return
    yield from read_hub_dataset(base, split or default_split, options)


def first_record(path: str | Path) -> Any:
    """The first record of a file (used to detect its format)."""
    for _, record in read_records(path):
        return record
    raise DataError(str(path), "the file holds no records")


def require(record: Any, field: str, location: str) -> Any:
    """``record[field]``, or a `DataError` naming the location and the missing field."""
    if not isinstance(record, Mapping):
        raise DataError(location, f"expected an object, got {type(record).__name__}")
    if field not in record or record[field] is None:
        raise DataError(location, f"missing field '{field}'")
    return record[field]


def require_str(record: Any, field: str, location: str, *, allow_empty: bool = False) -> str:
    value = require(record, field, location)
    if not isinstance(value, str):
        raise DataError(location, f"field '{field}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(location, f"field '{field}' is empty")
    return value


def require_str_list(record: Any, field: str, location: str) -> list[str]:
    value = require(record, field, location)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise DataError(location, f"field '{field}' must be a non-empty list of strings")
    return list(value)


def parse_messages(value: Any, location: str, field: str) -> tuple[Message, ...]:
    """Validate a list of ``{"role", "content"}`` messages, normalising role aliases."""
    if not isinstance(value, list) or not value:
        raise DataError(location, f"field '{field}' must be a non-empty list of messages")
    messages: list[Message] = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise DataError(location, f"{field}[{index}] must be an object with a string 'content'")
        role = ROLE_ALIASES.get(str(message.get("role", "")).lower())
        if role is None:
            raise DataError(location, f"{field}[{index}] has unknown role {message.get('role')!r}")
        messages.append({"role": role, "content": message["content"]})
    return tuple(messages)


def split_dialogue(text: str) -> list[Message]:
    """Split HHH-style text into chat messages with the core dialogue parser.

    HHH inputs start with the first user turn without a ``Human:`` label and may continue with
    ``\n\nAssistant:``/``\n\nHuman:`` turns; the label is added before parsing.
    """
    return parse_dialogue(f"Human: {text}")


def record_skip(report: LoadReport | None, reason: str, example: str) -> None:
    """Count a dropped record in ``report`` (reason → count) and keep a few examples."""
    if report is not None:
        report.skip(reason, example)
