"""Bubblewrap sandbox: one sandbox per episode, whose PID 1 (`runner.py`) runs the commands sent to it.

Layout inside the sandbox: a read-only ``/`` with read-only ``/usr`` (and the ``/bin``, ``/lib``
links) and a few read-only files from ``/etc``; a size-limited tmpfs at ``/root`` holding the
episode files, ``/rl_environment`` as a link to ``/root/rl_environment``; size-limited tmpfs
mounts at ``/tmp`` and ``/dev/shm`` (emptied after every command); a new ``/proc``; a read-only
``/dev`` with only null, zero, full, random, urandom and tty (no pseudo-terminals). No network
(new network namespace with nothing in it), no capabilities, no new user namespaces, a new
session (no terminal injection), a seccomp filter (`seccomp.py`), and the sandbox dies with the
thread that started it (bubblewrap's ``--die-with-parent``).

Where the machine allows it the whole sandbox runs in its own memory + pids cgroup
(`cgroups.py`), which counts everything it holds; otherwise the runner polls resident memory and
tmpfs use and the seccomp filter also blocks memfds. `BubblewrapSandbox.mechanisms` says which.

The host talks to the runner over its stdin/stdout: a request per command (``run``), and
``files`` when the episode's files are listed. The files never leave the sandbox otherwise, so
the host filesystem is never written by a command and every host-side read is capped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any

from rewardlab.envs.sandbox.base import (
    CHANNEL_BYTES,
    HOME,
    CommandResult,
    FileDigest,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    SymlinkTarget,
    WorkspaceListing,
    check_relative_path,
)
from rewardlab.envs.sandbox.cgroups import Cgroup, CgroupSupport, detect
from rewardlab.envs.sandbox.seccomp import blocked_calls, build_filter

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
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
              ("/proc/self/fd/2", "/dev/stderr"))
_SCRATCH_MOUNTS = ("/tmp", "/dev/shm")
_PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3")
_RUNNER_SOURCE = (Path(__file__).with_name("runner.py")).read_bytes()
# The runner's source arrives on stdin ahead of the requests, so `ps` in the sandbox shows only this line.
_BOOTSTRAP = "import sys;s=sys.stdin.buffer;exec(compile(s.read(int(s.readline())),'rewardlab-runner','exec'))"
_RESULT_MAGIC = b"RLRUNNER2 "
GRACE_SECONDS = 15.0
"""How long past a command's timeout the host waits for the runner before it kills the sandbox."""
_START_SECONDS = 60.0
_UID_POOL_SIZE = 256
_STDERR_TAIL = 64 << 10
_RUNNER_MEMORY_FLOOR = 256 << 20


@lru_cache(maxsize=1)
def _bwrap_features(binary: str) -> tuple[frozenset[str], str]:
    try:
        help_text = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxUnavailable(f"could not run {binary} --help: {error}. {INSTALL_HINT}") from error
    flags = ("--size", "--disable-userns", "--clearenv", "--seccomp", "--remount-ro", "--perms")
    return frozenset(flag for flag in flags if flag in help_text), version or "bubblewrap (version unknown)"


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


@lru_cache(maxsize=1)
def _cgroup_support() -> CgroupSupport:
    return detect()


class _UidPool:
    """Distinct unprivileged host uids for concurrent sandboxes when we run as root.

    Root ignores RLIMIT_NPROC, so as root each sandbox drops to its own uid; then the process
    limit holds and concurrent episodes cannot starve each other.
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


class BubblewrapSandbox:
    """Creates bubblewrap-isolated sessions; checks once that bwrap works on this machine.

    ``cgroups=False`` or ``seccomp=False`` turn those mechanisms off (used to test the fallbacks);
    by default each is used when the machine offers it, and `mechanisms` records the outcome.
    """

    kind = "bwrap"

    def __init__(self, limits: SandboxLimits | None = None, *, cgroups: bool = True, seccomp: bool = True) -> None:
        self.limits = limits or SandboxLimits()
        self.binary = find_bwrap()
        features, self.version = _bwrap_features(self.binary)
        for flag, why in (("--size", "cap the episode's disk use"), ("--remount-ro", "make / read-only")):
            if flag not in features:
                raise SandboxUnavailable(
                    f"{self.binary} is too old: it lacks {flag} (bubblewrap 0.7 or newer is needed to {why}). "
                    "Upgrade bubblewrap.")
        self._features = features
        self._python = _sandbox_python()
        self._uids = _UidPool() if os.geteuid() == 0 else None
        self._use_seccomp = seccomp
        self._seccomp_mode = "unknown"
        self._configure(_cgroup_support() if cgroups else CgroupSupport(None, reason="turned off (cgroups=False)"))
        try:
            self._self_test()
        except SandboxUnavailable as error:
            if not self.cgroups.version:
                raise
            # A cgroup that was detected but cannot be used must not make the whole sandbox unavailable.
            self._configure(CgroupSupport(None, reason=f"cgroup v{self.cgroups.version} failed the self-test: "
                                                        f"{error.__cause__ or error}"))
            self._self_test()

    def _configure(self, support: CgroupSupport) -> None:
        self.cgroups = support
        self._seccomp_note = ""
        self._seccomp_program: bytes | None = None
        if not self._use_seccomp:
            self._seccomp_note = "turned off (seccomp=False)"
        elif "--seccomp" not in self._features:
            self._seccomp_note = f"{self.binary} lacks --seccomp"
        else:
            self._seccomp_program = build_filter(block_memfd=support.version is None)
            if self._seccomp_program is None:
                self._seccomp_note = f"no system call table for machine {os.uname().machine}"

    def _self_test(self) -> None:
        try:
            session = self.start({"probe.txt": "ok\n"})
            try:
                result = session.run("cat probe.txt", timeout=20)
            finally:
                session.close()
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
        self._seccomp_mode = session.seccomp_mode

    @property
    def mechanisms(self) -> dict[str, str]:
        """Which mechanism enforces each limit on this machine (recorded in run.json)."""
        limits = self.limits
        cgroup = self.cgroups
        if cgroup.version:
            memory = (f"cgroup v{cgroup.version} memory limit of {limits.total_memory_bytes} bytes on the whole "
                      "sandbox (processes, runner, tmpfs files, memfds, kernel memory); the runner stops the "
                      "command when the kernel had to kill a process")
        else:
            memory = (f"polling every 10 ms (resident memory every 30 ms): resident memory of the processes plus "
                      f"tmpfs use plus 1 KiB per "
                      f"entry, against {limits.total_memory_bytes} bytes; memfd_create and System V shared "
                      f"memory refused by seccomp; the runner under RLIMIT_AS (no cgroup: {cgroup.reason})")
        processes = f"RLIMIT_NPROC {limits.max_processes}" + (" per sandbox uid" if self._uids else "")
        if cgroup.version and (cgroup.pids_parent is not None):
            processes = f"cgroup v{cgroup.version} pids limit, and " + processes
        if self._seccomp_program is not None and self._seccomp_mode == "2":
            seccomp = "bwrap --seccomp filter refusing: " + ", ".join(blocked_calls(cgroup.version is None))
        else:
            seccomp = "off: " + (self._seccomp_note or f"the runner reports seccomp mode {self._seccomp_mode}")
        return {
            "sandbox": f"{self.version}; one sandbox per episode, runner as PID 1",
            "namespaces": "user, pid, mount, ipc, uts, network, cgroup (bwrap --unshare-all), no nested user "
                          "namespaces" + ("" if "--disable-userns" in self._features else " NOT disabled"),
            "memory": memory,
            "processes": processes,
            "seccomp": seccomp,
            "cpu": f"RLIMIT_CPU {limits.cpu_seconds} s per process",
            "address_space": f"RLIMIT_AS {limits.memory_bytes} bytes per process",
            "wall_clock": f"runner deadline of the command timeout; the host kills the sandbox {GRACE_SECONDS:g} s "
                          "later",
            "disk": f"tmpfs size limits: /root {limits.disk_bytes}, /tmp and /dev/shm {limits.tmp_bytes} bytes each; "
                    f"/ and /dev read-only; RLIMIT_FSIZE {limits.file_size_bytes} bytes per file",
            "entries": f"{limits.max_entries} files, folders and links in the tmpfs mounts, polled every 10 ms",
            "output": f"{limits.output_bytes} bytes per stream, command stopped past it; result channel "
                      f"{CHANNEL_BYTES} bytes",
        }

    def start(self, files: dict[str, str]) -> BubblewrapSession:
        """A fresh sandbox holding ``files``; nothing is written to the host disk."""
        for path in files:
            check_relative_path(path)
        return BubblewrapSession(self, files)

    def command_line(self, seccomp_fd: int | None) -> list[str]:
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
        args += ["--proc", "/proc", "--size", str(64 << 10), "--tmpfs", "/dev"]
        for name in _DEVICES:
            args += ["--dev-bind-try", f"/dev/{name}", f"/dev/{name}"]
        for target, link in _DEV_LINKS:
            args += ["--symlink", target, link]
        perms = ["--perms", "1777"] if "--perms" in self._features else []
        args += [
            "--size", str(limits.tmp_bytes), *perms, "--tmpfs", "/dev/shm",
            "--size", str(limits.tmp_bytes), *perms, "--tmpfs", "/tmp",
            "--size", str(limits.disk_bytes), "--tmpfs", HOME,
            "--symlink", f"{HOME}/rl_environment", "/rl_environment",
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", HOME,
        ]
        if "--disable-userns" in self._features:
            args.append("--disable-userns")
        if "--clearenv" in self._features:
            args.append("--clearenv")
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        for key, value in (
            ("HOME", HOME), ("USER", "root"), ("LOGNAME", "root"), ("SHELL", "/bin/bash"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"), ("LANG", "C.UTF-8"),
            ("TERM", "dumb"), ("PYTHONDONTWRITEBYTECODE", "1"),
        ):
            args += ["--setenv", key, value]
        args += [self._python, "-I", "-S", "-c", _BOOTSTRAP]
        return args

    def _acquire_uid(self) -> int | None:
        return self._uids.acquire() if self._uids else None

    def _release_uid(self, uid: int | None) -> None:
        if uid is not None and self._uids is not None:
            self._uids.release(uid)


def _shutdown(process: subprocess.Popen | None, cgroup: Cgroup | None, release: Any) -> None:
    """Kill a sandbox and free what it held (also run if a session is garbage-collected unclosed)."""
    if process is not None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
    if cgroup is not None:
        cgroup.remove()
    release()


class _Broken(Exception):
    """The runner did not answer properly; the session is over."""


class BubblewrapSession:
    """One episode's sandbox: a live runner holding the files, and the connection to it.

    Use it from one thread at a time (a lock enforces this); the thread that created it must
    outlive it, because the sandbox dies with its parent thread.
    """

    kind = "bwrap"

    def __init__(self, sandbox: BubblewrapSandbox, files: dict[str, str]) -> None:
        self._sandbox = sandbox
        self._lock = threading.Lock()
        self._closed = False
        self._cwd = HOME
        self._stderr_tail = bytearray()
        self._buffer = bytearray()
        self.seccomp_mode = "unknown"
        self._polled_peak = 0
        limits = sandbox.limits
        uid = sandbox._acquire_uid()
        self.cgroup: Cgroup | None = None
        self._process: subprocess.Popen | None = None
        released = [False]

        def release() -> None:
            if not released[0]:
                released[0] = True
                sandbox._release_uid(uid)

        passed: list[int] = []
        oom_fd: int | None = None
        try:
            support = sandbox.cgroups
            if support.version:
                try:
                    self.cgroup = Cgroup(support, limits.total_memory_bytes, limits.max_processes + 4, uid)
                except OSError as error:
                    raise SandboxError(f"could not create the sandbox's cgroup: {error}") from error
                counter = "memory.oom_control" if self.cgroup.version == 1 else "memory.events"
                oom_fd = os.open(self.cgroup.memory / counter, os.O_RDONLY)
                passed.append(oom_fd)
            seccomp_fd = None
            if sandbox._seccomp_program is not None:
                seccomp_fd, writer = os.pipe()
                os.write(writer, sandbox._seccomp_program)
                os.close(writer)
                passed.append(seccomp_fd)
            prefix = self.cgroup.enter_script() if self.cgroup is not None else []
            self._process = subprocess.Popen(
                prefix + sandbox.command_line(seccomp_fd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True, pass_fds=tuple(passed),
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                **({"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}),
            )
        except BaseException:
            for fd in passed:
                os.close(fd)
            _shutdown(self._process, self.cgroup, release)
            raise
        for fd in passed:
            os.close(fd)
        self._finalizer = weakref.finalize(self, _shutdown, self._process, self.cgroup, release)
        start = {
            "op": "start", "home": HOME, "files": files, "mounts": [HOME, *_SCRATCH_MOUNTS],
            "limits": limits.as_runner_dict(), "disk_bytes": limits.disk_bytes,
            "oom_fd": oom_fd, "oom_key": "oom_kill",
            "runner_memory_bytes": None if self.cgroup else max(limits.memory_bytes, _RUNNER_MEMORY_FLOOR
                                                                + 3 * limits.disk_bytes),
        }
        try:
            source = str(len(_RUNNER_SOURCE)).encode("ascii") + b"\n" + _RUNNER_SOURCE
            header, _ = self._exchange(start, time.monotonic() + _START_SECONDS, 1 << 20, preamble=source)
        except _Broken as error:
            self._finalizer()
            raise SandboxError(f"the sandbox did not start: {error}") from None
        self.seccomp_mode = str(header.get("seccomp", "unknown"))

    # -- connection to the runner

    def _exchange(self, request: dict, deadline: float, limit: int, preamble: bytes = b"") -> tuple[dict, list[bytes]]:
        """Send one request, wait for its reply (header, payloads) until ``deadline``; `_Broken` if none."""
        process = self._process
        assert process is not None and process.stdin and process.stdout and process.stderr
        body = json.dumps(request, ensure_ascii=True).encode("ascii")
        pending = memoryview(preamble + str(len(body)).encode("ascii") + b"\n" + body)
        buffer = self._buffer
        with selectors.DefaultSelector() as selector:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
            selector.register(process.stdout, selectors.EVENT_READ)
            selector.register(process.stderr, selectors.EVENT_READ)
            while True:
                reply = self._parse(buffer, limit)
                if reply is not None:
                    return reply
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Broken("it did not answer in time")
                for key, _ in selector.select(timeout=min(remaining, 1.0)):
                    if key.fileobj is process.stdin:
                        try:
                            written = os.write(process.stdin.fileno(), pending[:65536])
                        except BrokenPipeError:
                            raise _Broken("it stopped reading" + self._stderr_note()) from None
                        pending = pending[written:]
                        if not pending:
                            selector.unregister(process.stdin)
                        continue
                    chunk = os.read(key.fileobj.fileno(), 1 << 20)
                    if key.fileobj is process.stderr:
                        if not chunk:
                            selector.unregister(process.stderr)
                        self._stderr_tail.extend(chunk)
                        del self._stderr_tail[:-_STDERR_TAIL]
                        continue
                    if not chunk:
                        raise _Broken(f"it exited (status {process.poll()})" + self._stderr_note())
                    buffer.extend(chunk)

    def _stderr_note(self) -> str:
        text = self._stderr_tail.decode("utf-8", "replace").strip()[-2000:]
        return f": {text}" if text else ""

    @staticmethod
    def _parse(buffer: bytearray, limit: int) -> tuple[dict, list[bytes]] | None:
        if len(buffer) > limit:
            raise _Broken(f"it sent more than {limit} bytes")
        if not buffer:
            return None
        if not buffer.startswith(_RESULT_MAGIC[:len(buffer)]):
            raise _Broken("it sent a malformed reply")
        end = buffer.find(b"\n")
        if end < 0:
            return None
        try:
            header = json.loads(bytes(buffer[len(_RESULT_MAGIC):end]))
            sizes = [int(size) for size in header.get("sizes", [])]
        except (ValueError, TypeError) as error:
            raise _Broken(f"malformed reply header: {error}") from None
        total = end + 1 + sum(sizes)
        if total > limit:
            raise _Broken(f"its reply announces {total} bytes, more than {limit}")
        if len(buffer) < total:
            return None
        payloads = []
        position = end + 1
        for size in sizes:
            payloads.append(bytes(buffer[position:position + size]))
            position += size
        del buffer[:total]
        if "error" in header:
            raise _Broken(f"the runner failed: {header['error']}")
        return header, payloads

    def _call(self, request: dict, deadline: float, limit: int) -> tuple[dict, list[bytes]]:
        if self._closed:
            raise SandboxError("this sandbox session is closed")
        try:
            return self._exchange(request, deadline, limit)
        except _Broken as error:
            self.close()
            raise SandboxError(f"the sandbox stopped working and was shut down: {error}") from None

    # -- the session protocol

    def run(self, command: str, *, timeout: float | None = None, persist: bool = True,
            channel: bool = False) -> CommandResult:
        """Run ``command`` in this episode's sandbox (``persist`` and ``channel``: see `SandboxSession.run`)."""
        limits = self._sandbox.limits
        seconds = float(timeout if timeout is not None else limits.command_timeout)
        request = {"op": "run", "command": command, "timeout": seconds, "persist": persist, "channel": channel,
                   "channel_bytes": CHANNEL_BYTES, "output_bytes": limits.output_bytes}
        limit = 2 * limits.output_bytes + CHANNEL_BYTES + (1 << 20)
        with self._lock:
            started = time.monotonic()
            result, (stdout, stderr, channel_data) = self._call(request, started + seconds + GRACE_SECONDS, limit)
        notes = [str(note) for note in result.get("notes", [])]
        if result.get("timed_out"):
            notes.append(f"command timed out after {seconds:g} s and was killed")
        if result.get("memory_overflow"):
            notes.append(f"memory limit of {limits.total_memory_bytes >> 20} MiB reached; command killed")
        if result.get("output_overflow"):
            notes.append(f"output exceeded {limits.output_bytes} bytes; command stopped and output truncated")
        if result.get("channel_truncated"):
            notes.append(f"result channel exceeded {CHANNEL_BYTES} bytes; the rest was dropped")
        if persist:
            self._cwd = str(result.get("cwd") or HOME)
        self._polled_peak = max(self._polled_peak, int(result.get("polled_peak_bytes") or 0))
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
            channel=channel_data if channel else None,
            channel_truncated=bool(result.get("channel_truncated")),
        )

    @property
    def cwd(self) -> str:
        """The working directory the next command starts in."""
        return self._cwd

    def command_host_pids(self) -> list[int]:
        """Host pids of the sandbox's processes other than bubblewrap and the runner (none between commands)."""
        if self._process is None or self._process.poll() is not None:
            return []
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    parents[int(entry)] = int(fields[1])
                except (OSError, IndexError, ValueError):
                    continue
        found: list[int] = []
        frontier = [self._process.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            found.extend(children)
            frontier.extend(children)
        runner = [pid for pid in found if parents.get(pid) == self._process.pid]
        return sorted(set(found) - set(runner))

    def peak_memory_bytes(self) -> int:
        """The most memory the whole sandbox has held so far.

        From its memory cgroup where there is one (exact, everything counted); otherwise the highest
        value the runner's poll saw (resident memory + tmpfs use + 1 KiB per entry, every 10-30 ms).
        """
        if self.cgroup is not None:
            peak = self.cgroup.peak_memory_bytes()
            if peak is not None:
                return peak
        return self._polled_peak

    def files(self) -> WorkspaceListing:
        """Regular files and symbolic links of the workspace, read from the live sandbox (capped; see base)."""
        limits = self._sandbox.limits
        limit = limits.disk_bytes + (96 << 20)
        with self._lock:
            header, (blob,) = self._call({"op": "files"}, time.monotonic() + _START_SECONDS, limit)
        return build_listing(header, blob, apparent_budget=limits.disk_bytes)

    def close(self) -> None:
        """Kill the sandbox; its files are gone with it."""
        self._closed = True
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()


_NONZERO = re.compile(rb"[^\x00]+")


def _content_digest(size: int, segments: list[tuple[int, bytes]]) -> FileDigest:
    """A digest of a file's logical content that does not depend on where its holes are."""
    digest = hashlib.sha256(b"size %d\n" % size)
    for offset, data in segments:
        for match in _NONZERO.finditer(data):
            digest.update(b"%d %d\n" % (offset + match.start(), match.end() - match.start()))
            digest.update(match.group())
    return FileDigest(b"sha256-nonzero:" + digest.hexdigest().encode("ascii") + b" size:%d" % size)


def build_listing(header: dict, blob: bytes, *, apparent_budget: int) -> WorkspaceListing:
    """Turn the runner's ``files`` reply into a `WorkspaceListing`, materialising at most ``apparent_budget`` bytes."""
    listing = WorkspaceListing(incomplete=[str(note) for note in header.get("incomplete", [])])
    position = 0
    budget = apparent_budget
    for entry in header.get("entries", []):
        path, kind = str(entry[0]), entry[1]
        if kind == "l":
            listing[path] = SymlinkTarget(str(entry[2]).encode("utf-8", "surrogateescape"))
            continue
        size = int(entry[2])
        segments = []
        for offset, length in entry[3]:
            segments.append((int(offset), blob[position:position + int(length)]))
            position += int(length)
        if size <= budget:
            budget -= size
            content = bytearray(size)
            for offset, data in segments:
                content[offset:offset + len(data)] = data
            listing[path] = bytes(content)
        else:
            listing[path] = _content_digest(size, segments)
    return listing
