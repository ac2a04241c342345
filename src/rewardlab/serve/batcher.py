"""Dynamic batching: texts from concurrent requests share forward passes.

Each request puts its token sequences on one queue, each with its own future. A collector task
takes the first waiting sequence, keeps collecting until it holds ``max_batch`` sequences or
``max_batch_tokens`` tokens or ``max_wait`` has passed, sorts what it holds by length and hands it
to a single scoring thread (the model is never run on the event loop and never from two threads at
once). Each future gets the reward of exactly the sequence it was created with, so concurrent
requests cannot swap results.

A batch's token cost is what the forward pass holds: the sum of its lengths when the scorer packs
sequences into one padding-free row, or ``batch size x longest length`` when it pads (``padded``).
The budget caps that cost, so one pass never holds more tokens however short or long the texts are.

The collector only waits while another request is on its way (announced with `expect` while its
body is read and tokenized): a lone caller is scored at once instead of paying ``max_wait`` for
company that cannot come. Under steady load, texts that arrive while the model is busy form the
next batch anyway.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rewardlab.serve.metrics import ServerMetrics

ScoreFn = Callable[[list[list[int]]], list[float]]

# When more than one batch is waiting, look this many batches ahead so similar lengths share a pass.
LOOKAHEAD_BATCHES = 4


@dataclass
class _Pending:
    token_ids: list[int]
    future: asyncio.Future[float]


class BatcherClosedError(RuntimeError):
    """The batcher was stopped (the server is shutting down)."""


def batch_cost(lengths: Sequence[int], *, padded: bool) -> int:
    """Tokens a forward pass over sequences of these lengths holds (see the module docstring)."""
    if not lengths:
        return 0
    return len(lengths) * max(lengths) if padded else sum(lengths)


def plan_batches(lengths: Sequence[int], *, max_batch: int, max_tokens: int, padded: bool) -> list[range]:
    """Cut length-sorted (longest first) sequences into consecutive batches within both limits.

    A sequence longer than ``max_tokens`` on its own still gets a batch of its own (the server
    refuses such budgets at startup; here it must not loop forever).
    """
    batches: list[range] = []
    start = 0
    while start < len(lengths):
        end = start + 1
        longest = total = lengths[start]
        while end < len(lengths) and end - start < max_batch:
            longest, total = max(longest, lengths[end]), total + lengths[end]
            if ((end - start + 1) * longest if padded else total) > max_tokens:
                break
            end += 1
        batches.append(range(start, end))
        start = end
    return batches


class DynamicBatcher:
    """Groups token sequences from concurrent callers into length-sorted batches.

    ``score_fn`` receives one batch (at most ``max_batch`` sequences costing at most
    ``max_batch_tokens`` tokens; None: no token limit) and returns their rewards in the same order;
    it runs on a dedicated worker thread.
    """

    def __init__(
        self,
        score_fn: ScoreFn,
        *,
        max_batch: int,
        max_wait_s: float,
        max_batch_tokens: int | None = None,
        padded: bool = False,
        metrics: ServerMetrics | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")
        self._score_fn = score_fn
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.padded = padded
        self.max_wait_s = max(0.0, max_wait_s)
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] | None = None
        self._changed: asyncio.Event | None = None
        self._arriving = 0
        self._collector: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start collecting; call from the event loop that will submit work."""
        self._queue = asyncio.Queue()
        self._changed = asyncio.Event()
        self._arriving = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardlab-scorer")
        self._closed = False
        self._collector = asyncio.get_running_loop().create_task(self._collect_forever())

    async def stop(self) -> None:
        """Stop collecting; callers still waiting get `BatcherClosedError`."""
        self._closed = True
        if self._collector is not None:
            self._collector.cancel()
            try:
                await self._collector
            except asyncio.CancelledError:
                pass
        if self._queue is not None:
            while not self._queue.empty():
                pending = self._queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(BatcherClosedError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        """Sequences waiting for a batch."""
        return 0 if self._queue is None else self._queue.qsize()

    # --- submitting -------------------------------------------------------------------------------

    def expect(self) -> None:
        """Announce a request that will submit texts soon (call `arrived` when it submits or fails)."""
        self._arriving += 1

    def arrived(self) -> None:
        """The announced request submitted its texts or gave up; a waiting batch need not wait for it."""
        self._arriving = max(0, self._arriving - 1)
        if self._changed is not None:
            self._changed.set()

    async def score(self, sequences: Sequence[list[int]]) -> list[float]:
        """Rewards of ``sequences`` in order, computed together with whatever else is waiting."""
        if self._queue is None or self._closed:
            raise BatcherClosedError("the batcher is not running")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[float]] = []
        for token_ids in sequences:
            future: asyncio.Future[float] = loop.create_future()
            self._queue.put_nowait(_Pending(list(token_ids), future))
            futures.append(future)
        assert self._changed is not None
        self._changed.set()
        try:
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            # A caller that gave up (cancelled) must not leave futures for the scorer to fill.
            for future in futures:
                future.cancel()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [float(outcome) for outcome in outcomes]

    # --- collecting -------------------------------------------------------------------------------

    async def _collect_forever(self) -> None:
        assert self._queue is not None and self._changed is not None
        loop = asyncio.get_running_loop()
        budget = math.inf if self.max_batch_tokens is None else self.max_batch_tokens
        while True:
            first = await self._queue.get()
            held = [first]
            tokens = len(first.token_ids)
            deadline = loop.time() + self.max_wait_s
            while len(held) < self.max_batch and tokens < budget:
                if not self._queue.empty():
                    pending = self._queue.get_nowait()
                    held.append(pending)
                    tokens += len(pending.token_ids)
                    continue
                remaining = deadline - loop.time()
                if self._arriving == 0 or remaining <= 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    break
            # A backlog beyond one batch: take a few batches' worth so lengths can be grouped.
            limit = self.max_batch * LOOKAHEAD_BATCHES
            while len(held) < limit and tokens < budget * LOOKAHEAD_BATCHES and not self._queue.empty():
                pending = self._queue.get_nowait()
                held.append(pending)
                tokens += len(pending.token_ids)
            live = [pending for pending in held if not pending.future.done()]
            if live:
                await self._run_batches(live)

    async def _run_batches(self, held: list[_Pending]) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        held.sort(key=lambda pending: len(pending.token_ids), reverse=True)
        plan = plan_batches(
            [len(pending.token_ids) for pending in held],
            max_batch=self.max_batch,
            max_tokens=self.max_batch_tokens or sys.maxsize,
            padded=self.padded,
        )
        for indices in plan:
            batch = held[indices.start : indices.stop]
            try:
                rewards = await loop.run_in_executor(self._executor, self._score_batch, batch)
            except Exception as error:  # the model failed: fail this batch's callers, keep serving
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            for pending, reward in zip(batch, rewards):
                if not pending.future.done():
                    pending.future.set_result(reward)

    def _score_batch(self, batch: list[_Pending]) -> list[float]:
        started = time.perf_counter()
        rewards = self._score_fn([pending.token_ids for pending in batch])
        if len(rewards) != len(batch):
            raise RuntimeError(f"the scorer returned {len(rewards)} rewards for {len(batch)} sequences")
        if self._metrics is not None:
            cost = batch_cost([len(pending.token_ids) for pending in batch], padded=self.padded)
            self._metrics.observe_batch(len(batch), time.perf_counter() - started, tokens=cost)
        return rewards
