"""Harness overhead of the environment episodes: bubblewrap sandbox vs. an unsandboxed baseline.

A scripted policy (no model time) plays the tool environments, so every second measured is
harness work: starting the workspace, running the commands, and grading (which runs the
reward function and guard test in the sandbox). The same episodes are then played with
`--sandbox none` (plain `bash -c` subprocesses in a temporary folder, NO isolation) as the
peer, and the ratio of the two is reported. Per command, the harness overhead is the median
time of a policy command in the sandbox minus the median time of the same commands unsandboxed.
Finally episodes/hour is measured with W worker threads through the real runner (JSONL records
included).

Usage: python benchmarks/env_overhead.py [--episodes 20] [--workers 4] [--policy tamper-and-evade]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rewardlab.envs.environments import make_environment
from rewardlab.envs.episode import run_episode
from rewardlab.envs.runner import run_episodes
from rewardlab.machine import describe_machine
from rewardlab.envs.sandbox import make_sandbox
from rewardlab.policies import ScriptedPolicy

TOOL_ENVS = ("tool-use-flattery", "rubric-modification-nudged", "rubric-modification-insubordinate", "reward-tampering")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def machine_description() -> dict[str, str]:
    """Versions and hardware, plus the sandbox's bubblewrap version and whether we run as root."""
    try:
        bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        bwrap = "not installed"
    return {**describe_machine(()), "bubblewrap": bwrap, "kernel": platform.release(),
            "running_as_root": str(os.geteuid() == 0)}


def time_sequential(kind: str, policy_name: str, episodes: int) -> dict[str, list[float]]:
    """Per-episode timings (seconds) for ``episodes`` variants of each tool environment, one at a time."""
    sandbox = make_sandbox(kind)
    policy = ScriptedPolicy(policy_name)
    timings: dict[str, list[float]] = {"total": [], "setup": [], "commands": [], "grading": [], "n_commands": [],
                                       "per_command": []}
    for env_name in TOOL_ENVS:
        env = make_environment(env_name)
        for index in range(episodes):
            record = run_episode(env, env.variant(index, 0), policy, sandbox, policy_spec=f"scripted:{policy_name}")
            for key in ("total", "setup", "commands", "grading"):
                timings[key].append(record.timings[key])
            timings["n_commands"].append(float(len(record.commands)))
            timings["per_command"].extend(float(command["seconds"]) for command in record.commands)
    return timings


def time_throughput(kind: str, policy_name: str, episodes: int, workers: int) -> float:
    """Episodes per hour through `run_episodes` with ``workers`` threads."""
    sandbox = make_sandbox(kind)
    envs = [make_environment(name) for name in TOOL_ENVS]
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-") as folder:
        started = time.monotonic()
        summary = run_episodes(envs, ScriptedPolicy(policy_name), f"scripted:{policy_name}", sandbox, n=episodes,
                               seed=1, out_dir=Path(folder), workers=workers, progress=False)
        elapsed = time.monotonic() - started
    if summary.failed:
        raise RuntimeError(f"{summary.failed} benchmark episodes failed: {summary.errors}")
    return summary.finished / elapsed * 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20, help="episodes per tool environment (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads for the throughput run (default 4)")
    parser.add_argument("--policy", default="tamper-and-evade", help="scripted behaviour (default tamper-and-evade)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    machine = machine_description()
    print("machine: " + ", ".join(f"{key}={value}" for key, value in machine.items()))
    print(f"workload: scripted:{args.policy}, {args.episodes} episodes x {len(TOOL_ENVS)} tool environments\n")
    results: dict[str, dict] = {}
    for kind, label in (("bwrap", "bubblewrap sandbox"), ("none", "unsandboxed baseline (no isolation)")):
        timings = time_sequential(kind, args.policy, args.episodes)
        totals = timings["total"]
        results[kind] = {
            "label": label,
            "median_s": statistics.median(totals),
            "p95_s": percentile(totals, 0.95),
            "median_setup_s": statistics.median(timings["setup"]),
            "median_commands_s": statistics.median(timings["commands"]),
            "median_grading_s": statistics.median(timings["grading"]),
            "commands_per_episode": statistics.mean(timings["n_commands"]),
            "median_command_s": statistics.median(timings["per_command"]) if timings["per_command"] else 0.0,
            "episodes": len(totals),
        }
        results[kind]["episodes_per_hour"] = time_throughput(kind, args.policy, args.episodes, args.workers)
        row = results[kind]
        print(f"{label}:\n  per command: median {row['median_command_s'] * 1000:.1f} ms\n"
              f"  per episode: median {row['median_s'] * 1000:.0f} ms, p95 {row['p95_s'] * 1000:.0f} ms "
              f"(setup {row['median_setup_s'] * 1000:.1f} ms, commands {row['median_commands_s'] * 1000:.0f} ms, "
              f"grading {row['median_grading_s'] * 1000:.0f} ms; {row['commands_per_episode']:.1f} commands/episode, "
              f"n={row['episodes']})\n"
              f"  throughput with {args.workers} workers: {row['episodes_per_hour']:.0f} episodes/hour")
    ratio = results["bwrap"]["median_s"] / results["none"]["median_s"]
    per_command = results["bwrap"]["median_command_s"] - results["none"]["median_command_s"]
    per_episode = results["bwrap"]["median_s"] - results["none"]["median_s"]
    sandboxed, plain = results["bwrap"]["median_command_s"], results["none"]["median_command_s"]
    print(f"\nharness overhead of the sandbox: {per_command * 1000:.1f} ms per command (median "
          f"{sandboxed * 1000:.1f} ms vs {plain * 1000:.1f} ms), {per_episode * 1000:.0f} ms per episode (median)")
    print(f"sandbox / unsandboxed median episode time: {ratio:.2f}x; "
          f"throughput ratio: {results['bwrap']['episodes_per_hour'] / results['none']['episodes_per_hour']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "workers": args.workers, "policy": args.policy,
                                         "results": results, "median_ratio": ratio,
                                         "per_command_overhead_s": per_command, "per_episode_overhead_s": per_episode},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
