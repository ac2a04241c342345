"""Atomic writes: a file is either its old content or its complete new content, never half-written.

Every report, cache, metrics file and plot rewardlab writes goes through here, so an interrupted job
never leaves a truncated file that a resumed run would trust. `read_json_store` reads back the
JSON stores resumable jobs keep (missing or unreadable: start empty, the work is redone).

Temporary files and folders are created with the ordinary modes (0666 / 0777) minus the process
umask, as ``open()`` and ``mkdir`` would, not ``tempfile``'s owner-only 0600 / 0700: outputs must be
readable by whoever the user's umask allows (another account, a serving container). Libraries that
write owner-only files themselves (safetensors writes 0600) are corrected with `honour_umask`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ATTEMPTS = 100


def create_temp_file(folder: str | os.PathLike[str], prefix: str, suffix: str = ".tmp") -> Path:
    """Create a new empty file in ``folder`` with a unique name; its mode follows the umask (0666 & ~umask)."""
    for _ in range(_ATTEMPTS):
        candidate = Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a unique temporary file in {folder}")


def create_temp_dir(parent: str | os.PathLike[str], prefix: str) -> Path:
    """Create a new empty folder in ``parent`` with a unique name; its mode follows the umask (0777 & ~umask)."""
    for _ in range(_ATTEMPTS):
        candidate = Path(parent) / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(candidate, 0o777)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a unique temporary folder in {parent}")


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (no race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (and, for a folder, everything in it) the modes ``open``/``mkdir`` would: 0666 or, for
    folders and executables, 0777, minus the umask. For outputs some library wrote owner-only."""
    allowed = 0o777 & ~current_umask()
    root = Path(path)
    entries = [root, *root.rglob("*")] if root.is_dir() else [root]
    for entry in entries:
        if entry.is_symlink():
            continue
        executable = entry.is_dir() or entry.stat().st_mode & 0o111
        os.chmod(entry, allowed if executable else allowed & 0o666)


def _replace_atomically(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Create ``path``'s folder, call ``write(temporary)`` beside it, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = str(create_temp_file(path.parent, prefix=f".{path.name}.", suffix=suffix))
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


def finish_figure(figure: Any, path: Path, *, dpi: int = 120, footer: str | None = None) -> Path:
    """Lay out, save atomically (`save_figure_atomic`) and close a matplotlib figure; returns ``path``.

    ``footer`` (how the figure was made: command, versions, hardware, wall time) is printed small at
    its foot, so the PNG read alone says where it came from.
    """
    import textwrap

    import matplotlib.pyplot as plt

    if footer:
        lines = textwrap.wrap(footer, width=int(figure.get_figwidth() * 20))
        figure.text(0.005, 0.005, "\n".join(lines), fontsize=6, color="0.35", va="bottom", ha="left")
        figure.tight_layout(rect=(0, 0.03 * (len(lines) + 1), 1, 1))
    else:
        figure.tight_layout()
    try:
        save_figure_atomic(figure, Path(path), dpi=dpi)
    finally:
        plt.close(figure)
    return Path(path)


def read_json_store(path: Path) -> dict[str, Any]:
    """The JSON object stored at ``path``, or {} if there is none or it cannot be read as one."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
