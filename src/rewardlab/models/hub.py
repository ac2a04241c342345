"""Upload a saved reward model folder to the Hugging Face Hub (`rewardlab push`, `train --push-to-hub`).

Only the model goes up: the files `save_reward_model` writes (weights or adapter, head, tokenizer,
`rewardlab_config.json`, the model card `README.md`) plus the run's record beside them
(`metrics.json`, `loss.png`). Checkpoints, optimizer state, snapshots, TensorBoard logs and any other
files in the folder stay local. The Hub address follows ``HF_ENDPOINT`` (read when pushing) and the
token ``HF_TOKEN`` or ``hf auth login``, as for every Hugging Face tool.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from rewardlab.errors import ConfigError, RewardlabError

RUN_RECORD_FILES = ("metrics.json", "loss.png")
"""Files of the training run that go up with the model: what it measured and its training curves."""


class HubError(RewardlabError):
    """The Hub refused or could not be reached; the message says which request and why."""


@dataclass(frozen=True)
class PushResult:
    """Where a push went: the repository, its URL, the commit and the files uploaded (sorted)."""

    repo_id: str
    url: str
    commit_url: str
    files: tuple[str, ...]


def check_repo_id(repo_id: str, *, what: str = "repository id") -> str:
    """``repo_id`` if it is a valid Hub repository id (``name`` or ``owner/name``), else a `ConfigError`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        first = str(error).strip().splitlines()[0]
        raise ConfigError(f"{what} {repo_id!r} is not a Hub repository id (owner/name, letters, digits, '-', '_', "
                          f"'.'): {first}") from None
    return repo_id


def pushed_files(folder: str | Path) -> list[str]:
    """The files of a saved model folder that a push uploads (relative names, sorted).

    Raises `CheckpointError` when ``folder`` is not a saved reward model.
    """
    from rewardlab.models.persistence import MODEL_ARTIFACT_NAMES, MODEL_ARTIFACT_PREFIXES, read_reward_config

    root = Path(folder)
    read_reward_config(root)  # a rewardlab model folder, or a one-line error saying why not
    names = []
    for entry in sorted(root.iterdir()):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        model_file = entry.name in MODEL_ARTIFACT_NAMES or entry.name.startswith(MODEL_ARTIFACT_PREFIXES)
        if model_file or entry.name in RUN_RECORD_FILES:
            names.append(entry.name)
    return names


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection/timeout error types (huggingface_hub uses httpx, or its fork httpx2)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def push_reward_model(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Create ``repo_id`` on the Hub if needed and upload the model files of ``folder`` in one commit.

    ``revision`` is a branch, created when missing. ``endpoint`` defaults to ``HF_ENDPOINT`` (else
    huggingface.co). A folder that is no saved model, a bad repo id, a refused token or any HTTP
    failure is a one-line `RewardlabError`.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    root = Path(folder)
    files = pushed_files(root)
    check_repo_id(repo_id)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    step = "create the repository"
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        full_id = repo.repo_id
        if revision not in (None, "main"):
            step = f"create branch {revision!r}"
            api.create_branch(full_id, branch=revision, exist_ok=True, repo_type="model")
        step = "upload the files"
        commit = api.upload_folder(
            repo_id=full_id, folder_path=str(root), allow_patterns=files, repo_type="model", revision=revision,
            commit_message=commit_message or f"Upload reward model {root.name} with rewardlab",
        )
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        hint = {401: "; the token was refused: set HF_TOKEN, pass --token or run `hf auth login`",
                403: "; the token may not write to this namespace (a write token is needed)"}.get(status, "")
        reason = getattr(error, "server_message", None) or str(error).splitlines()[0]
        raise HubError(f"push of {root} to {repo_id} failed to {step}: HTTP {status}: {_one_line(reason)}{hint}") \
            from None
    except OfflineModeIsEnabled:
        raise HubError(f"push of {root} to {repo_id}: HF_HUB_OFFLINE is set; unset it to reach the Hub") from None
    except (OSError, ValueError, *_transport_errors()) as error:  # unreachable, timeout, invalid README metadata
        raise HubError(f"push of {root} to {repo_id} failed to {step}: {_one_line(error)}") from None
    return PushResult(repo_id=full_id, url=str(repo), commit_url=commit.commit_url, files=tuple(files))
