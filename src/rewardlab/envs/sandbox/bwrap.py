"""Bubblewrap sandbox: every command runs in fresh namespaces with the episode files on a tmpfs.

Layout inside the sandbox: read-only ``/usr`` (and the ``/bin``, ``/lib`` links), a few
read-only files from ``/etc``, a size-limited tmpfs at ``/root`` holding the episode files,
``/rl_environment`` as a link to ``/root/rl_environment``, a private size-limited ``/tmp``, a
new ``/proc`` and a minimal ``/dev``. No network (new network namespace with nothing in it),
no capabilities, no new user namespaces, a new session (no terminal injection), and the
sandbox dies with its parent.

Each command starts a new sandbox whose PID 1 is `runner.py`: it restores the files, runs the
command, then kills every process left over, so nothing outlives its command. The files travel
between commands as a tar stream held in memory by the host, so the host filesystem is never
written by a command, and the tmpfs size bounds how much an episode can write.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import selectors
import shutil
import subprocess
import tarfile
import threading
import time
from functools import lru_cache
from pathlib import Path

from rewardlab.envs.sandbox.base import (
    HOME,
    CommandResult,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    check_relative_path,
)

INSTALL_HINT = (
    "bubblewrap (the `bwrap` program) is required to run environment episodes safely. "
    "Install it with `sudo apt-get install bubblewrap` (Debian/Ubuntu), `sudo dnf install bubblewrap` "
    "(Fedora) or `sudo pacman -S bubblewrap` (Arch). Scripted policies can instead run with "
    "`--sandbox none`, which executes commands on this machine without isolation."
)
_ETC_ENTRIES = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
    "passwd", "group", "bash.bashrc", "profile", "inputrc",
)
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3")
_RUNNER_SOURCE = (Path(__file__).with_name("runner.py")).read_bytes()
# The runner's source arrives on stdin ahead of its input, so `ps` in the sandbox shows only this line.
_BOOTSTRAP = "import sys;s=sys.stdin.buffer;exec(compile(s.read(int(s.readline())),'rewardlab-runner','exec'))"
_RESULT_MAGIC = b"RLRUNNER1 "
_GRACE_SECONDS = 10.0
_UID_POOL_SIZE = 256


@lru_cache(maxsize=1)
def _bwrap_features(binary: str) -> frozenset[str]:
    try:
        help_text = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxUnavailable(f"could not run {binary} --help: {error}. {INSTALL_HINT}") from error
    return frozenset(flag for flag in ("--size", "--disable-userns", "--clearenv") if flag in help_text)


def find_bwrap() -> str:
    """Path of the bwrap binary, or `SandboxUnavailable` with install instructions."""
    binary = shutil.which("bwrap")
    if binary is None:
        raise SandboxUnavailable(f"bwrap was not found on PATH. {INSTALL_HINT}")
    return binary


def _sandbox_python() -> str:
    for candidate in _PYTHON_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailable(
        "the sandbox needs a system Python 3 under /usr (looked for "
        f"{', '.join(_PYTHON_CANDIDATES)}); install it with `sudo apt-get install python3-minimal`."
    )


class _UidPool:
    """Distinct unprivileged host uids for concurrent commands when we run as root.

    Root ignores RLIMIT_NPROC, so as root each command drops to its own uid; then the process
    limit holds and concurrent commands cannot starve each other.
    """

    def __init__(self) -> None:
        base = 200_000 + (os.getpid() % 4096) * _UID_POOL_SIZE
        self._free = list(range(base, base + _UID_POOL_SIZE))
        self._condition = threading.Condition()

    def acquire(self) -> int:
        with self._condition:
            while not self._free:
                self._condition.wait()
            return self._free.pop()

    def release(self, uid: int) -> None:
        with self._condition:
            self._free.append(uid)
            self._condition.notify()


def build_tar(files: dict[str, str]) -> bytes:
    """A tar stream of the given text files (and their parent folders), for a fresh workspace."""
    buffer = io.BytesIO()
    folders: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(files):
            check_relative_path(path)
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in folders:
                    folders.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                    archive.addfile(info)
            data = files[path].encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_tar_files(state: bytes) -> dict[str, bytes]:
    """Regular files in a workspace tar stream, by normalised relative path (nothing is extracted)."""
    files: dict[str, bytes] = {}
    if not state:
        return files
    with tarfile.open(fileobj=io.BytesIO(state), mode="r:") as archive:
        for member in archive.getmembers():
            if member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    files[os.path.normpath(member.name).lstrip("/")] = handle.read()
    return files


class BubblewrapSandbox:
    """Creates bubblewrap-isolated sessions; checks once that bwrap works on this machine."""

    kind = "bwrap"

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.binary = find_bwrap()
        features = _bwrap_features(self.binary)
        if "--size" not in features:
            raise SandboxUnavailable(
                f"{self.binary} is too old: it lacks --size (bubblewrap 0.7 or newer is needed to cap "
                "the episode's disk use). Upgrade bubblewrap."
            )
        self._features = features
        self._python = _sandbox_python()
        self._uids = _UidPool() if os.geteuid() == 0 else None
        self._self_test()

    def _self_test(self) -> None:
        session = self.start({"probe.txt": "ok\n"})
        try:
            result = session.run("cat probe.txt", timeout=20)
        except SandboxError as error:
            raise SandboxUnavailable(
                f"bubblewrap is installed but could not start a sandbox: {error}. Unprivileged user "
                "namespaces may be disabled (try `sudo sysctl -w kernel.unprivileged_userns_clone=1` "
                "or, on Ubuntu 24.04, `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`); "
                "inside Docker the container needs a seccomp profile that allows user namespaces."
            ) from error
        if result.stdout.strip() != "ok":
            raise SandboxUnavailable(
                f"bubblewrap self-test returned unexpected output {result.stdout!r} / {result.stderr!r}"
            )

    def start(self, files: dict[str, str]) -> BubblewrapSession:
        """A fresh workspace holding ``files``; nothing is written to the host disk."""
        return BubblewrapSession(self, build_tar(files))

    def command_line(self) -> list[str]:
        """The bwrap invocation that starts the in-sandbox runner."""
        limits = self.limits
        args = [
            self.binary, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--as-pid-1",
            "--cap-drop", "ALL", "--uid", "0", "--gid", "0", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
        ]
        for name in _ROOT_LINKS:
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        for name in _ETC_ENTRIES:
            path = Path("/etc") / name
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        args += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--size", str(limits.disk_bytes), "--tmpfs", HOME,
            "--symlink", f"{HOME}/rl_environment", "/rl_environment",
            "--chdir", HOME,
        ]
        if "--disable-userns" in self._features:
            args.append("--disable-userns")
        if "--clearenv" in self._features:
            args.append("--clearenv")
        for key, value in (
            ("HOME", HOME), ("USER", "root"), ("LOGNAME", "root"), ("SHELL", "/bin/bash"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"), ("LANG", "C.UTF-8"),
            ("TERM", "dumb"), ("PYTHONDONTWRITEBYTECODE", "1"),
        ):
            args += ["--setenv", key, value]
        args += [self._python, "-I", "-S", "-c", _BOOTSTRAP]
        return args

    def execute(self, header: dict, state: bytes) -> tuple[dict, bytes, bytes, bytes]:
        """Start one sandbox, feed it the header and files, return (result, stdout, stderr, state)."""
        payload = b"".join((
            str(len(_RUNNER_SOURCE)).encode("ascii"), b"\n", _RUNNER_SOURCE,
            json.dumps({**header, "state_len": len(state)}).encode("utf-8"), b"\n", state,
        ))
        limit = 4 * self.limits.output_bytes + 2 * self.limits.disk_bytes + (1 << 20)
        deadline = time.monotonic() + float(header["timeout"]) + _GRACE_SECONDS
        uid = self._uids.acquire() if self._uids else None
        try:
            process = subprocess.Popen(
                self.command_line(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                **({"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}),
            )
            out, err, overflow = _exchange(process, payload, deadline, limit)
        finally:
            if uid is not None:
                self._uids.release(uid)
        if overflow:
            raise SandboxError("the sandbox sent back more data than its limits allow; it was killed")
        if not out.startswith(_RESULT_MAGIC):
            message = err.decode("utf-8", "replace").strip()[-2000:]
            raise SandboxError(
                f"the sandbox exited with status {process.returncode} without a result"
                + (f": {message}" if message else "")
            )
        line_end = out.index(b"\n") if b"\n" in out else len(out)
        try:
            result = json.loads(out[len(_RESULT_MAGIC):line_end])
            sizes = [int(result[key]) for key in ("stdout_len", "stderr_len", "state_len")]
        except (ValueError, KeyError, TypeError) as error:
            raise SandboxError(f"malformed sandbox result header: {error}") from error
        body = out[line_end + 1:]
        if sum(sizes) != len(body):
            raise SandboxError(f"sandbox result is {len(body)} bytes, header announced {sum(sizes)}")
        stdout = body[: sizes[0]]
        stderr = body[sizes[0]: sizes[0] + sizes[1]]
        new_state = body[sizes[0] + sizes[1]:]
        return result, stdout, stderr, new_state


def _exchange(process: subprocess.Popen, payload: bytes, deadline: float, limit: int) -> tuple[bytes, bytes, bool]:
    """Write stdin, read stdout/stderr up to ``limit`` bytes, kill the process group at the deadline."""
    assert process.stdin and process.stdout and process.stderr
    buffers = {process.stdout: bytearray(), process.stderr: bytearray()}
    overflow = False
    view = memoryview(payload)
    with selectors.DefaultSelector() as selector:
        if payload:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        for stream in buffers:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in selector.select(timeout=min(remaining, 1.0)):
                if key.fileobj is process.stdin:
                    try:
                        written = os.write(process.stdin.fileno(), view[:65536])
                    except BrokenPipeError:
                        written = len(view)
                    view = view[written:]
                    if not view:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffers[key.fileobj].extend(chunk)
                if len(buffers[key.fileobj]) > limit:
                    overflow = True
                    break
            if overflow:
                break
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    if process.poll() is None:
        _kill_group(process)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream and not stream.closed:
            stream.close()
    return bytes(buffers[process.stdout]), bytes(buffers[process.stderr]), overflow


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except ProcessLookupError:
        pass
    process.wait()


_counter = itertools.count()


class BubblewrapSession:
    """One episode's files (held as a tar stream) and working directory."""

    kind = "bwrap"

    def __init__(self, sandbox: BubblewrapSandbox, state: bytes) -> None:
        self._sandbox = sandbox
        self._state = state
        self._cwd = HOME
        self._closed = False

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True) -> CommandResult:
        """Run ``command`` in a new sandbox seeded with this episode's files."""
        if self._closed:
            raise SandboxError("this sandbox session is closed")
        limits = self._sandbox.limits
        header = {
            "command": command,
            "cwd": self._cwd,
            "home": HOME,
            "timeout": float(timeout if timeout is not None else limits.command_timeout),
            "output_bytes": limits.output_bytes,
            "limits": limits.as_runner_dict(),
            "persist": persist,
            "nonce": f"{os.getpid()}_{next(_counter)}_{secrets.token_hex(4)}",
        }
        started = time.monotonic()
        result, stdout, stderr, new_state = self._sandbox.execute(header, self._state)
        notes = [str(note) for note in result.get("notes", [])]
        if result.get("timed_out"):
            notes.append(f"command timed out after {header['timeout']:g} s and was killed")
        if result.get("memory_overflow"):
            notes.append(f"memory limit of {limits.total_memory_bytes >> 20} MiB reached; command killed")
        if result.get("output_overflow"):
            notes.append(f"output exceeded {limits.output_bytes} bytes; command stopped and output truncated")
        if persist:
            self._state = new_state
            self._cwd = str(result.get("cwd") or HOME)
        return CommandResult(
            command=command,
            exit_code=result.get("exit_code"),
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            seconds=time.monotonic() - started,
            timed_out=bool(result.get("timed_out")),
            output_truncated=bool(result.get("stdout_truncated") or result.get("stderr_truncated")
                                  or result.get("output_overflow")),
            notes=notes,
        )

    @property
    def cwd(self) -> str:
        """The working directory the next command starts in."""
        return self._cwd

    def files(self) -> dict[str, bytes]:
        """Regular files of the workspace (read from the held tar stream, never extracted)."""
        return read_tar_files(self._state)

    def close(self) -> None:
        """Drop the workspace (it only lives in memory)."""
        self._closed = True
        self._state = b""
