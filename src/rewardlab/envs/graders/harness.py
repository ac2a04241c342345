"""The grading harness: the trusted program that runs a grading check inside the episode's sandbox.

It is started as ``python3 -I -c SOURCE`` (the host appends ``main(CONFIG)`` to this file's source)
by a command run with a result channel, and it is the only writer of that channel:

1. It takes the channel's descriptor from ``RL_RESULT_FD``, removes the variable from its
   environment, marks the descriptor close-on-exec, makes itself non-dumpable (so no process of
   the same user can open ``/proc/<pid>/fd``, ``/proc/<pid>/mem`` or ptrace it), and ignores the
   catchable termination signals.
2. It runs ``plan(*plan_args)`` from the check's body itself: trusted code that only looks at file
   metadata (never imports or runs a file of the episode) and returns the calls to make.
3. For each call it forks a child that closes every descriptor but a private pipe, points stdout
   at /dev/null and stderr at a second private pipe (whose tail is kept), restores default signal
   handling and runs ``probe(*args)``: this is where the episode's code runs. The child turns the
   return value (or the exception) into exact built-in types and sends it with ``marshal``, both
   through references taken before the episode's code ran (`_Kit`), over its private pipe, and
   exits. The harness waits for the child (killing it at the deadline), reads at most
   ``_MAX_CALL_BYTES`` of what it sent, and turns it into JSON with exact-type checks and bounds.
4. It writes one JSON object to the channel: ``{"plan": ..., "calls": [...]}`` or ``{"error": ...}``.

What the child sends is untrusted: the episode's code runs in that process and can write anything
to the private pipe (or, reaching into this harness's objects, change how the child reports), which
is no more than choosing what ``probe`` returns. Patching public modules (``json``, ``marshal``,
``math``, ``builtins``, ``os``) does not change the value reported. The episode's code can never
write to the result channel, which it does not hold and cannot reopen.

Uses the standard library only and must stay compatible with the sandbox's system Python 3.
"""

import ctypes
import json
import marshal
import numbers
import os
import runpy  # noqa: F401 - imported here so probe bodies in the child never import it from the episode
import select
import signal
import sys
import time

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3
_MAX_CALL_BYTES = 16000
_CHANNEL_BUDGET = 60000
_STDERR_TAIL = 400
_MAX_REPR = 200
_MAX_STRING = 2000
_MAX_ITEMS = 500
_MAX_NODES = 5000
_MAX_DEPTH = 12
_MAX_INT = 10 ** 300
# A child's result is one frame (magic, 8 decimal digits of length, marshal data) and counts only if
# the child then exits with status 0: a frame forged by the episode's code next to the real one, or
# a real one that could not be written (descriptor closed by the episode), makes the call an error.
_FRAME_MAGIC = b"RLCALL1:"
_REPORT_FAILED = 70
_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGALRM",
            "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGXFSZ")


def _undumpable():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[written:]


class _Kit:
    """References taken before any of the episode's code runs: patching ``builtins``, ``json``,
    ``marshal`` or ``os`` from the episode's code does not change what the child uses to hand
    its result back (only reaching into this harness's own objects could)."""

    type = type
    str = str
    int = int
    float = float
    bool = bool
    list = list
    tuple = tuple
    dict = dict
    repr = repr
    len = len
    isinstance = isinstance
    real = numbers.Real
    as_float = float.__float__
    as_int = int.__index__
    as_str = str.__str__
    dict_items = dict.items
    dumps = marshal.dumps
    write = os.write
    exit = os._exit


def _safe_repr(value, kit=_Kit):
    try:
        text = kit.repr(value)
        return kit.as_str(text)[:_MAX_REPR] if kit.isinstance(text, kit.str) else "<unprintable>"
    except BaseException:  # noqa: BLE001 - the episode's __repr__ may do anything
        return "<unprintable>"


def _type_name(value, kit=_Kit):
    try:
        name = kit.type(value).__name__
        return kit.as_str(name)[:80] if kit.isinstance(name, kit.str) else "object"
    except BaseException:  # noqa: BLE001
        return "object"


def _describe(error, kit=_Kit):
    name = _type_name(error)
    try:
        text = kit.str(error)
        text = kit.as_str(text) if kit.isinstance(text, kit.str) else ""
    except BaseException:  # noqa: BLE001
        text = "<unprintable>"
    return (name + (": " + text if text else ""))[:500]


def _plain(value, budget, depth=0, kit=_Kit):
    """``value`` as exact built-in types that marshal can write; tuples mark what cannot be written.

    Subclasses are read through the base type's own slots (a float subclass gives its float value,
    whatever its ``__repr__`` or ``__eq__`` say); other real numbers go through ``float()``.
    """
    budget[0] -= 1
    kind = kit.type(value)
    if value is None or kind is kit.bool:
        return value
    if budget[0] < 0 or depth > _MAX_DEPTH:
        return ("$unsupported", "too large", "")
    if kind is kit.float or kind is kit.int or kind is kit.str:
        return value if kind is not kit.str else value[:_MAX_STRING]
    if kit.isinstance(value, kit.float):
        return kit.as_float(value)
    if kit.isinstance(value, kit.int):
        return kit.as_int(value)
    if kit.isinstance(value, kit.str):
        return kit.as_str(value)[:_MAX_STRING]
    if kit.isinstance(value, (kit.list, kit.tuple)):
        items = kit.list.copy(value) if kit.isinstance(value, kit.list) else kit.list(kit.tuple.__iter__(value))
        return [_plain(item, budget, depth + 1) for item in items[:_MAX_ITEMS]]
    if kit.isinstance(value, kit.dict):
        return {kit.as_str(key)[:_MAX_STRING]: _plain(item, budget, depth + 1)
                for key, item in kit.list(kit.dict_items(value))[:_MAX_ITEMS] if kit.isinstance(key, kit.str)}
    if kit.isinstance(value, kit.real):
        number = kit.float(value)
        if kit.type(number) is kit.float:
            return number
    return ("$unsupported", _type_name(value), _safe_repr(value))


def _child(namespace, args, result_fd, stderr_fd, kit=_Kit):
    """Run ``probe(*args)`` (the episode's code) and send its result; never returns."""
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(stderr_fd, 2)
        os.closerange(3, result_fd)
        os.closerange(result_fd + 1, 1 << 16)
        for name in _SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        value = namespace["probe"](*args)
        message = ("value", _plain(value, [_MAX_NODES]))
    except BaseException as error:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are results too
        message = ("error", _describe(error))
    try:
        data = kit.dumps(message)
        if kit.len(data) > _MAX_CALL_BYTES - 16:
            data = kit.dumps(("error", "the result is too large (%d bytes)" % kit.len(data)))
    except BaseException as error:  # noqa: BLE001
        data = kit.dumps(("error", "the result could not be encoded: " + _describe(error)))
    status = _REPORT_FAILED
    try:
        view = memoryview(_FRAME_MAGIC + b"%08d" % kit.len(data) + data)
        while view:
            view = view[kit.write(result_fd, view):]
        status = 0
    finally:
        kit.exit(status)


def _unframe(payload):
    """The marshal data of exactly one frame, or ValueError."""
    head = len(_FRAME_MAGIC) + 8
    if not payload.startswith(_FRAME_MAGIC) or not payload[len(_FRAME_MAGIC):head].isdigit():
        raise ValueError("the result is not framed")
    if int(payload[len(_FRAME_MAGIC):head]) != len(payload) - head:
        raise ValueError("the check wrote more (or less) than one result")
    return payload[head:]


def _to_json(value, budget, depth=0):
    """What a child sent (untrusted) as JSON-ready data: exact types only, bounded in size and depth."""
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH + 1:
        raise ValueError("the result is too large or too deep")
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return value
    if kind is int:
        if -_MAX_INT < value < _MAX_INT:
            return value
        return {"$unsupported": "int", "repr": "an integer too large for a float"}
    if kind is str:
        return value[:_MAX_STRING]
    if kind is list:
        return [_to_json(item, budget, depth + 1) for item in value[:_MAX_ITEMS]]
    if kind is dict:
        return {key: _to_json(item, budget, depth + 1) for key, item in list(value.items())[:_MAX_ITEMS]
                if type(key) is str}
    if kind is tuple and len(value) == 3 and value[0] == "$unsupported":
        return {"$unsupported": str(value[1])[:80], "repr": str(value[2])[:_MAX_REPR]}
    raise ValueError("the result holds a %s" % kind.__name__)


def _read_available(fd, sink, cap):
    """Read what is in ``fd`` now (non-blocking); return False at end of file."""
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        if cap is None:
            sink.extend(chunk)
            del sink[:-_STDERR_TAIL]
        elif len(sink) <= cap:
            sink.extend(chunk[:cap + 1 - len(sink)])


def _status_of(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return None


def _call(namespace, args, deadline):
    """One forked call of ``probe(*args)``: its result, exit status, stderr tail, whether it timed out."""
    result_read, result_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(namespace, args, result_write, stderr_write)
    os.close(result_write)
    os.close(stderr_write)
    payload, stderr = bytearray(), bytearray()
    sinks = {result_read: (payload, _MAX_CALL_BYTES), stderr_read: (stderr, None)}
    open_fds = [result_read, stderr_read]
    status = None
    timed_out = False
    while True:
        finished, raw_status = os.waitpid(pid, os.WNOHANG)
        if finished:
            status = _status_of(raw_status)
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except OSError:
                    pass
            status = _status_of(os.waitpid(pid, 0)[1])
            break
        if not open_fds:
            time.sleep(min(0.01, remaining))
            continue
        for fd in select.select(open_fds, [], [], min(0.05, remaining))[0]:
            sink, cap = sinks[fd]
            if not _read_available(fd, sink, cap):
                open_fds.remove(fd)
    # The child has exited; whatever its leftover processes still hold open is not waited for.
    for fd in open_fds:
        sink, cap = sinks[fd]
        _read_available(fd, sink, cap)
    os.close(result_read)
    os.close(stderr_read)
    entry = {"exit": status, "timed_out": timed_out, "stderr": bytes(stderr).decode("utf-8", "replace")}
    if timed_out:
        return entry
    if len(payload) > _MAX_CALL_BYTES:
        entry["error"] = "the result is larger than %d bytes" % _MAX_CALL_BYTES
        return entry
    if payload and status != 0:
        entry["error"] = "the check exited with status %s after writing a result; the result is not used" % status
    elif payload:
        try:
            message = marshal.loads(_unframe(bytes(payload)))
            if type(message) is not tuple or len(message) != 2:
                raise ValueError("not a (kind, value) pair")
            if message[0] == "value":
                entry["value"] = _to_json(message[1], [_MAX_NODES * 2])
            elif message[0] == "error" and type(message[1]) is str:
                entry["error"] = message[1][:500]
            else:
                raise ValueError("unknown kind of result")
        except Exception as error:  # noqa: BLE001 - marshal refuses malformed data in many ways
            entry["error"] = "unreadable result from the check: %s" % _describe(error)
    return entry


def _shrink(report):
    """Keep the report under the channel's budget: oversized call results become errors."""
    data = json.dumps(report, ensure_ascii=True, allow_nan=True)
    calls = report.get("calls") or []
    while len(data) > _CHANNEL_BUDGET and calls:
        biggest = max(calls, key=lambda entry: len(json.dumps(entry, allow_nan=True)))
        if "value" not in biggest and len(biggest.get("stderr", "")) == 0:
            break
        biggest.pop("value", None)
        biggest["stderr"] = ""
        biggest["error"] = "the result did not fit in the grading channel"
        data = json.dumps(report, ensure_ascii=True, allow_nan=True)
    if len(data) > _CHANNEL_BUDGET:
        data = json.dumps({"error": "the grading report did not fit in the channel"})
    return data.encode("ascii")


def main(config_text):
    """Run the check described by ``config_text`` (JSON) and report on the result channel."""
    started = time.monotonic()
    descriptor = os.environ.pop("RL_RESULT_FD", None)
    if descriptor is None or not descriptor.isdigit():
        sys.exit(3)
    channel = int(descriptor)
    try:
        os.set_inheritable(channel, False)
    except OSError:
        sys.exit(3)
    for name in _SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if not _undumpable():
        report = {"error": "the grading harness could not make itself non-dumpable (prctl failed)"}
    else:
        try:
            report = _check(json.loads(config_text), started)
        except Exception as error:  # noqa: BLE001 - e.g. a folder the episode made unreadable
            report = {"error": "the grading harness failed: " + _describe(error)}
    _write_all(channel, _shrink(report))
    os.close(channel)


def _check(config, started):
    deadline = started + float(config["timeout"])
    target = os.path.join(config["home"], config["folder"]) if config["folder"] else config["home"]
    try:
        os.chdir(target)
    except OSError as error:
        return {"error": "folder %s cannot be entered: %s" % (config["folder"] or ".", error.strerror),
                "folder_missing": True}
    namespace = {"__name__": "rewardlab_check", "__builtins__": __builtins__}
    exec(compile(config["body"], "rewardlab-check", "exec"), namespace)
    calls = config.get("calls")
    plan = None
    if calls is None:
        try:
            plan = namespace["plan"](*config.get("plan_args", []))
        except Exception as error:  # noqa: BLE001 - e.g. an unreadable folder
            return {"error": "the check could not list its inputs: " + _describe(error)}
        calls = [entry if type(entry) is list else [entry] for entry in plan]
    results = []
    for args in calls:
        if time.monotonic() >= deadline:
            results.append({"exit": None, "timed_out": True, "stderr": ""})
            continue
        results.append(_call(namespace, args, deadline))
    return {"plan": plan, "calls": results}
