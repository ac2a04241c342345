"""NO ISOLATION: runs commands as plain subprocesses in a temporary folder on this machine.

For scripted policies only (whose commands are written in this package), and as the
unsandboxed baseline in the overhead benchmark. A command can read and write anything the
current user can. Absolute paths such as ``/rl_environment`` do not exist here; scripted
policies use relative paths so they behave the same in both backends.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from rewardlab.envs.sandbox.base import (
    CHANNEL_BYTES,
    RESULT_FD_ENV,
    CommandResult,
    SandboxLimits,
    SymlinkTarget,
    WorkspaceListing,
    check_relative_path,
)

UNSANDBOXED_WARNING = (
    "WARNING: --sandbox none runs policy commands directly on this machine WITHOUT ANY ISOLATION. "
    "Use it only with scripted policies."
)


def _collect(process: subprocess.Popen, caps: dict[int, int], deadline: float,
             stop_on: tuple[int, ...]) -> tuple[dict[int, bytes], bool, bool]:
    """Read the pipes in ``caps`` (keeping one byte past each cap) until the command's process group is gone.

    The group is killed at ``deadline``, when a stream in ``stop_on`` passes its cap, or once the
    main process has exited (so background jobs do not outlive their command).
    """
    buffers = {fd: bytearray() for fd in caps}
    timed_out = overflow = False
    with selectors.DefaultSelector() as selector:
        for fd in caps:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = process.poll() is None
                break
            for key, _ in selector.select(timeout=min(remaining, 0.05)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = buffers[key.fd]
                room = caps[key.fd] + 1 - len(buffer)
                buffer.extend(chunk[:max(0, room)])
                if key.fd in stop_on and len(buffer) > caps[key.fd]:
                    overflow = True
            if overflow or process.poll() is not None:
                break
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    for fd in caps:
        # Drain what the killed group left in the pipes; writers that escaped the group get 0.2 s.
        while len(buffers[fd]) <= caps[fd]:
            ready = selectors.DefaultSelector()
            ready.register(fd, selectors.EVENT_READ)
            events = ready.select(timeout=0.2)
            ready.close()
            chunk = os.read(fd, 65536) if events else b""
            if not chunk:
                break
            buffers[fd].extend(chunk[:caps[fd] + 1 - len(buffers[fd])])
    return {fd: bytes(buffer) for fd, buffer in buffers.items()}, timed_out, overflow


class UnsandboxedLocal:
    """Creates unsandboxed sessions in temporary folders (see the module warning)."""

    kind = "none"

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()

    @property
    def mechanisms(self) -> dict[str, str]:
        """No isolation: only the wall-clock timeout and the output cap apply."""
        return {"sandbox": "none: plain subprocesses in a temporary folder, NO isolation",
                "wall_clock": "the process group is killed at the command timeout",
                "output": f"{self.limits.output_bytes} bytes kept per stream (the command is not stopped)"}

    def start(self, files: dict[str, str]) -> UnsandboxedSession:
        """A temporary folder holding ``files``."""
        root = Path(tempfile.mkdtemp(prefix="rewardlab-unsandboxed-"))
        for relative, content in files.items():
            path = root / check_relative_path(relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        return UnsandboxedSession(root, self.limits)


class UnsandboxedSession:
    """A temporary folder used as the home directory; commands run with ``bash -c`` inside it."""

    kind = "none"

    def __init__(self, root: Path, limits: SandboxLimits) -> None:
        self.root = root
        self._limits = limits
        self._cwd = root

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True,
            channel: bool = False) -> CommandResult:
        """Run ``command``; ``persist=False`` runs it in a throwaway copy of the folder.

        ``channel``: see `SandboxSession.run` (here the pipe is created by this process).
        """
        seconds = float(timeout if timeout is not None else self._limits.command_timeout)
        workdir = self.root
        scratch: Path | None = None
        if not persist:
            scratch = Path(tempfile.mkdtemp(prefix="rewardlab-unsandboxed-probe-"))
            workdir = scratch / "home"
            shutil.copytree(self.root, workdir, symlinks=True)
        cwd = workdir / self._cwd.relative_to(self.root) if self._cwd.is_relative_to(self.root) else workdir
        if not cwd.is_dir():
            cwd = workdir
        script = f'trap \'pwd > "{workdir}/.rewardlab_cwd" 2>/dev/null\' EXIT\n{command}'
        started = time.monotonic()
        # The same minimal environment the sandbox gives its commands (so the system python3 is used).
        environment = {"HOME": str(self.root), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                       "LANG": "C.UTF-8", "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1"}
        pass_fds: tuple[int, ...] = ()
        channel_read = channel_write = None
        if channel:
            channel_read, channel_write = os.pipe()
            environment[RESULT_FD_ENV] = str(channel_write)
            pass_fds = (channel_write,)
        try:
            process = subprocess.Popen(
                ["bash", "-c", script], cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds,
            )
        except BaseException:
            for fd in (channel_read, channel_write):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            if channel_write is not None:
                os.close(channel_write)
        cap = self._limits.output_bytes
        assert process.stdout is not None and process.stderr is not None
        caps = {process.stdout.fileno(): cap, process.stderr.fileno(): cap}
        if channel_read is not None:
            caps[channel_read] = CHANNEL_BYTES
        streams, timed_out, overflow = _collect(process, caps, started + seconds, stop_on=(
            process.stdout.fileno(), process.stderr.fileno()))
        stdout, stderr = streams[process.stdout.fileno()], streams[process.stderr.fileno()]
        channel_data = streams[channel_read] if channel_read is not None else None
        process.stdout.close()
        process.stderr.close()
        if channel_read is not None:
            os.close(channel_read)
        elapsed = time.monotonic() - started
        cwd_file = workdir / ".rewardlab_cwd"
        if cwd_file.is_file() and not cwd_file.is_symlink():
            with open(cwd_file, "rb") as handle:
                new_cwd = Path(os.fsdecode(handle.read(8192).strip()))
            cwd_file.unlink()
            if persist and new_cwd.is_dir():
                self._cwd = new_cwd
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        notes = [f"command timed out after {seconds:g} s and was killed"] if timed_out else []
        truncated = len(stdout) > cap or len(stderr) > cap
        if truncated:
            notes.append(f"output exceeded {cap} bytes; command stopped and output truncated")
        channel_truncated = channel_data is not None and len(channel_data) > CHANNEL_BYTES
        if channel_truncated:
            notes.append(f"result channel exceeded {CHANNEL_BYTES} bytes; the rest was dropped")
        return CommandResult(
            command=command, exit_code=process.returncode, stdout=stdout[:cap].decode("utf-8", "replace"),
            stderr=stderr[:cap].decode("utf-8", "replace"), seconds=elapsed, timed_out=timed_out,
            output_truncated=truncated or overflow, notes=notes,
            channel=channel_data[:CHANNEL_BYTES] if channel_data is not None else None,
            channel_truncated=channel_truncated,
        )

    def files(self) -> WorkspaceListing:
        """Regular files and symbolic links under the folder (links are not followed; iterative walk)."""
        return list_folder(self.root, self._limits)

    def close(self) -> None:
        """Delete the temporary folder."""
        shutil.rmtree(self.root, ignore_errors=True)


def list_folder(root: Path, limits: SandboxLimits) -> WorkspaceListing:
    """Regular files (content) and symbolic links (`SymlinkTarget`) under ``root``, walked without recursion.

    Names that are not UTF-8 come back with surrogate escapes; at most ``2 * max_entries + 1000``
    entries and ``disk_bytes`` of content are read (the listing says it is incomplete past that).
    """
    listing = WorkspaceListing()
    budget = limits.disk_bytes
    cap = 2 * limits.max_entries + 1000
    seen = 0
    pending = [b""]
    base = os.fsencode(root)
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(os.path.join(base, relative) if relative else base) as entries:
                children = sorted(entries, key=lambda entry: entry.name)
        except OSError as error:
            listing.incomplete.append(f"could not list {os.fsdecode(relative)}: {error.strerror}")
            continue
        for entry in reversed(children):
            seen += 1
            if seen > cap:
                listing.incomplete.append(f"more than {cap} files, folders and links; the rest is not listed")
                return listing
            path = os.path.join(relative, entry.name) if relative else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                pending.append(path)
            elif stat.S_ISLNK(info.st_mode):
                listing[os.fsdecode(path)] = SymlinkTarget(os.readlink(entry.path))
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > budget:
                    listing.incomplete.append(f"{os.fsdecode(path)} and maybe others are not read (size budget)")
                    continue
                budget -= info.st_size
                with open(entry.path, "rb") as handle:
                    listing[os.fsdecode(path)] = handle.read(info.st_size + 1)
    return listing
