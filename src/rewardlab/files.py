"""Atomic writes: a file is either its old content or its complete new content, never half-written.

Every report, cache, metrics file and plot rewardlab writes goes through here, so an interrupted job
never leaves a truncated file that a resumed run would trust. `read_json_store` reads back the
JSON stores resumable jobs keep (missing or unreadable: start empty, the work is redone).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _replace_atomically(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Create ``path``'s folder, call ``write(temporary)`` beside it, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    _replace_atomically(Path(path), lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def save_figure_atomic(figure: Any, path: Path, *, dpi: int = 120) -> None:
    """Save a matplotlib figure to ``path`` atomically (the format follows ``path``'s suffix)."""
    suffix = Path(path).suffix or ".png"
    _replace_atomically(Path(path), lambda temporary: figure.savefig(temporary, dpi=dpi), suffix=suffix)


def read_json_store(path: Path) -> dict[str, Any]:
    """The JSON object stored at ``path``, or {} if there is none or it cannot be read as one."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
