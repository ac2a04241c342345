"""The run folder: ``run.json`` (settings), ``episodes.jsonl`` (finished episodes), ``errors.jsonl``.

Each episode is appended as one line with a single ``write`` on an ``O_APPEND`` file followed by
``fsync``, so a crash can at worst leave an incomplete last line; `repair_tail` cuts it off
before a resumed run appends again.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from rewardlab.errors import RewardlabError

EPISODES_FILE = "episodes.jsonl"
ERRORS_FILE = "errors.jsonl"
RUN_FILE = "run.json"

_append_lock = threading.Lock()


class RunFolderError(RewardlabError, ValueError):
    """A run folder is missing, unreadable, or holds a different run; the message says which file."""


@dataclass
class LoadedEpisodes:
    """Episode records of a run folder, plus lines that could not be read (counted, with examples)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    examples: list[str] = field(default_factory=list)


def _escape_surrogates(text: str) -> str:
    """Text that encodes as UTF-8: lone surrogates (undecodable file-name bytes, broken model output)
    become visible escapes such as ``\\xff`` instead of making the record unwritable."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", errors="surrogateescape" if _only_escaped_bytes(text) else "backslashreplace")
        return raw.decode("utf-8", errors="backslashreplace")


def _only_escaped_bytes(text: str) -> bool:
    """Whether every surrogate in ``text`` is one ``os.fsdecode`` made from a byte (U+DC80..U+DCFF)."""
    return all(0xDC80 <= ord(char) <= 0xDCFF for char in text if 0xD800 <= ord(char) <= 0xDFFF)


def json_safe(value: Any) -> Any:
    """``value`` with every string encodable as UTF-8 and every float finite-or-labelled, so that any
    record (whatever a policy made its files or replies contain) is strict JSON.

    Non-finite floats become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``."""
    if isinstance(value, str):
        return _escape_surrogates(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


_LINE_BREAKS = {code: f"\\u{code:04x}" for code in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


def encode_json_line(record: dict[str, Any]) -> bytes:
    """One strict-JSON line (UTF-8, no NaN) for ``record``."""
    text = json.dumps(json_safe(record), ensure_ascii=False, allow_nan=False, default=repr)
    # Characters that str.splitlines() and some JSONL readers take for line ends, escaped inside strings.
    text = text.translate(_LINE_BREAKS)
    return (text + "\n").encode("utf-8")


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line, atomically with respect to other appends and crashes.

    Never fails on the record's content (see `json_safe`): one odd episode cannot stop a run.
    """
    line = encode_json_line(record)
    with _append_lock:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(descriptor, line)
            if written != len(line):
                raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def repair_tail(path: Path) -> int:
    """Drop an incomplete last line (left by a crash mid-write); return the number of bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        position = size - 1
        chunk = 65536
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            data = handle.read(position - start)
            newline = data.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                handle.truncate(keep)
                return size - keep
            position = start
        handle.truncate(0)
        return size


def load_episodes(folder: Path) -> LoadedEpisodes:
    """Read ``episodes.jsonl``; unreadable lines are counted and reported, not fatal."""
    path = Path(folder) / EPISODES_FILE
    if not path.exists():
        raise RunFolderError(f"{path} does not exist; is {folder} a folder written by `rewardlab envs run`?")
    loaded = LoadedEpisodes()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "id" not in record or "outcome" not in record or "env" not in record:
                    raise ValueError("missing id, env or outcome")
            except ValueError as error:
                loaded.bad_lines += 1
                if len(loaded.examples) < 3:
                    loaded.examples.append(f"{path}:{number}: {error}")
                continue
            loaded.records.append(record)
    return loaded


def read_run_settings(folder: Path) -> dict[str, Any] | None:
    """The folder's ``run.json``, or None if there is none yet."""
    path = Path(folder) / RUN_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunFolderError(f"{path} is unreadable: {error}") from error
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} should hold a JSON object")
    return data
