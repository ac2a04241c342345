"""Types shared by the sandbox backends: limits, command results, the session protocol, errors."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from rewardlab.errors import RewardlabError

HOME = "/root"
"""Where the episode files live inside the sandbox; also the starting working directory."""


class SandboxUnavailable(RewardlabError, RuntimeError):
    """The requested sandbox cannot run on this machine; the message says how to fix it."""


class SandboxError(RuntimeError):
    """The sandbox machinery itself failed (not the command it ran)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits applied to every command.

    Per-process kernel limits: ``cpu_seconds`` (RLIMIT_CPU), ``memory_bytes`` (RLIMIT_AS),
    ``max_processes`` (RLIMIT_NPROC, counted inside the sandbox's own user namespace),
    ``file_size_bytes`` (RLIMIT_FSIZE), ``open_files`` (RLIMIT_NOFILE). Whole-command limits:
    ``command_timeout`` seconds of wall-clock time, ``total_memory_bytes`` of resident memory
    summed over all of the command's processes (checked every 50 ms), ``output_bytes`` kept per
    stream (the command is stopped once it writes more). Filesystem limits: ``disk_bytes`` for
    the episode directory and ``tmp_bytes`` for the private ``/tmp`` (both size-limited tmpfs).
    """

    command_timeout: float = 20.0
    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    total_memory_bytes: int = 2 << 30
    max_processes: int = 64
    file_size_bytes: int = 16 << 20
    open_files: int = 256
    output_bytes: int = 10_000
    disk_bytes: int = 64 << 20
    tmp_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"sandbox limit {name} must be positive, got {value!r}")

    def as_runner_dict(self) -> dict[str, int]:
        """The per-process limits in the form the in-sandbox runner reads."""
        return {
            "cpu_seconds": int(self.cpu_seconds),
            "memory_bytes": int(self.memory_bytes),
            "total_memory_bytes": int(self.total_memory_bytes),
            "max_processes": int(self.max_processes),
            "file_size_bytes": int(self.file_size_bytes),
            "open_files": int(self.open_files),
        }


@dataclass
class CommandResult:
    """What one command did. ``notes`` explain limits that were hit, in plain words."""

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    output_truncated: bool = False
    notes: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready summary for the episode record (outputs are in the transcript)."""
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 4),
            "timed_out": self.timed_out,
            "output_truncated": self.output_truncated,
            "notes": list(self.notes),
        }


class SandboxSession(Protocol):
    """One episode's isolated workspace; commands see the files left by earlier commands."""

    kind: str

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True) -> CommandResult:
        """Run a bash command in the current working directory.

        ``persist=False`` discards the command's file changes and directory change (used by
        graders, so checking an episode never alters it).
        """

    def files(self) -> dict[str, bytes]:
        """Regular files of the workspace, by path relative to the home directory."""

    def close(self) -> None:
        """Release the workspace."""


class Sandbox(Protocol):
    """Creates sessions; one session per episode."""

    kind: str
    limits: SandboxLimits

    def start(self, files: dict[str, str]) -> SandboxSession:
        """A fresh workspace holding ``files`` (paths relative to the home directory)."""


def file_digest(content: bytes) -> str:
    """Short content hash used to tell which files an episode changed."""
    return hashlib.sha256(content).hexdigest()[:16]


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, list[str]]:
    """Paths created, modified and deleted between two workspace listings."""
    created = sorted(set(after) - set(before))
    deleted = sorted(set(before) - set(after))
    modified = sorted(path for path in set(before) & set(after) if before[path] != after[path])
    return {"created": created, "modified": modified, "deleted": deleted}


def check_relative_path(path: str) -> str:
    """Reject absolute paths and ``..`` in environment file names (a bug in an environment, not in input)."""
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"environment file path must be relative and normalised, got {path!r}")
    return path
