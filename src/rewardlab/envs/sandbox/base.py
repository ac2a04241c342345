"""Types shared by the sandbox backends: limits, command results, the session protocol, errors."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from rewardlab.errors import RewardlabError

HOME = "/root"
"""Where the episode files live inside the sandbox; also the starting working directory."""

RESULT_FD_ENV = "RL_RESULT_FD"
"""Environment variable naming the file descriptor of the result channel (``run(..., channel=True)``)."""

CHANNEL_BYTES = 64 << 10
"""At most this many bytes written to the result channel come back; the rest is dropped and flagged."""


class SandboxUnavailable(RewardlabError, RuntimeError):
    """The requested sandbox cannot run on this machine; the message says how to fix it."""


class SandboxError(RuntimeError):
    """The sandbox machinery itself failed (not the command it ran)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits applied to every command (README, "The sandbox", says which mechanism enforces each).

    Per-process kernel limits: ``cpu_seconds`` (RLIMIT_CPU), ``memory_bytes`` (RLIMIT_AS),
    ``max_processes`` (RLIMIT_NPROC, and the pids cgroup where there is one),
    ``file_size_bytes`` (RLIMIT_FSIZE), ``open_files`` (RLIMIT_NOFILE). Whole-sandbox limits:
    ``command_timeout`` seconds of wall-clock time per command; ``total_memory_bytes`` of memory
    held by the whole sandbox: its processes, the runner, the files in its tmpfs mounts, memfds
    and kernel memory (a memory cgroup where there is one; otherwise resident memory plus tmpfs
    use, polled, with memfds and System V shared memory blocked); ``output_bytes`` kept per stream
    (the command is stopped once it writes more). Filesystem limits: ``disk_bytes`` for the
    episode directory ``/root``, ``tmp_bytes`` for each of ``/tmp`` and ``/dev/shm`` (all
    size-limited tmpfs; ``/`` and ``/dev`` are read-only), and ``max_entries`` files, folders and
    links in those mounts together (a command that makes more is stopped; one that starts past
    the limit may add 1,000).
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
    max_entries: int = 20_000

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
            "max_entries": int(self.max_entries),
        }


@dataclass
class CommandResult:
    """What one command did. ``notes`` explain limits that were hit, in plain words.

    ``exit_code`` is ``None`` when the command was not run (too long, a NUL byte, a check whose
    workspace could not be copied); a negative code is the signal that killed it.
    """

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    output_truncated: bool = False
    notes: list[str] = field(default_factory=list)
    channel: bytes | None = None
    channel_truncated: bool = False

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

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True,
            channel: bool = False) -> CommandResult:
        """Run a bash command in the current working directory.

        ``persist=False`` discards the command's file changes and directory change (used by
        graders, so checking an episode never alters it): the workspace is put back exactly as it
        was. If it is too large to copy, the command is not run (``exit_code`` ``None``, with a
        note saying why). ``/tmp`` and ``/dev/shm`` are emptied after every command either way.

        ``channel=True`` gives the command a result channel: an extra pipe, inherited by the
        command's ``bash`` (and whatever it starts) as an open file descriptor whose number is in
        the environment variable ``RL_RESULT_FD``. Everything written to it comes back as
        ``CommandResult.channel`` (bytes; ``None`` when ``channel=False``), never mixed with
        stdout/stderr and never cut by the output cap; it has its own cap of ``CHANNEL_BYTES``
        (64 KiB): bytes past it are dropped and ``channel_truncated`` is set. Writing to the
        channel never stops the command. The pipe is created by the sandbox's runner, so nothing
        the command prints can reach it; but every process of the command that keeps the
        descriptor can write to it, so a grader that runs untrusted code must close the
        descriptor in the child that runs it.
        """

    def files(self) -> dict[str, bytes]:
        """Regular files and symbolic links of the workspace, by path relative to the home directory.

        Symbolic links map to a `SymlinkTarget`; files whose apparent size does not fit the
        listing's budget map to a `FileDigest`. The result is a `WorkspaceListing`.
        """

    def close(self) -> None:
        """Release the workspace."""


class Sandbox(Protocol):
    """Creates sessions; one session per episode."""

    kind: str
    limits: SandboxLimits

    @property
    def mechanisms(self) -> dict[str, str]:
        """Which mechanism enforces each limit on this machine (for run.json and the README)."""

    def start(self, files: dict[str, str]) -> SandboxSession:
        """A fresh workspace holding ``files`` (paths relative to the home directory)."""


def file_digest(content: bytes) -> str:
    """Short content hash used to tell which files an episode changed."""
    return hashlib.sha256(content).hexdigest()[:16]


class _Tagged(bytes):
    """Bytes that compare equal only to the same kind of entry with the same bytes."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and bytes.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = bytes.__hash__


class SymlinkTarget(_Tagged):
    """A symbolic link in a workspace listing: the bytes are the link's target."""


class FileDigest(_Tagged):
    """A regular file too large (in apparent size) to hand over: the bytes are a digest of its content."""


def _entry_label(path: str, entry: bytes | None) -> str:
    if isinstance(entry, SymlinkTarget):
        return f"{path} -> {entry.decode('utf-8', 'surrogateescape')}"
    return path


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, list[str]]:
    """Paths created, modified and deleted between two workspace listings.

    Every path of a hard-linked file is an entry of its own; a symbolic link is listed as
    ``"path -> target"`` (its new target when created or modified, its old one when deleted),
    and a file replaced by a link (or the reverse) counts as modified. A listing that could not
    be completed (see `WorkspaceListing`) adds ``"incomplete"`` with the reasons.
    """
    created = sorted(set(after) - set(before))
    deleted = sorted(set(before) - set(after))
    modified = sorted(path for path in set(before) & set(after) if before[path] != after[path])
    changes = {"created": [_entry_label(path, after[path]) for path in created],
               "modified": [_entry_label(path, after[path]) for path in modified],
               "deleted": [_entry_label(path, before[path]) for path in deleted]}
    reasons = [note for listing in (before, after) for note in getattr(listing, "incomplete", ())]
    if reasons:
        changes["incomplete"] = sorted(set(reasons))
    return changes


class WorkspaceListing(dict):
    """What `SandboxSession.files` returns: path -> bytes (or `SymlinkTarget` / `FileDigest`).

    ``incomplete`` lists why some entries are missing (empty when the listing is whole).
    """

    def __init__(self, *args: Any, incomplete: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.incomplete: list[str] = list(incomplete or [])


def check_relative_path(path: str) -> str:
    """Reject absolute paths and ``..`` in environment file names (a bug in an environment, not in input)."""
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"environment file path must be relative and normalised, got {path!r}")
    return path
