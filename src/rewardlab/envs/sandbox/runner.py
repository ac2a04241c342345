"""The program that runs inside the bubblewrap sandbox, as PID 1 of its own PID namespace.

One invocation runs one command. It reads a JSON header line and the episode files (a tar
stream) from stdin, restores the files into the size-limited tmpfs at the home directory,
runs the command under resource limits with a wall-clock deadline, kills every process left
behind, and writes a framed result (header, stdout, stderr, new tar of the files) to stdout.

It uses the standard library only and must stay compatible with the system interpreter
(run as ``python3 -I -S``); the host reads this file's source and passes it with ``-c``.
"""

import ctypes
import io
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tarfile
import time

RESULT_MAGIC = b"RLRUNNER1 "
_PR_SET_DUMPABLE = 4
_SIGNAL_NOTES = {
    signal.SIGXCPU: "CPU time limit reached",
    signal.SIGXFSZ: "file size limit reached",
}


def _make_undumpable():
    # Without this, a command running as the same uid could open /proc/1/fd/1 and forge results.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _restore(state, home, notes):
    if not state:
        return
    try:
        with tarfile.open(fileobj=io.BytesIO(state), mode="r:") as archive:
            if hasattr(tarfile, "fully_trusted_filter"):
                archive.extractall(home, numeric_owner=True, filter="fully_trusted")
            else:
                archive.extractall(home, numeric_owner=True)
    except (tarfile.TarError, OSError) as error:
        notes.append("some files could not be restored: %s" % error)


def _make_readable(home):
    for root, dirs, files in os.walk(home):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                try:
                    os.chmod(path, os.stat(path).st_mode | 0o700)
                except OSError:
                    pass
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                try:
                    os.chmod(path, os.stat(path).st_mode | 0o600)
                except OSError:
                    pass


MAX_SAVED_ENTRIES = 20000


def _snapshot(home, notes):
    try:
        os.chmod(home, 0o755)
    except OSError:
        pass
    _make_readable(home)
    saved = [0]

    def keep(info):
        # Sockets, fifos and devices are dropped; so is everything past the entry cap.
        if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
            return None
        saved[0] += 1
        return info if saved[0] <= MAX_SAVED_ENTRIES else None

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(os.listdir(home)):
            try:
                archive.add(os.path.join(home, name), arcname=name, filter=keep)
            except OSError as error:
                notes.append("could not save %s: %s" % (name, error))
    if saved[0] > MAX_SAVED_ENTRIES:
        notes.append("the workspace holds more than %d files and folders; only the first %d were kept"
                     % (MAX_SAVED_ENTRIES, MAX_SAVED_ENTRIES))
    return buffer.getvalue()


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
        )
        for which, soft, hard in pairs:
            resource.setrlimit(which, (int(soft), int(hard)))
    return apply


def _other_pids():
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            pids.append(int(entry))
    return pids


def _signal_everyone():
    try:
        os.kill(-1, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
    _signal_everyone()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for _ in range(200):
        _reap_orphans()
        if not _other_pids():
            return True
        _signal_everyone()
        time.sleep(0.005)
    return False


def _namespace_rss_bytes(page_size):
    total = 0
    for pid in _other_pids():
        try:
            with open("/proc/%d/statm" % pid) as handle:
                total += int(handle.read().split()[1]) * page_size
        except (OSError, ValueError, IndexError):
            continue
    return total


def _run(header, notes):
    limits = header["limits"]
    cap = int(header["output_bytes"])
    # The EXIT trap records where the command left off; it is installed through BASH_ENV (and
    # BASH_ENV is then unset) so the command line seen by `ps` is just the command.
    private = "/tmp/.rewardlab"
    os.makedirs(private, exist_ok=True)
    cwd_file = "%s/cwd_%s" % (private, header["nonce"])
    startup_file = "%s/startup_%s.sh" % (private, header["nonce"])
    with open(startup_file, "w") as handle:
        handle.write('unset BASH_ENV\ntrap \'pwd > "%s" 2>/dev/null\' EXIT\n' % cwd_file)
    cwd = header.get("cwd") or header["home"]
    if not os.path.isdir(cwd):
        notes.append("previous working directory %s is gone; starting in %s" % (cwd, header["home"]))
        cwd = header["home"]
    # PWD keeps the logical path, so a shell that cd'ed into /rl_environment stays "there".
    environment = dict(os.environ, BASH_ENV=startup_file, PWD=cwd)
    started = time.monotonic()
    child = subprocess.Popen(
        ["/bin/bash", "-c", header["command"]], cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limit_child(limits), close_fds=True,
    )
    streams = {child.stdout.fileno(): bytearray(), child.stderr.fileno(): bytearray()}
    open_fds = set(streams)
    deadline = started + float(header["timeout"])
    memory_cap = int(limits["total_memory_bytes"])
    page_size = os.sysconf("SC_PAGE_SIZE")
    timed_out = output_overflow = memory_overflow = False
    next_memory_check = started
    while True:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if child.poll() is not None:
            break
        if now >= next_memory_check:
            next_memory_check = now + 0.05
            if _namespace_rss_bytes(page_size) > memory_cap:
                memory_overflow = True
                break
        if not open_fds:
            time.sleep(min(0.02, deadline - now))
            continue
        ready, _, _ = select.select(list(open_fds), [], [], min(0.05, deadline - now))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            streams[fd].extend(chunk)
            if len(streams[fd]) > cap:
                output_overflow = True
        if output_overflow:
            break
    clean = _stop_everything(child)
    for fd in list(open_fds):
        # Every writer is dead now, so this drains what is buffered and reaches end of file.
        while len(streams[fd]) <= cap:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            streams[fd].extend(chunk)
    elapsed = time.monotonic() - started
    exit_code = child.returncode
    killed_by = -exit_code if exit_code is not None and exit_code < 0 else None
    if killed_by in _SIGNAL_NOTES:
        notes.append(_SIGNAL_NOTES[killed_by])
    if not clean:
        notes.append("some processes could not be stopped")
    new_cwd = None
    try:
        with open(cwd_file) as handle:
            candidate = handle.read(4096).strip()
        if candidate.startswith("/") and os.path.isdir(candidate) and not candidate.startswith("/tmp"):
            new_cwd = candidate
    except OSError:
        pass
    stdout = bytes(streams[child.stdout.fileno()])
    stderr = bytes(streams[child.stderr.fileno()])
    return {
        "exit_code": exit_code,
        "timed_out": timed_out,
        "output_overflow": output_overflow,
        "memory_overflow": memory_overflow,
        "stdout_truncated": len(stdout) > cap,
        "stderr_truncated": len(stderr) > cap,
        "seconds": elapsed,
        "cwd": new_cwd or header.get("cwd") or header["home"],
    }, stdout[:cap], stderr[:cap]


def main():
    _make_undumpable()
    source = sys.stdin.buffer
    header = json.loads(source.readline(1 << 20).decode("utf-8"))
    state = source.read(int(header["state_len"]))
    notes = []
    home = header["home"]
    _restore(state, home, notes)
    result, stdout, stderr = _run(header, notes)
    new_state = _snapshot(home, notes) if header["persist"] else b""
    result.update(notes=notes, stdout_len=len(stdout), stderr_len=len(stderr), state_len=len(new_state))
    sink = sys.stdout.buffer
    sink.write(RESULT_MAGIC + json.dumps(result).encode("utf-8") + b"\n")
    sink.write(stdout)
    sink.write(stderr)
    sink.write(new_state)
    sink.flush()


if __name__ == "__main__":
    main()
