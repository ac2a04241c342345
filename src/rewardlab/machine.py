"""Versions and hardware, printed beside every measured number so it is compared only with its like.

One description used by evaluation reports, `repro grm` and the benchmark scripts.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def package_versions(packages: tuple[str, ...] = ("torch", "transformers")) -> dict[str, str]:
    """rewardlab, Python and each named distribution's version ("not installed" where absent)."""
    from rewardlab.version import __version__

    versions = {"rewardlab": __version__, "python": sys.version.split()[0]}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    if "torch" in versions:
        import torch  # the wheel's local tag (+cpu, +cu128) is in __version__, not always in metadata

        versions["torch"] = torch.__version__
    return versions


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo on Linux, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_total() -> str | None:
    """Physical memory from /proc/meminfo (Linux), e.g. "23.5 GiB"; None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def hardware() -> dict[str, str]:
    """Platform, CPU, cores, memory, torch's thread count and the GPU if one is visible."""
    import torch

    info = {"platform": platform.platform(), "cpu": cpu_model(), "cpu cores": str(os.cpu_count()),
            "torch threads": str(torch.get_num_threads())}
    memory = memory_total()
    if memory:
        info["memory"] = memory
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def describe_machine(packages: tuple[str, ...] = ("torch", "transformers")) -> dict[str, str]:
    """Versions of rewardlab, Python and ``packages``, then the hardware, in one flat mapping."""
    return {**package_versions(packages), **hardware()}


def provenance(machine: dict[str, str]) -> str:
    """``rewardlab …, torch …, transformers … | CPU, N cores, T torch threads[, GPU]``, for plot footers."""
    versions = ", ".join(f"{k} {machine[k]}" for k in ("rewardlab", "torch", "transformers") if k in machine)
    hardware = (f"{machine.get('cpu', '?')}, {machine.get('cpu cores', '?')} cores, "
                f"{machine.get('torch threads', '?')} torch threads" + (f", {machine['gpu']}" if "gpu" in machine else ""))
    return f"{versions} | {hardware}"
