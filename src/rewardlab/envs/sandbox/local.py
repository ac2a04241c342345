"""NO ISOLATION: runs commands as plain subprocesses in a temporary folder on this machine.

For scripted policies only (whose commands are written in this package), and as the
unsandboxed baseline in the overhead benchmark. A command can read and write anything the
current user can. Absolute paths such as ``/rl_environment`` do not exist here; scripted
policies use relative paths so they behave the same in both backends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from rewardlab.envs.sandbox.base import CommandResult, SandboxLimits, check_relative_path

UNSANDBOXED_WARNING = (
    "WARNING: --sandbox none runs policy commands directly on this machine WITHOUT ANY ISOLATION. "
    "Use it only with scripted policies."
)


class UnsandboxedLocal:
    """Creates unsandboxed sessions in temporary folders (see the module warning)."""

    kind = "none"

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()

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

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True) -> CommandResult:
        """Run ``command``; ``persist=False`` runs it in a throwaway copy of the folder."""
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
        process = subprocess.Popen(
            ["bash", "-c", script], cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        elapsed = time.monotonic() - started
        cwd_file = workdir / ".rewardlab_cwd"
        if cwd_file.exists():
            new_cwd = Path(cwd_file.read_text(errors="replace").strip())
            cwd_file.unlink()
            if persist and new_cwd.is_dir():
                self._cwd = new_cwd
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        cap = self._limits.output_bytes
        notes = [f"command timed out after {seconds:g} s and was killed"] if timed_out else []
        truncated = len(stdout) > cap or len(stderr) > cap
        if truncated:
            notes.append(f"output exceeded {cap} bytes and was truncated")
        return CommandResult(
            command=command, exit_code=process.returncode, stdout=stdout[:cap].decode("utf-8", "replace"),
            stderr=stderr[:cap].decode("utf-8", "replace"), seconds=elapsed, timed_out=timed_out,
            output_truncated=truncated, notes=notes,
        )

    def files(self) -> dict[str, bytes]:
        """Regular files under the folder (symlinks are not followed)."""
        found: dict[str, bytes] = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                found[path.relative_to(self.root).as_posix()] = path.read_bytes()
        return found

    def close(self) -> None:
        """Delete the temporary folder."""
        shutil.rmtree(self.root, ignore_errors=True)
