"""Load test of `rewardlab serve`: throughput and latency with dynamic batching on and off, and overload.

Starts the real server (`python -m rewardlab.cli serve`) as a subprocess on a free 127.0.0.1 port,
sends ``POST /get_reward`` requests from N concurrent clients, and reports requests/s, texts/s,
latency p50/p99 and the mean forward-pass size (read from ``/metrics``) for every concurrency
level, once with ``--max-batch`` (batching on) and once with ``--max-batch 1`` (off), then prints
the throughput ratio.

The overload run then sends ``--overload-clients`` concurrent clients, more than the server's
queue holds, twice: to a server with ``--max-queue --overload-queue`` and to one whose queue holds
every client. It prints the share of 503 answers and the latency percentiles of the answered
requests: with the bounded queue, the surplus gets a quick 503 and the answered requests keep a
short latency; with a queue that holds everyone, nobody is refused and everyone waits longer. A
refused client waits ``--backoff-ms`` before its next request (a client honouring ``Retry-After``
would wait 1 s; a short wait keeps the offered load high).

Every level and run is bounded by a request count and a time limit; nothing leaves the loopback
interface.

    python benchmarks/serve_load.py                          # tiny-random model, CPU, a few minutes
    python benchmarks/serve_load.py --base smollm2-135m --device cuda --concurrency 1,8,32,64
    python benchmarks/serve_load.py --model path/to/saved-reward-model --out serve_load.json
    python benchmarks/serve_load.py --overload-only --overload-clients 64 --overload-queue 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from rewardlab.machine import describe_machine
from rewardlab.serve.metrics import parse_exposition, quantile

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 300.0
TOPICS = ("rivers", "bread", "chess", "tides", "volcanoes", "bees", "glass", "trains", "comets", "moss")


@dataclass
class LevelResult:
    """One (batching mode, concurrency) measurement."""

    mode: str
    max_batch: int
    concurrency: int
    requests: int
    failed: int
    seconds: float
    requests_per_s: float
    texts_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float


@dataclass
class OverloadResult:
    """One overload run: more clients than the queue holds (``max_queue``)."""

    max_queue: int
    clients: int
    answered: int
    ok: int
    rejected_503: int
    failed: int
    seconds: float
    share_503: float
    ok_per_s: float
    ok_p50_ms: float
    ok_p90_ms: float
    ok_p99_ms: float
    ok_max_ms: float
    rejected_p50_ms: float
    server_rejected_total: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="a saved rewardlab reward model folder")
    source.add_argument(
        "--base", default="tiny-random",
        help="build a reward model with a fresh head on this backbone alias/path (default tiny-random)",
    )
    parser.add_argument("--concurrency", default="1,4,16,32", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=300, help="at most this many requests per level")
    parser.add_argument("--duration-s", type=float, default=15.0, help="at most this long per level")
    parser.add_argument("--texts-per-request", type=int, default=1, help="query texts in each request")
    parser.add_argument("--max-batch", type=int, default=32, help="the batching-on setting")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the server's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overload-clients", type=int, default=64, help="concurrent clients in the overload run")
    parser.add_argument("--overload-queue", type=int, default=8, help="the bounded server's --max-queue")
    parser.add_argument(
        "--overload-texts-per-request", type=int, default=8,
        help="query texts per overload request (enough that scoring, not HTTP, is the bottleneck)",
    )
    parser.add_argument("--backoff-ms", type=float, default=50.0, help="a refused (503) client's wait before retrying")
    parser.add_argument("--overload-only", action="store_true", help="skip the batching on/off comparison")
    parser.add_argument("--no-overload", action="store_true", help="skip the overload run")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.overload_only and args.no_overload:
        parser.error("--overload-only and --no-overload leave nothing to run")
    if args.overload_queue < 1 or args.overload_clients <= args.overload_queue or args.backoff_ms < 0:
        parser.error("--overload-clients must exceed --overload-queue (at least 1), and --backoff-ms be 0 or more")
    if args.overload_texts_per_request < 1:
        parser.error("--overload-texts-per-request must be positive")
    args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    if not args.levels or min(args.levels) < 1:
        parser.error("--concurrency needs positive integers, e.g. 1,4,16")
    if args.requests < 1 or args.duration_s <= 0 or args.texts_per_request < 1 or args.max_batch < 2:
        parser.error("--requests, --duration-s, --texts-per-request must be positive and --max-batch at least 2")
    return args


def build_model(base: str, folder: Path) -> Path:
    """Save a reward model with a seeded fresh MLP head on ``base`` (throughput does not need training)."""
    import torch

    from rewardlab.models.persistence import save_reward_model
    from rewardlab.models.reward_model import RewardModel

    torch.manual_seed(0)
    model, tokenizer = RewardModel.from_base(base, "mlp")
    out = folder / "reward-model"
    save_reward_model(model, tokenizer, out, settings={"max_length": 1024, "truncation": "drop"})
    return out


def make_texts(model_dir: Path, count: int, seed: int) -> list[str]:
    """Rendered prompt+response texts of varied length, as an RLHF trainer would send them."""
    from transformers import AutoTokenizer

    from rewardlab.data.render import conversation_text

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        topic = rng.choice(TOPICS)
        prompt = f"Question {index}: tell me about {topic}." + " Please be thorough." * rng.randint(0, 6)
        response = f"Here is what I know about {topic}. " + f"Fact {rng.randint(0, 999)} about {topic}. " * rng.randint(1, 12)
        texts.append(conversation_text(tokenizer, [{"role": "user", "content": prompt}], response))
    return texts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`rewardlab serve` in a subprocess on a free loopback port."""

    def __init__(
        self, model_dir: Path, max_batch: int, max_wait_ms: float, device: str | None, max_queue: int | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [
            sys.executable, "-m", "rewardlab.cli", "serve", str(model_dir), "--host", HOST, "--port", str(self.port),
            "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning",
        ]
        if max_queue is not None:
            command += ["--max-queue", str(max_queue)]
        if device:
            command += ["--device", device]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not answer /health within {STARTUP_TIMEOUT_S:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def batch_counters(url: str) -> tuple[float, float]:
    samples = parse_exposition(httpx.get(f"{url}/metrics", timeout=10).text)
    return samples.get("rewardlab_batch_size_sum", 0.0), samples.get("rewardlab_batch_size_count", 0.0)


async def drive(url: str, texts: list[str], concurrency: int, per_request: int, max_requests: int, duration_s: float):
    """Run ``concurrency`` clients until ``max_requests`` were sent or ``duration_s`` passed; a 503 is a failure."""
    ok, rejected, failures, elapsed = await drive_overload(
        url, texts, concurrency, per_request, max_requests, duration_s, backoff_s=0.0)
    return ok, failures + len(rejected), elapsed


def measure(args: argparse.Namespace, model_dir: Path, texts: list[str], mode: str, max_batch: int) -> list[LevelResult]:
    server = ServerProcess(model_dir, max_batch, args.max_wait_ms, args.device)
    results = []
    try:
        server.wait_ready()
        asyncio.run(drive(server.url, texts, 4, args.texts_per_request, 16, 10.0))  # warm-up
        for concurrency in args.levels:
            sum_before, count_before = batch_counters(server.url)
            latencies, failures, elapsed = asyncio.run(
                drive(server.url, texts, concurrency, args.texts_per_request, args.requests, args.duration_s)
            )
            sum_after, count_after = batch_counters(server.url)
            ordered = sorted(latencies)
            done = len(latencies)
            results.append(
                LevelResult(
                    mode=mode,
                    max_batch=max_batch,
                    concurrency=concurrency,
                    requests=done,
                    failed=failures,
                    seconds=round(elapsed, 3),
                    requests_per_s=done / elapsed if elapsed else 0.0,
                    texts_per_s=done * args.texts_per_request / elapsed if elapsed else 0.0,
                    p50_ms=quantile(ordered, 0.5) * 1000,
                    p99_ms=quantile(ordered, 0.99) * 1000,
                    mean_batch=(sum_after - sum_before) / max(1.0, count_after - count_before),
                )
            )
            print(format_row(results[-1]), flush=True)
    finally:
        server.stop()
    return results


async def drive_overload(
    url: str, texts: list[str], clients: int, per_request: int, max_requests: int, duration_s: float, backoff_s: float
) -> tuple[list[float], list[float], int, float]:
    """Run ``clients`` clients until ``max_requests`` were sent or ``duration_s`` passed; 503s are counted
    (with their latency) and the refused client waits ``backoff_s`` before its next request."""
    ok_latencies: list[float] = []
    rejected_latencies: list[float] = []
    failures = 0
    sent = 0
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal sent, failures
            while sent < max_requests and time.perf_counter() < deadline:
                start_index = (sent * per_request) % len(texts)
                sent += 1
                query = [texts[(start_index + k) % len(texts)] for k in range(per_request)]
                began = time.perf_counter()
                try:
                    response = await client.post("/get_reward", json={"query": query})
                except httpx.HTTPError:
                    failures += 1
                    continue
                elapsed = time.perf_counter() - began
                if response.status_code == 200 and len(response.json()["rewards"]) == per_request:
                    ok_latencies.append(elapsed)
                elif response.status_code == 503 and "retry-after" in response.headers:
                    rejected_latencies.append(elapsed)
                    await asyncio.sleep(backoff_s)
                else:
                    failures += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return ok_latencies, rejected_latencies, failures, elapsed


def measure_overload(args: argparse.Namespace, model_dir: Path, texts: list[str]) -> list[OverloadResult]:
    """The same overload against a bounded queue and against one that holds every client."""
    results = []
    for max_queue in (args.overload_queue, 2 * args.overload_clients):
        server = ServerProcess(model_dir, args.max_batch, args.max_wait_ms, args.device, max_queue=max_queue)
        try:
            server.wait_ready()
            asyncio.run(drive(server.url, texts, 4, args.texts_per_request, 16, 10.0))  # warm-up
            ok, rejected, failures, elapsed = asyncio.run(
                drive_overload(
                    server.url, texts, args.overload_clients, args.overload_texts_per_request,
                    args.requests, args.duration_s, args.backoff_ms / 1000.0,
                )
            )
            samples = parse_exposition(httpx.get(f"{server.url}/metrics", timeout=10).text)
        finally:
            server.stop()
        ok.sort()
        rejected.sort()
        answered = len(ok) + len(rejected)
        results.append(
            OverloadResult(
                max_queue=max_queue,
                clients=args.overload_clients,
                answered=answered,
                ok=len(ok),
                rejected_503=len(rejected),
                failed=failures,
                seconds=round(elapsed, 3),
                share_503=len(rejected) / answered if answered else 0.0,
                ok_per_s=len(ok) / elapsed if elapsed else 0.0,
                ok_p50_ms=quantile(ok, 0.5) * 1000,
                ok_p90_ms=quantile(ok, 0.9) * 1000,
                ok_p99_ms=quantile(ok, 0.99) * 1000,
                ok_max_ms=(ok[-1] if ok else float("nan")) * 1000,
                rejected_p50_ms=quantile(rejected, 0.5) * 1000,
                server_rejected_total=samples.get("rewardlab_queue_rejected_total", float("nan")),
            )
        )
        print(format_overload_row(results[-1]), flush=True)
    return results


OVERLOAD_HEADER = (
    f"{'max-queue':>9} {'clients':>7} {'answered':>8} {'ok':>6} {'503':>6} {'fail':>4} {'503 share':>9} "
    f"{'ok/s':>8} {'ok p50':>8} {'ok p90':>8} {'ok p99':>8} {'ok max':>8} {'503 p50':>8}"
)


def format_overload_row(r: OverloadResult) -> str:
    return (
        f"{r.max_queue:>9} {r.clients:>7} {r.answered:>8} {r.ok:>6} {r.rejected_503:>6} {r.failed:>4} "
        f"{r.share_503:>9.1%} {r.ok_per_s:>8.1f} {r.ok_p50_ms:>8.1f} {r.ok_p90_ms:>8.1f} {r.ok_p99_ms:>8.1f} "
        f"{r.ok_max_ms:>8.1f} {r.rejected_p50_ms:>8.1f}"
    )


def format_row(r: LevelResult) -> str:
    return (
        f"{r.mode:<13} {r.concurrency:>5} {r.requests:>6} {r.failed:>4} {r.requests_per_s:>9.1f} "
        f"{r.texts_per_s:>9.1f} {r.p50_ms:>9.1f} {r.p99_ms:>9.1f} {r.mean_batch:>7.2f}"
    )


def environment(device: str | None) -> dict[str, Any]:
    """Versions and hardware, so numbers can be compared only with their like."""
    import torch

    info: dict[str, Any] = describe_machine(("torch", "transformers", "fastapi", "uvicorn", "httpx"))
    info["device_requested"] = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment(args.device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="rewardlab-serve-load-") as scratch:
        model_dir = Path(args.model) if args.model else build_model(args.base, Path(scratch))
        texts = make_texts(model_dir, 256, args.seed)
        print(
            f"model: {args.model or args.base}; {args.texts_per_request} text(s) per request; "
            f"each level stops after {args.requests} requests or {args.duration_s:.0f} s",
            flush=True,
        )
        results: list[LevelResult] = []
        ratios: dict[int, float] = {}
        if not args.overload_only:
            print(f"{'mode':<13} {'conc':>5} {'reqs':>6} {'fail':>4} {'req/s':>9} {'texts/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'batch':>7}")
            results = measure(args, model_dir, texts, f"batch={args.max_batch}", args.max_batch)
            results += measure(args, model_dir, texts, "batch=1", 1)

            print("\nthroughput ratio, batching on / off (requests/s):")
            on = {r.concurrency: r for r in results if r.max_batch == args.max_batch}
            off = {r.concurrency: r for r in results if r.max_batch == 1}
            for concurrency in args.levels:
                if off[concurrency].requests_per_s > 0:
                    ratios[concurrency] = on[concurrency].requests_per_s / off[concurrency].requests_per_s
                    print(f"  concurrency {concurrency:>4}: {ratios[concurrency]:.2f}x")
        overload: list[OverloadResult] = []
        if not args.no_overload:
            print(
                f"\noverload: {args.overload_clients} clients sending {args.overload_texts_per_request} texts per "
                f"request, --max-queue {args.overload_queue} vs a queue that holds them all "
                f"({2 * args.overload_clients}); latencies in ms; a refused client waits {args.backoff_ms:g} ms",
                flush=True,
            )
            print(OVERLOAD_HEADER)
            overload = measure_overload(args, model_dir, texts)
            bounded, unbounded = overload
            print(
                f"  bounded queue: {bounded.share_503:.1%} of answers were 503; answered p99 "
                f"{bounded.ok_p99_ms:.0f} ms vs {unbounded.ok_p99_ms:.0f} ms when the queue holds every client"
            )
    if args.out:
        report = {
            "environment": env,
            "settings": {k: v for k, v in vars(args).items()},
            "results": [asdict(r) for r in results],
            "ratio": ratios,
            "overload": [asdict(r) for r in overload],
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
        os.replace(tmp, out)
        print(f"results written to {out}")
    return 0 if all(r.failed == 0 for r in [*results, *overload]) else 1


if __name__ == "__main__":
    sys.exit(main())
