"""`rewardlab-bwrap`: rewardlab's bubblewrap sandbox as an Inspect sandbox environment.

Any Inspect task can use it (``sandbox="rewardlab-bwrap"``, or ``("rewardlab-bwrap", config)``). Each
sample gets one `BubblewrapSession` (`rewardlab.envs.sandbox.bwrap`): no network, a read-only ``/``, a
size-limited tmpfs at ``/root`` (the sample's working directory), seccomp, memory, process and time
limits. What differs from a container, by design of that sandbox:

- only ``/root`` is writable and kept; ``/tmp`` and ``/dev/shm`` are emptied after every command, so
  `write_file` refuses paths there (and so Inspect's ``Sample.setup`` scripts, which go to ``/tmp``,
  cannot run);
- every process left behind is killed when its command ends (no background servers, so Inspect's
  injected sandbox tools such as ``bash_session`` do not work; ``bash()`` and ``python()`` do);
- each command has a wall-clock limit (the config's ``command_timeout``, 20 s by default) even when
  ``exec`` is called without ``timeout``, and each output stream is capped at ``output_bytes``
  (10,000 by default): past it the command is stopped and `OutputLimitExceededError` raised;
- commands run as uid 0 of the sandbox's user namespace with no capabilities; ``user`` may only be
  None or ``root``.

The session's PID 1 dies with the thread that started it, so each session is started on a thread of
its own that lives until `sample_cleanup`.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import shlex
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import anyio
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel, ConfigDict

from rewardlab.envs.sandbox.base import CHANNEL_BYTES, HOME, CommandResult, SandboxError, SandboxLimits
from rewardlab.envs.sandbox.bwrap import BubblewrapSandbox, BubblewrapSession
from rewardlab.errors import ConfigError

SANDBOX_NAME = "rewardlab-bwrap"
_ARG_LIMIT = 131_000
"""A command longer than this (Linux's limit on one argument is 131,071 bytes) is staged in a file first."""
_WRITE_CHUNK = 60_000
"""Raw bytes per write command: their base64 form stays well under the argument limit."""
_STAGING = f"{HOME}/.rewardlab-inspect"
_SCRATCH = ("/tmp", "/dev/shm")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
T = TypeVar("T")


class RewardlabBwrapConfig(BaseModel):
    """Limits of the `rewardlab-bwrap` sandbox; a field left as None keeps `SandboxLimits`' default.

    Fields mean what they mean in `rewardlab.envs.sandbox.SandboxLimits` (README, "The sandbox").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_timeout: float | None = None
    cpu_seconds: int | None = None
    memory_bytes: int | None = None
    total_memory_bytes: int | None = None
    max_processes: int | None = None
    file_size_bytes: int | None = None
    open_files: int | None = None
    output_bytes: int | None = None
    disk_bytes: int | None = None
    tmp_bytes: int | None = None
    max_entries: int | None = None

    def limits(self) -> SandboxLimits:
        """The `SandboxLimits` this config asks for (bad values raise `ConfigError`)."""
        chosen = {name: value for name, value in self.model_dump().items() if value is not None}
        try:
            return SandboxLimits(**chosen)
        except ValueError as error:
            raise ConfigError(f"{SANDBOX_NAME} config: {error}") from None


def limits_of(config: SandboxEnvironmentConfigType | None) -> SandboxLimits:
    """The limits named by a sandbox config: None, a `RewardlabBwrapConfig`, or a JSON file of its fields."""
    if config is None:
        return SandboxLimits()
    if isinstance(config, RewardlabBwrapConfig):
        return config.limits()
    if isinstance(config, str):
        path = Path(config)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{SANDBOX_NAME} config file {path}: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{SANDBOX_NAME} config file {path} should hold a JSON object of limits")
        return _parse_config(data, str(path)).limits()
    if isinstance(config, BaseModel):
        return _parse_config(config.model_dump(), type(config).__name__).limits()
    raise ConfigError(f"{SANDBOX_NAME} config must be a RewardlabBwrapConfig or a JSON file, "
                      f"got {type(config).__name__}")


def _parse_config(data: dict[str, Any], source: str) -> RewardlabBwrapConfig:
    unknown = sorted(set(data) - set(RewardlabBwrapConfig.model_fields))
    if unknown:
        raise ConfigError(f"{SANDBOX_NAME} config {source}: unknown field(s) {', '.join(unknown)} "
                          f"(accepted: {', '.join(RewardlabBwrapConfig.model_fields)})")
    try:
        return RewardlabBwrapConfig(**data)
    except ValueError as error:
        raise ConfigError(f"{SANDBOX_NAME} config {source}: {error}".splitlines()[0]) from None


_sandboxes: dict[SandboxLimits, BubblewrapSandbox] = {}
_sandboxes_lock = threading.Lock()


def bubblewrap_for(limits: SandboxLimits) -> BubblewrapSandbox:
    """The (cached) `BubblewrapSandbox` for ``limits``; built once, since building it runs bwrap's self-test."""
    with _sandboxes_lock:
        if limits not in _sandboxes:
            _sandboxes[limits] = BubblewrapSandbox(limits)
        return _sandboxes[limits]


def _quote(path: str) -> str:
    return shlex.quote(path)


def _unstage(staged: str) -> str:
    """Shell text that removes a staged file (and its folder once empty), keeping the last exit status."""
    return f"status=$?; rm -f -- {_quote(staged)}; rmdir -- {_quote(_STAGING)} 2>/dev/null; exit $status"


def resolve_path(file: str) -> str:
    """An absolute, normalised sandbox path; relative paths are relative to the working directory ``/root``."""
    path = file if file.startswith("/") else f"{HOME}/{file}"
    return posixpath.normpath(path)


@sandboxenv(name=SANDBOX_NAME)
class RewardlabBwrapSandbox(SandboxEnvironment):
    """One sample's bubblewrap sandbox (see the module docstring for how it differs from a container)."""

    def __init__(self, session: BubblewrapSession, keeper: ThreadPoolExecutor, limits: SandboxLimits) -> None:
        super().__init__()
        self.session = session
        """The live `BubblewrapSession`: rewardlab's own episodes and graders use it directly."""
        self.limits = limits
        self._keeper = keeper

    # -- lifecycle

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        """A config dict from a log or a task file, as a `RewardlabBwrapConfig`."""
        return _parse_config(config, "dict")

    @classmethod
    def default_concurrency(cls) -> int | None:
        """Sandboxes are cheap (about 40 ms to start); allow two per CPU at once."""
        return 2 * (os.cpu_count() or 1)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        """Check once, before any sample, that bubblewrap works here with these limits."""
        limits = limits_of(config)
        await anyio.to_thread.run_sync(bubblewrap_for, limits)

    @classmethod
    async def sample_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None,
                          metadata: dict[str, str]) -> dict[str, SandboxEnvironment]:
        """Start one empty sandbox for the sample (Inspect then writes the sample's files into it)."""
        limits = limits_of(config)
        sandbox = await anyio.to_thread.run_sync(bubblewrap_for, limits)
        keeper = ThreadPoolExecutor(max_workers=1, thread_name_prefix=SANDBOX_NAME)
        future = keeper.submit(sandbox.start, {})
        try:
            session = await anyio.to_thread.run_sync(future.result)
        except BaseException:
            keeper.shutdown(wait=False)
            raise
        return {"default": cls(session, keeper, limits)}

    @classmethod
    async def sample_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None,
                             environments: dict[str, SandboxEnvironment], interrupted: bool) -> None:
        """Kill the sample's sandboxes; their files go with them."""
        for environment in environments.values():
            if isinstance(environment, RewardlabBwrapSandbox):
                await anyio.to_thread.run_sync(environment.close)

    def close(self) -> None:
        """Kill the sandbox and end the thread that started it (idempotent)."""
        try:
            self.session.close()
        finally:
            self._keeper.shutdown(wait=False)

    # -- commands

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))
        except SandboxError as error:
            raise SandboxUnavailableError(f"{SANDBOX_NAME}: {error}") from error

    async def _run(self, script: str, *, timeout: float | None = None, channel: bool = False) -> CommandResult:
        """Run a shell script in the sandbox; one longer than the argument limit is staged in a file first."""
        if len(script.encode("utf-8", "surrogateescape")) > _ARG_LIMIT:
            staged = await self._stage(script.encode("utf-8", "surrogateescape"))
            script = f"bash {_quote(staged)}; {_unstage(staged)}"
        return await self._call(self.session.run, script, timeout=timeout, channel=channel)

    async def _stage(self, data: bytes) -> str:
        """Write ``data`` to a new file under ``/root/.rewardlab-inspect`` (the only folder that outlives a command)."""
        path = f"{_STAGING}/{uuid.uuid4().hex}"
        await self._write_bytes(path, data)
        return path

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Run ``cmd`` (resolved through the sandbox's ``PATH``) in ``cwd`` (default ``/root``).

        The command runs in a subshell, so it never moves the working directory that rewardlab's own
        episode commands carry from one command to the next. Without ``timeout`` the config's
        ``command_timeout`` applies. A timed-out command is not retried (the sandbox has killed
        everything it started, so a retry would start from scratch anyway).
        """
        if user not in (None, "root", "0"):
            raise SandboxUserUnsupportedError(f"{SANDBOX_NAME} runs every command as root of its own user "
                                              f"namespace (no capabilities); it cannot run as {user!r}")
        if not cmd:
            raise ValueError("exec needs a command")
        if any("\x00" in part for part in cmd):
            raise ValueError("exec: a command argument contains a NUL character")
        lines = [f"cd -- {_quote(resolve_path(cwd or HOME))} || exit 1"]
        for name, value in (env or {}).items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"exec: {name!r} is not a valid environment variable name")
            lines.append(f"export {name}={_quote(value)}")
        lines.append("exec " + " ".join(_quote(part) for part in cmd))
        body = "(\n" + "\n".join(lines) + "\n)"
        staged: str | None = None
        if input is not None:
            data = input.encode("utf-8") if isinstance(input, str) else bytes(input)
            encoded = base64.b64encode(data).decode("ascii")
            if len(encoded) + len(body) < _ARG_LIMIT - 1000:
                body = f"printf %s {encoded} | base64 -d | {body}"
            else:
                staged = await self._stage(data)
                body = f"{body} < {_quote(staged)}; {_unstage(staged)}"
        result = await self._run(body, timeout=float(timeout) if timeout is not None else None)
        if result.timed_out:
            raise TimeoutError(f"{SANDBOX_NAME}: command timed out after "
                               f"{timeout if timeout is not None else self.limits.command_timeout:g} s and was killed")
        if result.output_truncated:
            raise OutputLimitExceededError(f"{self.limits.output_bytes} bytes per stream", result.stdout)
        stderr = result.stderr
        if result.notes:
            notes = "\n".join(f"[sandbox: {note}]" for note in result.notes)
            stderr = f"{stderr.rstrip()}\n{notes}" if stderr.strip() else notes
        code = result.exit_code
        if code is None:
            code = 126  # not run at all (the notes say why), as a shell reports a command it cannot execute
        elif code < 0:
            code = 128 - code  # killed by a signal, reported as a shell does
        return ExecResult(success=code == 0, returncode=code, stdout=result.stdout, stderr=stderr)

    # -- files

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Write ``file`` (parent folders created). Paths under ``/tmp`` and ``/dev/shm`` are refused: those
        are emptied after every command, so the file would be gone before anything could read it."""
        path = resolve_path(file)
        if any(path == scratch or path.startswith(scratch + "/") for scratch in _SCRATCH):
            raise PermissionError(f"{SANDBOX_NAME}: {path} would be deleted right away (/tmp and /dev/shm are "
                                  f"emptied after every command); write under {HOME} instead")
        data = contents.encode("utf-8") if isinstance(contents, str) else bytes(contents)
        await self._write_bytes(path, data)

    async def _write_bytes(self, path: str, data: bytes) -> None:
        quoted = _quote(path)
        first, rest = data[:_WRITE_CHUNK], data[_WRITE_CHUNK:]
        prepare = (f"if [ -d {quoted} ]; then exit 21; fi\n"
                   f"mkdir -p -- \"$(dirname -- {quoted})\" || exit 13\n"
                   f"printf %s {base64.b64encode(first).decode('ascii')} | base64 -d > {quoted} || exit 13")
        result = await self._run(prepare)
        self._raise_for_file(result, path)
        for start in range(0, len(rest), _WRITE_CHUNK):
            chunk = base64.b64encode(rest[start:start + _WRITE_CHUNK]).decode("ascii")
            result = await self._run(f"printf %s {chunk} | base64 -d >> {quoted} || exit 13")
            self._raise_for_file(result, path)

    @staticmethod
    def _raise_for_file(result: CommandResult, path: str) -> None:
        message = (result.stderr.strip() or "; ".join(result.notes) or f"exit status {result.exit_code}")[:500]
        if result.exit_code == 0:
            return
        if result.exit_code == 21:
            raise IsADirectoryError(f"{SANDBOX_NAME}: {path} is a directory")
        if result.exit_code == 2:
            raise FileNotFoundError(f"{SANDBOX_NAME}: {path} does not exist")
        if result.exit_code == 13:
            raise PermissionError(f"{SANDBOX_NAME}: cannot write {path}: {message}")
        if result.timed_out:
            raise TimeoutError(f"{SANDBOX_NAME}: the file operation on {path} timed out")
        raise SandboxUnavailableError(f"{SANDBOX_NAME}: the file operation on {path} failed: {message}")

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """Read ``file``, in pieces of the result channel's size (64 KiB), never through the output cap."""
        path = resolve_path(file)
        quoted = _quote(path)
        probe = await self._run(f"if [ -d {quoted} ]; then exit 21; elif [ ! -e {quoted} ]; then exit 2; "
                                f"elif [ ! -r {quoted} ]; then exit 13; fi; stat -L -c %s -- {quoted}")
        if probe.exit_code == 13:
            raise PermissionError(f"{SANDBOX_NAME}: cannot read {path}: permission denied")
        self._raise_for_file(probe, path)
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        try:
            size = int(probe.stdout.strip())
        except ValueError:
            size = 0
        if size > limit:
            raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None)
        data = bytearray()
        block = 0
        while True:
            result = await self._run(f"dd if={quoted} bs={CHANNEL_BYTES} skip={block} count=1 status=none "
                                     f">&\"$RL_RESULT_FD\"", channel=True)
            self._raise_for_file(result, path)
            piece = result.channel or b""
            data.extend(piece)
            if len(data) > limit:
                raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None)
            if len(piece) < CHANNEL_BYTES:
                break
            block += 1
        return bytes(data).decode("utf-8") if text else bytes(data)

