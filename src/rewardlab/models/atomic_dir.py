"""Replace an output folder as a whole: write a sibling temp folder, then rename it into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

from rewardlab.errors import UserFileError
from rewardlab.files import create_temp_dir, honour_umask


def _is_model_artifact(name: str, artifact_names: Collection[str], artifact_prefixes: Collection[str]) -> bool:
    return name in artifact_names or any(name.startswith(prefix) for prefix in artifact_prefixes)


def replace_dir_atomically(
    out_dir: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    artifact_names: Collection[str] = (),
    artifact_prefixes: Collection[str] = (),
) -> Path:
    """Run `write(staging_dir)` and swap the result in as `out_dir`.

    Model files are never a mix of an old and a new save. If `out_dir` already exists, the
    entries in it that are not model artifacts (named by `artifact_names`/`artifact_prefixes`,
    e.g. a `metrics.json` or a `checkpoints/` folder a trainer keeps there) are moved into the
    new folder, so saving a model does not delete a run's other outputs. If `write` fails, the
    old folder is left untouched.
    """
    target = Path(out_dir).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise UserFileError(f"output path {target} exists and is a file, not a folder; choose another output")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = create_temp_dir(target.parent, prefix=f".{target.name}.tmp-")  # mode follows the umask
    try:
        write(staging)
        honour_umask(staging)  # e.g. safetensors writes its files owner-only (0600)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # From here on the staging folder may hold the user's own files: never delete it on error.
    if target.exists():
        for entry in target.iterdir():
            name = entry.name
            if _is_model_artifact(name, artifact_names, artifact_prefixes) or (staging / name).exists():
                continue
            os.rename(entry, staging / name)
        retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        os.rename(target, retired)
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, target)
    return target
