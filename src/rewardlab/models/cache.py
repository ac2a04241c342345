"""A local cache of model folders that are built once and then reused.

Builders (GGUF conversion, the tiny random model) write into a temporary folder next to the
final one; the folder is renamed into place only when complete, and a file lock makes sure two
processes never build the same entry at once. A reader therefore sees either no folder or a
whole one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from rewardlab.files import create_temp_dir, honour_umask

CACHE_ENV_VAR = "REWARDLAB_CACHE"
MARKER_FILE = "rewardlab_cache.json"


def cache_root() -> Path:
    """The rewardlab cache directory: `$REWARDLAB_CACHE` or `~/.cache/rewardlab`."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "rewardlab"


def model_cache_dir(entry: str) -> Path:
    """Where the cached model folder named `entry` lives (it may not exist yet)."""
    return cache_root() / "models" / entry


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_current(folder: Path, recipe: dict[str, Any]) -> bool:
    marker = _read_marker(folder)
    return marker is not None and marker.get("recipe") == recipe


def cached_folder(entry: str, recipe: dict[str, Any], build: Callable[[Path], None]) -> Path:
    """Return the cache folder for `entry`, building it with `build(tmp_dir)` if absent or stale.

    `recipe` describes how the folder is made (builder version, source file, ...); a cached
    folder whose recorded recipe differs is rebuilt. Safe against concurrent callers.
    """
    final = model_cache_dir(entry)
    if _is_current(final, recipe):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{entry}.lock")):
        if _is_current(final, recipe):
            return final
        staging = create_temp_dir(final.parent, prefix=f".{entry}.tmp-")  # readable as the umask allows
        try:
            build(staging)
            (staging / MARKER_FILE).write_text(
                json.dumps({"entry": entry, "recipe": recipe}, indent=2), encoding="utf-8")
            honour_umask(staging)  # safetensors writes owner-only files
            if final.exists():
                retired = final.parent / f".{entry}.old-{uuid.uuid4().hex}"
                os.rename(final, retired)
                os.rename(staging, final)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final
