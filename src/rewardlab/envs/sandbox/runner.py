"""The program that runs inside the bubblewrap sandbox as PID 1, for the whole episode.

It receives requests from the host on stdin and answers each on stdout (both framed, see
`read_request` and `reply`); nothing a command does can reach these pipes, because commands get
their own pipes, the runner is not dumpable (so ``/proc/1/fd`` is closed to them), and signals
sent to PID 1 from inside its PID namespace are dropped unless it has a handler (it keeps the
default disposition for every signal except SIGCHLD, whose handler only wakes it up).

Requests: ``start`` writes the episode files; ``run`` runs one bash command under resource
limits with a wall-clock deadline, kills every process it left behind, empties ``/tmp`` and
``/dev/shm``, and, for ``persist: false``, puts the workspace back exactly as it was from a copy
held in this process's memory; ``files`` lists the workspace (regular files as their data
segments, so sparse files cost only what they hold; symbolic links with their targets).

Every walk of the workspace is iterative and moves with ``chdir`` one level at a time, so neither
depth nor path length (beyond ``PATH_MAX``) can break it; names are bytes throughout. The number
of entries a walk visits is capped.

It uses the standard library only and must stay compatible with the system interpreter
(run as ``python3 -I -S``); the host reads this file's source and passes it on stdin.
"""

import ctypes
import errno
import json
import os
import resource
import select
import signal
import stat
import subprocess
import sys
import time

MAGIC = b"RLRUNNER2 "
_PR_SET_DUMPABLE = 4
_SIGNAL_NOTES = {
    signal.SIGXCPU: "CPU time limit reached",
    signal.SIGXFSZ: "file size limit reached",
}
_SEEK_DATA = getattr(os, "SEEK_DATA", 3)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)
_ARG_MAX_STRLEN = 131072
_INODE_BYTES = 1024
# A command that starts with the mounts already past the entry limit (an earlier one overshot it)
# may still add this many, so that small commands and checks keep working.
_ENTRIES_SLACK = 1000
_POLL_SECONDS = 0.01
_RESIDENT_EVERY = 3  # polls; reading every process's memory costs more than the mount counters
_PRIVATE = b"/tmp/.rewardlab"


class TooLarge(Exception):
    """A walk met more entries or data than it may hold."""


# ----------------------------------------------------------------------------- process setup


def _make_undumpable():
    # Without this, a command running as the same uid could open /proc/1/fd and forge results.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _quiet_signals(wake_fd):
    # Python installs a SIGINT handler, which would let `kill -INT 1` raise KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)


def _seccomp_mode():
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Seccomp:"):
                    return line.split()[1]
    except OSError:
        pass
    return "unknown"


# ----------------------------------------------------------------------------- walks


class _Walk:
    """Depth-first, pre-order walk of a folder via chdir, yielding (depth, name, stat) per entry.

    It descends into real folders only, making them readable for the walk (their mode is put
    back when the walk leaves them), and stops with `TooLarge` after ``max_entries`` entries.
    """

    def __init__(self, root, max_entries):
        self.root = root
        self.max_entries = max_entries
        self.count = 0

    def __iter__(self):
        root_mode = stat.S_IMODE(os.stat(self.root).st_mode)
        if root_mode & 0o700 != 0o700:
            os.chmod(self.root, root_mode | 0o700)
        os.chdir(self.root)
        try:
            stack = [[sorted(os.listdir(b"."), reverse=True), None]]
            while stack:
                names, restore = stack[-1]
                if not names:
                    stack.pop()
                    if stack:
                        os.chdir(b"..")
                        if restore is not None:
                            _chmod_quiet(restore[0], restore[1])
                    continue
                name = names.pop()
                try:
                    info = os.lstat(name)
                except OSError:
                    continue
                self.count += 1
                if self.count > self.max_entries:
                    raise TooLarge("more than %d files, folders and links" % self.max_entries)
                yield len(stack) - 1, name, info
                if stat.S_ISDIR(info.st_mode):
                    mode = stat.S_IMODE(info.st_mode)
                    restore = None
                    if mode & 0o700 != 0o700:
                        os.chmod(name, mode | 0o700)
                        restore = (name, mode)
                    try:
                        os.chdir(name)
                        listing = sorted(os.listdir(b"."), reverse=True)
                    except OSError:
                        if restore is not None:
                            _chmod_quiet(name, mode)
                        continue
                    stack.append([listing, restore])
        finally:
            os.chdir(b"/")
            if root_mode & 0o700 != 0o700:
                _chmod_quiet(self.root, root_mode)


def _chmod_quiet(name, mode):
    try:
        os.chmod(name, mode)
    except OSError:
        pass


def _read_segments(name, info, budget):
    """Data segments [(offset, bytes)] of a regular file (holes skipped); ``budget`` = [bytes left]."""
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o400 == 0:
        os.chmod(name, mode | 0o400)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    finally:
        if mode & 0o400 == 0:
            _chmod_quiet(name, mode)
    try:
        size = os.fstat(fd).st_size
        segments = []
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, _SEEK_DATA)
            except OSError as error:
                if error.errno == errno.ENXIO:
                    break
                start = offset
            try:
                end = min(os.lseek(fd, start, _SEEK_HOLE), size)
            except OSError:
                end = size
            if end <= start:
                break
            if end - start > budget[0]:
                raise TooLarge("more than the workspace's size in file data")
            budget[0] -= end - start
            pieces = []
            position = start
            while position < end:
                piece = os.pread(fd, min(1 << 20, end - position), position)
                if not piece:
                    break
                pieces.append(piece)
                position += len(piece)
            segments.append((start, b"".join(pieces)))
            offset = end
        return size, segments
    finally:
        os.close(fd)


def capture(root, max_entries, max_data):
    """Everything under ``root``, enough to rebuild it exactly (`restore`): its mode, times and entries."""
    top = os.stat(root)
    entries = []
    budget = [max_data]
    walk = _Walk(root, max_entries)
    for depth, name, info in walk:
        mode = info.st_mode
        entry = {"d": depth, "n": name, "m": stat.S_IMODE(mode), "t": (info.st_atime_ns, info.st_mtime_ns)}
        if stat.S_ISDIR(mode):
            entry["k"] = "d"
        elif stat.S_ISREG(mode):
            entry["k"] = "f"
            entry["i"] = info.st_ino if info.st_nlink > 1 else None
            entry["s"], entry["x"] = _read_segments(name, info, budget)
        elif stat.S_ISLNK(mode):
            entry["k"] = "l"
            entry["x"] = os.readlink(name)
        elif stat.S_ISFIFO(mode):
            entry["k"] = "p"
        else:
            continue  # sockets (dead with their processes) and devices (cannot be made here)
        entries.append(entry)
    return {"mode": stat.S_IMODE(top.st_mode), "times": (top.st_atime_ns, top.st_mtime_ns), "entries": entries}


def wipe(root):
    """Delete everything under ``root`` (iteratively, making folders writable as needed)."""
    os.chdir(root)
    try:
        stack = [[os.listdir(b"."), None]]
        while stack:
            names, here = stack[-1]
            if not names:
                stack.pop()
                if stack:
                    os.chdir(b"..")
                    try:
                        os.rmdir(here)
                    except OSError:
                        pass
                continue
            name = names.pop()
            try:
                info = os.lstat(name)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                try:
                    if stat.S_IMODE(info.st_mode) & 0o700 != 0o700:
                        os.chmod(name, 0o700)
                    os.chdir(name)
                    stack.append([os.listdir(b"."), name])
                except OSError:
                    continue
            else:
                try:
                    os.unlink(name)
                except OSError:
                    pass
    finally:
        os.chdir(b"/")


def restore(root, snapshot):
    """Rebuild ``root`` (emptied first) from `capture` output; folder modes are set once they are filled."""
    os.chmod(root, 0o700)
    wipe(root)
    os.chdir(root)
    opened = {}
    depth = 0
    stack = []
    try:
        for entry in snapshot["entries"]:
            while depth > entry["d"]:
                name, mode, times = stack.pop()
                os.chdir(b"..")
                os.utime(name, ns=times, follow_symlinks=False)
                os.chmod(name, mode)
                depth -= 1
            name, kind = entry["n"], entry["k"]
            if kind == "d":
                os.mkdir(name, 0o700)
                os.chdir(name)
                stack.append((name, entry["m"], entry["t"]))
                depth += 1
            elif kind == "f":
                key = entry["i"]
                if key is not None and key in opened:
                    cwd = os.open(b".", os.O_RDONLY)
                    try:
                        os.link(b"/proc/self/fd/%d" % opened[key], name, dst_dir_fd=cwd, follow_symlinks=True)
                    finally:
                        os.close(cwd)
                    continue
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                for offset, data in entry["x"]:
                    os.pwrite(fd, data, offset)
                os.ftruncate(fd, entry["s"])
                os.fchmod(fd, entry["m"])
                os.utime(fd, ns=entry["t"])
                if key is not None:
                    opened[key] = fd
                else:
                    os.close(fd)
            elif kind == "l":
                os.symlink(entry["x"], name)
                os.utime(name, ns=entry["t"], follow_symlinks=False)
            elif kind == "p":
                os.mkfifo(name, entry["m"])
                os.utime(name, ns=entry["t"], follow_symlinks=False)
        while stack:
            name, mode, times = stack.pop()
            os.chdir(b"..")
            os.utime(name, ns=times, follow_symlinks=False)
            os.chmod(name, mode)
    finally:
        for fd in opened.values():
            os.close(fd)
        os.chdir(b"/")
    os.utime(root, ns=snapshot["times"])
    os.chmod(root, snapshot["mode"])


# ----------------------------------------------------------------------------- commands


def _limit_child(limits):
    def apply():
        os.setsid()
        pairs = (
            (resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1),
            (resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"]),
            (resource.RLIMIT_NPROC, limits["max_processes"], limits["max_processes"]),
            (resource.RLIMIT_FSIZE, limits["file_size_bytes"], limits["file_size_bytes"]),
            (resource.RLIMIT_NOFILE, limits["open_files"], limits["open_files"]),
            (resource.RLIMIT_CORE, 0, 0),
            (resource.RLIMIT_MSGQUEUE, 0, 0),
        )
        for which, soft, hard in pairs:
            resource.setrlimit(which, (int(soft), int(hard)))
        try:
            # The kernel's out-of-memory killer picks a command's process, never the runner.
            with open("/proc/self/oom_score_adj", "w") as handle:
                handle.write("1000")
        except OSError:
            pass
    return apply


def _other_pids():
    me = os.getpid()
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != me]


def _reap_orphans():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop_everything(child):
    """Kill the command and everything it started; return True if no process is left."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if child is not None and child.returncode is None:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        _reap_orphans()
        if not _other_pids():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)


def _resident_bytes(page_size):
    total = 0
    for pid in _other_pids():
        try:
            with open("/proc/%d/statm" % pid) as handle:
                total += int(handle.read().split()[1]) * page_size
        except (OSError, ValueError, IndexError):
            continue
    return total


def _mount_usage(mounts):
    """(bytes held, entries) of the writable tmpfs mounts, not counting their root folders."""
    held = entries = 0
    for mount in mounts:
        try:
            info = os.statvfs(mount)
        except OSError:
            continue
        held += (info.f_blocks - info.f_bfree) * info.f_frsize
        entries += max(0, info.f_files - info.f_ffree - 1)
    return held, entries


def _read_counter(fd, key):
    if fd is None:
        return 0
    try:
        text = os.pread(fd, 4096, 0).decode("ascii", "replace")
    except OSError:
        return 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


class _Sink:
    """A capped buffer for one output pipe; ``keep_last`` keeps the tail instead of the head."""

    def __init__(self, fd, cap, keep_last=False):
        self.fd, self.cap, self.keep_last = fd, cap, keep_last
        self.data = bytearray()
        self.overflow = False

    def read(self):
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.data.extend(chunk)
        if len(self.data) > self.cap:
            self.overflow = True
            if self.keep_last:
                del self.data[:len(self.data) - self.cap]
            else:
                del self.data[self.cap + 1:]
        return True


def _encode_command(command):
    try:
        return command.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return command.encode("utf-8", "surrogatepass")


class Runner:
    """The state that lives as long as the sandbox: limits, mounts, working directory."""

    def __init__(self, start, wake_read):
        self.home = os.fsencode(start["home"])
        self.mounts = [os.fsencode(path) for path in start["mounts"]]
        self.limits = start["limits"]
        self.max_entries = int(self.limits["max_entries"])
        # A command is stopped once the mounts hold more than max_entries; walks allow for the overshoot.
        self.walk_entries = 4 * self.max_entries + 20000
        self.disk_bytes = int(start["disk_bytes"])
        self.memory_cap = int(self.limits["total_memory_bytes"])
        self.cwd = self.home
        self.wake = wake_read
        self.oom_fd = start.get("oom_fd")
        self.oom_key = start.get("oom_key", "oom_kill")
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        for relative, content in sorted(start["files"].items()):
            path = os.path.join(self.home, os.fsencode(relative))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content.encode("utf-8"))

    # -- one command

    def run(self, request):
        notes = []
        command = _encode_command(request["command"])
        if b"\0" in command:
            return self._not_run("the command contains a NUL byte")
        if len(command) >= _ARG_MAX_STRLEN:
            return self._not_run("the command is %d bytes long; the limit is %d bytes" % (len(command),
                                                                                     _ARG_MAX_STRLEN - 1))
        snapshot = None
        if not request["persist"]:
            try:
                snapshot = capture(self.home, self.walk_entries, self.disk_bytes + (1 << 20))
            except (TooLarge, OSError) as error:
                return self._not_run("the workspace could not be copied to run this check without changing it "
                                     "(%s)" % error)
        try:
            result, stdout, stderr, channel = self._execute(command, request, notes)
        finally:
            self._clean(snapshot, notes)
        result["notes"] = notes
        return result, stdout, stderr, channel

    def _not_run(self, reason):
        return {"exit_code": None, "not_run": True, "timed_out": False, "output_overflow": False,
                "memory_overflow": False, "entries_overflow": False, "stdout_truncated": False,
                "stderr_truncated": False, "seconds": 0.0, "cwd": os.fsdecode(self.cwd),
                "channel_truncated": False, "notes": ["the command was not run: " + reason]}, b"", b"", b""

    def _start_directory(self, notes):
        problem = None
        for candidate in (self.cwd, self.home, b"/"):
            try:
                os.chdir(candidate)
            except OSError as error:
                problem = problem or "could not enter the working directory %s (%s)" % (
                    os.fsdecode(candidate), error.strerror)
                continue
            finally:
                os.chdir(b"/")
            if problem:
                notes.append("%s; starting in %s" % (problem, os.fsdecode(candidate)))
            return candidate
        return b"/"

    @staticmethod
    def _fresh_private_folder():
        try:
            os.mkdir(_PRIVATE, 0o700)
            return
        except FileExistsError:
            pass
        if stat.S_ISDIR(os.lstat(_PRIVATE).st_mode):
            wipe(_PRIVATE)
        else:
            os.unlink(_PRIVATE)
            os.mkdir(_PRIVATE, 0o700)

    def _execute(self, command, request, notes):
        limits = self.limits
        cap = int(request["output_bytes"])
        persist = bool(request["persist"])
        self._fresh_private_folder()
        cwd_read, cwd_write = os.pipe()
        startup = _PRIVATE + b"/startup.sh"
        with open(startup, "wb") as handle:
            # The EXIT trap reports where the command left off; installed through BASH_ENV (then unset)
            # so the command line seen by `ps` is just the command.
            handle.write(b"unset BASH_ENV\ntrap 'pwd >&%d 2>/dev/null' EXIT\n" % cwd_write)
        cwd = self._start_directory(notes)
        environment = dict(os.environb)
        environment.update({b"BASH_ENV": startup, b"PWD": cwd})
        pass_fds = [cwd_write]
        channel_read = channel_write = None
        if request.get("channel"):
            channel_read, channel_write = os.pipe()
            environment[b"RL_RESULT_FD"] = str(channel_write).encode()
            pass_fds.append(channel_write)
        started = time.monotonic()
        try:
            child = subprocess.Popen(
                [b"/bin/bash", b"-c", command], cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limit_child(limits), close_fds=True,
                pass_fds=tuple(pass_fds),
            )
        except (OSError, ValueError) as error:
            for fd in (cwd_read, channel_read):
                if fd is not None:
                    os.close(fd)
            result = self._not_run("it could not be started (%s)" % error)[0]
            notes.extend(result.pop("notes"))
            return result, b"", b"", b""
        finally:
            for fd in (cwd_write, channel_write):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        out = _Sink(child.stdout.fileno(), cap)
        err = _Sink(child.stderr.fileno(), cap)
        side = [_Sink(cwd_read, 8192, keep_last=True)]
        channel = _Sink(channel_read, int(request.get("channel_bytes") or 0)) if channel_read is not None else None
        if channel is not None:
            side.append(channel)
        open_sinks = [out, err] + side
        deadline = started + float(request["timeout"])
        oom_before = _read_counter(self.oom_fd, self.oom_key)
        _, entries_before = _mount_usage(self.mounts)
        timed_out = output_overflow = memory_overflow = entries_overflow = False
        next_poll = started
        peak = resident = 0
        polls = 0
        while True:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if child.poll() is not None:
                break
            if now >= next_poll:
                next_poll = now + _POLL_SECONDS
                held, entries = _mount_usage(self.mounts)
                if _read_counter(self.oom_fd, self.oom_key) > oom_before:
                    memory_overflow = True
                    break
                if polls % _RESIDENT_EVERY == 0:
                    resident = _resident_bytes(self.page_size)
                polls += 1
                used = held + entries * _INODE_BYTES + resident
                peak = max(peak, used)
                if used > self.memory_cap:
                    memory_overflow = True
                    break
                if entries > max(self.max_entries, entries_before + _ENTRIES_SLACK):
                    entries_overflow = True
                    break
            watched = [sink.fd for sink in open_sinks] + [self.wake]
            ready, _, _ = select.select(watched, [], [], max(0.0, min(deadline, next_poll) - now))
            for fd in ready:
                if fd == self.wake:
                    try:
                        os.read(self.wake, 4096)
                    except BlockingIOError:
                        pass
                    continue
                sink = next(item for item in open_sinks if item.fd == fd)
                if not sink.read():
                    open_sinks.remove(sink)
            if out.overflow or err.overflow:
                output_overflow = True
                break
        clean = _stop_everything(child)
        if _read_counter(self.oom_fd, self.oom_key) > oom_before:
            memory_overflow = True
        for sink in list(open_sinks):
            # Every writer is dead now, so this drains what is buffered and reaches end of file.
            while len(sink.data) <= sink.cap or sink.keep_last or sink is channel:
                ready, _, _ = select.select([sink.fd], [], [], 0.5)
                if not ready or not sink.read():
                    break
        child.stdout.close()
        child.stderr.close()
        for sink in side:
            os.close(sink.fd)
        elapsed = time.monotonic() - started
        exit_code = child.returncode
        killed_by = -exit_code if exit_code is not None and exit_code < 0 else None
        if killed_by in _SIGNAL_NOTES:
            notes.append(_SIGNAL_NOTES[killed_by])
        if not clean:
            notes.append("some processes could not be stopped")
        if entries_overflow:
            notes.append("more than %d files, folders and links in /root, /tmp and /dev/shm; command stopped"
                         % self.max_entries)
        if persist:
            self._update_cwd(bytes(side[0].data), notes)
        stdout, stderr = bytes(out.data), bytes(err.data)
        return {
            "exit_code": exit_code,
            "timed_out": timed_out,
            "output_overflow": output_overflow,
            "memory_overflow": memory_overflow,
            "entries_overflow": entries_overflow,
            "stdout_truncated": len(stdout) > cap,
            "stderr_truncated": len(stderr) > cap,
            "seconds": elapsed,
            "cwd": os.fsdecode(self.cwd),
            "channel_truncated": bool(channel and channel.overflow),
            "polled_peak_bytes": peak,
        }, stdout[:cap], stderr[:cap], bytes(channel.data[:channel.cap]) if channel else b""

    def _update_cwd(self, reported, notes):
        lines = [line for line in reported.split(b"\n") if line]
        if not lines:
            return
        candidate = lines[-1]
        scratch = any(candidate == mount or candidate.startswith(mount + b"/") for mount in self.mounts
                      if mount != self.home)
        if scratch:
            return  # /tmp and /dev/shm are emptied after every command
        if candidate.startswith(b"/") and os.path.isdir(candidate):
            self.cwd = candidate
        else:
            notes.append("the working directory reported at exit is not usable; staying in %s"
                         % os.fsdecode(self.cwd))

    def _clean(self, snapshot, notes):
        for mount in self.mounts:
            if mount == self.home:
                continue
            try:
                os.chmod(mount, 0o1777)
                wipe(mount)
            except OSError as error:
                notes.append("could not empty %s: %s" % (os.fsdecode(mount), error))
        if snapshot is not None:
            try:
                restore(self.home, snapshot)
            except OSError as error:
                notes.append("the workspace could not be put back exactly: %s" % error)

    # -- listing

    def files(self, request):
        """Regular files (as data segments) and symbolic links of the workspace, with full paths."""
        meta = []
        blob = []
        incomplete = []
        budget = [self.disk_bytes + (1 << 20)]
        path = []
        max_path_bytes = int(request.get("max_path_bytes", 16 << 20))
        path_bytes = 0
        walk = _Walk(self.home, self.walk_entries)
        try:
            for depth, name, info in walk:
                del path[depth:]
                path.append(name)
                mode = info.st_mode
                if stat.S_ISDIR(mode):
                    continue
                relative = b"/".join(path)
                if stat.S_ISREG(mode):
                    try:
                        size, segments = _read_segments(name, info, budget)
                    except OSError as error:
                        incomplete.append("could not read %s: %s" % (os.fsdecode(relative), error.strerror))
                        continue
                    record = [os.fsdecode(relative), "f", size, [[offset, len(data)] for offset, data in segments]]
                    blob.extend(data for _, data in segments)
                elif stat.S_ISLNK(mode):
                    record = [os.fsdecode(relative), "l", os.fsdecode(os.readlink(name))]
                else:
                    continue
                path_bytes += len(relative)
                if path_bytes > max_path_bytes:
                    incomplete.append("the paths of the workspace add up to more than %d bytes" % max_path_bytes)
                    break
                meta.append(record)
        except TooLarge as error:
            incomplete.append("the workspace holds %s; the rest is not listed" % error)
        except OSError as error:
            incomplete.append("the workspace could not be listed whole: %s" % error)
        return {"entries": meta, "incomplete": incomplete}, b"".join(blob)


# ----------------------------------------------------------------------------- protocol


def read_request(source):
    line = source.readline(32)
    if not line:
        return None
    body = source.read(int(line))
    return json.loads(body.decode("utf-8"))


def reply(sink, header, *payloads):
    header = dict(header, sizes=[len(payload) for payload in payloads])
    sink.write(MAGIC + json.dumps(header).encode("ascii") + b"\n")
    for payload in payloads:
        sink.write(payload)
    sink.flush()


def main():
    _make_undumpable()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    _quiet_signals(wake_write)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    start = read_request(source)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    if start.get("runner_memory_bytes"):
        limit = int(start["runner_memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    runner = Runner(start, wake_read)
    reply(sink, {"ok": True, "seccomp": _seccomp_mode(), "pid": os.getpid()})
    while True:
        request = read_request(source)
        if request is None or request["op"] == "exit":
            return
        try:
            if request["op"] == "run":
                result, stdout, stderr, channel = runner.run(request)
                reply(sink, result, stdout, stderr, channel)
            elif request["op"] == "files":
                listing, blob = runner.files(request)
                reply(sink, listing, blob)
            else:
                reply(sink, {"error": "unknown request %r" % request["op"]})
        except Exception as error:  # a bug here must not take the sandbox down; the host reports it
            reply(sink, {"error": "%s: %s" % (type(error).__name__, error)})


if __name__ == "__main__":
    main()
