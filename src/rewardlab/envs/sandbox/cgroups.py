"""Control groups for sandboxes: one memory + pids cgroup per session, when this machine allows it.

With a memory cgroup the kernel counts, and caps, everything the sandbox holds: its processes,
the runner, files in its tmpfs mounts, memfds, pipes and the kernel memory of its inodes. The
pids cgroup caps the number of processes whatever their uid. cgroup v1 (separate ``memory`` and
``pids`` hierarchies) and cgroup v2 (one unified hierarchy with both controllers delegated to
us) are supported; otherwise `detect` says why not and the sandbox falls back to polling.

The host creates the cgroup below its own, and the sandbox's first process moves itself in
before it execs bubblewrap (see `Cgroup.enter_script`), so no process of the sandbox ever runs
outside it.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


@dataclass(frozen=True)
class CgroupSupport:
    """What this machine offers: ``version`` 1 or 2 and the parent folders, or ``None`` and why not."""

    version: int | None
    memory_parent: Path | None = None
    pids_parent: Path | None = None
    reason: str = ""

    @property
    def mechanism(self) -> str:
        return f"cgroup v{self.version}" if self.version else "none"


def _own_paths() -> dict[str, str]:
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _writable_folder(path: Path) -> bool:
    probe = path / f"rewardlab-probe-{os.getpid()}-{next(_counter)}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        probe.rmdir()
    except OSError:
        pass
    return True


def detect() -> CgroupSupport:
    """Which cgroup version can limit sandboxes here (v1 memory+pids first, then delegated v2)."""
    own = _own_paths()
    if (_ROOT / "memory" / "memory.limit_in_bytes").exists() or (_ROOT / "memory" / "cgroup.procs").exists():
        memory = _ROOT / "memory" / own.get("memory", "/").lstrip("/")
        pids = _ROOT / "pids" / own.get("pids", "/").lstrip("/")
        if not (memory / "memory.limit_in_bytes").exists():
            return CgroupSupport(None, reason=f"cgroup v1 memory folder {memory} not found")
        if not _writable_folder(memory):
            return CgroupSupport(None, reason=f"cannot create cgroups under {memory} (needs root or delegation)")
        pids_ok = pids.is_dir() and _writable_folder(pids)
        return CgroupSupport(1, memory, pids if pids_ok else None,
                             "" if pids_ok else f"cgroup v1 pids folder {pids} not writable")
    if (_ROOT / "cgroup.controllers").exists() and "" in own:
        parent = _ROOT / own[""].lstrip("/")
        try:
            controllers = (parent / "cgroup.controllers").read_text().split()
        except OSError as error:
            return CgroupSupport(None, reason=f"cannot read {parent}/cgroup.controllers: {error}")
        if "memory" not in controllers or "pids" not in controllers:
            return CgroupSupport(None, reason=f"cgroup v2 controllers memory and pids are not delegated to {parent}")
        try:
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            if "memory" not in enabled or "pids" not in enabled:
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError as error:
            return CgroupSupport(None, reason=(
                f"cannot enable memory and pids for children of {parent} ({error}); run rewardlab in its own "
                "delegated cgroup, e.g. `systemd-run --user --scope -p Delegate=yes rewardlab ...`"))
        if not _writable_folder(parent):
            return CgroupSupport(None, reason=f"cannot create cgroups under {parent}")
        return CgroupSupport(2, parent, parent)
    return CgroupSupport(None, reason="no usable cgroup hierarchy found under /sys/fs/cgroup")


class Cgroup:
    """One sandbox session's cgroup(s): created with limits, entered by the sandbox, removed at close."""

    def __init__(self, support: CgroupSupport, memory_bytes: int, max_pids: int, owner: int | None) -> None:
        assert support.version is not None and support.memory_parent is not None
        self.version = support.version
        name = f"rewardlab-{os.getpid()}-{next(_counter)}"
        self.memory = support.memory_parent / name
        self.pids = support.pids_parent / name if support.pids_parent is not None else None
        if self.pids == self.memory:
            self.pids = None
        self.memory.mkdir()
        try:
            if self.pids is not None:
                self.pids.mkdir()
            if self.version == 1:
                self._write(self.memory / "memory.limit_in_bytes", memory_bytes)
                if (self.memory / "memory.memsw.limit_in_bytes").exists():
                    self._write(self.memory / "memory.memsw.limit_in_bytes", memory_bytes)
                if self.pids is not None:
                    self._write(self.pids / "pids.max", max_pids)
            else:
                self._write(self.memory / "memory.max", memory_bytes)
                if (self.memory / "memory.swap.max").exists():
                    self._write(self.memory / "memory.swap.max", 0)
                self._write(self.memory / "pids.max", max_pids)
                if (self.memory / "memory.oom.group").exists():
                    self._write(self.memory / "memory.oom.group", 0)
            if owner is not None:
                for folder in self.folders:
                    os.chown(folder / "cgroup.procs", owner, -1)
        except BaseException:
            self.remove()
            raise

    @staticmethod
    def _write(path: Path, value: int) -> None:
        path.write_text(str(int(value)))

    @property
    def folders(self) -> list[Path]:
        return [self.memory] + ([self.pids] if self.pids is not None else [])

    def enter_script(self) -> list[str]:
        """A ``sh`` prefix that moves itself into the cgroup(s), then execs the rest of the command line."""
        writes = " && ".join(f'echo $$ > "{folder}/cgroup.procs"' for folder in self.folders)
        return ["/bin/sh", "-c", f'{writes} && exec "$@"', "rewardlab-sandbox"]

    def _read(self, name: str) -> str:
        try:
            return (self.memory / name).read_text()
        except OSError:
            return ""

    def peak_memory_bytes(self) -> int | None:
        """Highest memory use of the sandbox so far, as the kernel counted it."""
        text = self._read("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak").strip()
        return int(text) if text.isdigit() else None

    def memory_bytes(self) -> int | None:
        """Current memory use of the sandbox."""
        text = self._read("memory.usage_in_bytes" if self.version == 1 else "memory.current").strip()
        return int(text) if text.isdigit() else None

    def oom_kills(self) -> int:
        """How many processes the kernel killed because the sandbox reached its memory limit."""
        text = self._read("memory.oom_control" if self.version == 1 else "memory.events")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def processes(self) -> list[int]:
        """Host pids still in the cgroup."""
        found: set[int] = set()
        for folder in self.folders:
            try:
                found.update(int(pid) for pid in (folder / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def remove(self) -> None:
        """Kill whatever is left in the cgroup and delete it (best effort, bounded)."""
        for _ in range(100):
            left = self.processes()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
