"""DynamicBatcher: grouping, per-caller results, failures and shutdown (no model needed)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rewardlab.serve.batcher import BatcherClosedError, DynamicBatcher, batch_cost, plan_batches
from rewardlab.serve.metrics import ServerMetrics, parse_exposition


class RecordingScorer:
    """A deterministic score function (reward = sum of ids / 1000 + length) that records its batches."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.threads: set[str] = set()

    def __call__(self, sequences: list[list[int]]) -> list[float]:
        self.batches.append([list(s) for s in sequences])
        self.threads.add(threading.current_thread().name)
        return [sum(s) / 1000 + len(s) for s in sequences]


def expected(seq: list[int]) -> float:
    return sum(seq) / 1000 + len(seq)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_callers_get_their_own_results_in_shared_batches() -> None:
    scorer = RecordingScorer()
    metrics = ServerMetrics()

    async def main() -> tuple[list[list[list[int]]], list[list[float]]]:
        batcher = DynamicBatcher(scorer, max_batch=8, max_wait_s=0.05, metrics=metrics)
        await batcher.start()
        try:
            requests = [[[caller * 10 + i] * (1 + (caller + i) % 5) for i in range(3)] for caller in range(12)]
            results = await asyncio.gather(*(batcher.score(r) for r in requests))
            return requests, results
        finally:
            await batcher.stop()

    requests, results = run(main())
    for sequences, rewards in zip(requests, results):
        assert rewards == [expected(s) for s in sequences]
    sizes = [len(b) for b in scorer.batches]
    assert sum(sizes) == 36
    assert max(sizes) == 8, "36 waiting texts with max_batch=8 must fill whole batches"
    assert all(size <= 8 for size in sizes)
    assert len(scorer.threads) == 1 and threading.current_thread().name not in scorer.threads
    assert sum(metrics.batch_sizes_seen().values()) == len(scorer.batches)


def test_batches_are_sorted_longest_first() -> None:
    scorer = RecordingScorer()

    async def main() -> None:
        batcher = DynamicBatcher(scorer, max_batch=4, max_wait_s=0.05)
        await batcher.start()
        try:
            lengths = [3, 9, 1, 7, 5, 2, 8, 4]
            await asyncio.gather(*(batcher.score([[1] * n]) for n in lengths))
        finally:
            await batcher.stop()

    run(main())
    flat = [len(seq) for batch in scorer.batches for seq in batch]
    assert flat == sorted(flat, reverse=True)
    assert [len(b) for b in scorer.batches] == [4, 4]


def test_max_batch_one_never_groups() -> None:
    scorer = RecordingScorer()

    async def main() -> None:
        batcher = DynamicBatcher(scorer, max_batch=1, max_wait_s=0.05)
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.score([[i, i]]) for i in range(6)))
        finally:
            await batcher.stop()

    run(main())
    assert [len(b) for b in scorer.batches] == [1] * 6


def test_a_lone_request_waits_at_most_max_wait() -> None:
    scorer = RecordingScorer()

    async def main() -> float:
        batcher = DynamicBatcher(scorer, max_batch=64, max_wait_s=0.02)
        await batcher.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await batcher.score([[1, 2, 3]])
            return loop.time() - started
        finally:
            await batcher.stop()

    elapsed = run(main())
    assert elapsed < 1.0
    assert [len(b) for b in scorer.batches] == [1]


def test_a_failing_batch_fails_its_callers_and_the_batcher_keeps_working() -> None:
    def fragile(sequences: list[list[int]]) -> list[float]:
        if any(0 in s for s in sequences):
            raise RuntimeError("boom")
        return [float(len(s)) for s in sequences]

    async def main() -> None:
        batcher = DynamicBatcher(fragile, max_batch=1, max_wait_s=0.0)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="boom"):
                await batcher.score([[0]])
            assert await batcher.score([[5, 5]]) == [2.0]
        finally:
            await batcher.stop()

    run(main())


def test_wrong_number_of_rewards_is_an_error_not_a_mixup() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(lambda seqs: [1.0], max_batch=4, max_wait_s=0.01)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="returned 1 rewards for 2"):
                await batcher.score([[1], [2]])
        finally:
            await batcher.stop()

    run(main())


def test_score_after_stop_is_refused() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(RecordingScorer(), max_batch=4, max_wait_s=0.0)
        await batcher.start()
        await batcher.stop()
        with pytest.raises(BatcherClosedError):
            await batcher.score([[1]])

    run(main())


def test_invalid_max_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(RecordingScorer(), max_batch=0, max_wait_s=0.0)


def test_waits_for_an_announced_request_but_not_for_nobody() -> None:
    scorer = RecordingScorer()

    async def main() -> tuple[float, float]:
        batcher = DynamicBatcher(scorer, max_batch=8, max_wait_s=2.0)
        await batcher.start()
        loop = asyncio.get_running_loop()
        try:
            began = loop.time()
            await batcher.score([[1]])  # nobody else announced: no waiting for company
            alone = loop.time() - began

            async def late_caller() -> list[float]:
                await asyncio.sleep(0.1)
                batcher.arrived()
                return await batcher.score([[2, 2]])

            batcher.expect()
            began = loop.time()
            first, second = await asyncio.gather(batcher.score([[3, 3, 3]]), late_caller())
            together = loop.time() - began
            assert first == [expected([3, 3, 3])] and second == [expected([2, 2])]
            return alone, together
        finally:
            await batcher.stop()

    alone, together = run(main())
    assert alone < 1.0
    assert together < 1.5, "the batch must go as soon as the announced caller submitted"
    assert [len(b) for b in scorer.batches] == [1, 2]


def test_plan_batches_respects_count_and_token_limits() -> None:
    def plan(lengths: list[int], **limits) -> list[list[int]]:
        return [list(r) for r in plan_batches(lengths, **limits)]

    # packed cost is the sum of lengths; padded cost is size x longest
    assert plan([40, 30, 30, 10], max_batch=8, max_tokens=100, padded=False) == [[0, 1, 2], [3]]
    assert plan([40, 30, 30, 10], max_batch=8, max_tokens=100, padded=True) == [[0, 1], [2, 3]]
    assert plan([1] * 10, max_batch=4, max_tokens=1000, padded=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # a sequence over the budget still gets a batch of its own instead of stalling the queue
    assert plan([500, 10], max_batch=8, max_tokens=100, padded=False) == [[0], [1]]
    assert plan([], max_batch=8, max_tokens=100, padded=False) == []
    assert batch_cost([5, 3], padded=True) == 10 and batch_cost([5, 3], padded=False) == 8


@pytest.mark.parametrize("padded", [False, True])
def test_the_token_budget_caps_every_batch_and_results_stay_with_their_callers(padded: bool) -> None:
    scorer = RecordingScorer()
    metrics = ServerMetrics()
    budget = 24

    async def main() -> tuple[list[list[list[int]]], list[list[float]]]:
        batcher = DynamicBatcher(
            scorer, max_batch=16, max_wait_s=0.05, max_batch_tokens=budget, padded=padded, metrics=metrics
        )
        await batcher.start()
        try:
            requests = [[[caller * 10 + i] * (1 + (caller * 3 + i) % 8) for i in range(3)] for caller in range(10)]
            results = await asyncio.gather(*(batcher.score(r) for r in requests))
            return requests, results
        finally:
            await batcher.stop()

    requests, results = run(main())
    for sequences, rewards in zip(requests, results):
        assert rewards == [expected(s) for s in sequences]
    costs = [batch_cost([len(s) for s in batch], padded=padded) for batch in scorer.batches]
    assert max(costs) <= budget, costs
    total = sum(len(s) for r in requests for s in r)
    assert len(scorer.batches) >= -(-total // budget), "max_batch=16 alone would need only 2 passes"
    assert sum(len(b) for b in scorer.batches) == 30
    samples = parse_exposition(metrics.render())
    assert samples["rewardlab_batch_tokens_max"] == max(costs)
    assert samples["rewardlab_batch_tokens_sum"] == sum(costs)
