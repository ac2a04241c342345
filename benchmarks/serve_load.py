"""Load test of `rewardlab serve`: throughput and latency with dynamic batching on and off.

Starts the real server (`python -m rewardlab.cli serve`) as a subprocess on a free 127.0.0.1 port,
sends ``POST /get_reward`` requests from N concurrent clients, and reports requests/s, texts/s,
latency p50/p99 and the mean forward-pass size (read from ``/metrics``) for every concurrency
level, once with ``--max-batch`` (batching on) and once with ``--max-batch 1`` (off), then prints
the throughput ratio. Every level is bounded by a request count and a time limit; nothing leaves
the loopback interface.

    python benchmarks/serve_load.py                          # tiny-random model, CPU, about a minute
    python benchmarks/serve_load.py --base smollm2-135m --device cuda --concurrency 1,8,32,64
    python benchmarks/serve_load.py --model path/to/saved-reward-model --out serve_load.json
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
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
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

    def __init__(self, model_dir: Path, max_batch: int, max_wait_ms: float, device: str | None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [
            sys.executable, "-m", "rewardlab.cli", "serve", str(model_dir), "--host", HOST, "--port", str(self.port),
            "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning",
        ]
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
    """Run ``concurrency`` clients until ``max_requests`` were sent or ``duration_s`` passed."""
    latencies: list[float] = []
    failures = 0
    sent = 0
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

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
                    ok = response.status_code == 200 and len(response.json()["rewards"]) == per_request
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    failures += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return latencies, failures, elapsed


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
        print(f"{'mode':<13} {'conc':>5} {'reqs':>6} {'fail':>4} {'req/s':>9} {'texts/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'batch':>7}")
        results = measure(args, model_dir, texts, f"batch={args.max_batch}", args.max_batch)
        results += measure(args, model_dir, texts, "batch=1", 1)

    print("\nthroughput ratio, batching on / off (requests/s):")
    on = {r.concurrency: r for r in results if r.max_batch == args.max_batch}
    off = {r.concurrency: r for r in results if r.max_batch == 1}
    ratios = {}
    for concurrency in args.levels:
        if off[concurrency].requests_per_s > 0:
            ratios[concurrency] = on[concurrency].requests_per_s / off[concurrency].requests_per_s
            print(f"  concurrency {concurrency:>4}: {ratios[concurrency]:.2f}x")
    if args.out:
        report = {"environment": env, "settings": {k: v for k, v in vars(args).items()}, "results": [asdict(r) for r in results], "ratio": ratios}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
        os.replace(tmp, out)
        print(f"results written to {out}")
    return 0 if all(r.failed == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
