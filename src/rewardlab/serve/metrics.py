"""Server counters in the Prometheus text exposition format (version 0.0.4), without a client library.

Request counts are labelled by endpoint and status, batch sizes form a histogram, and request
latency is a summary whose quantiles come from a sliding window of recent requests. Updates come
from the event loop and from the scoring thread, so every access holds one lock.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)
LATENCY_QUANTILES = (0.5, 0.9, 0.99)
LATENCY_WINDOW = 2048


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of already-sorted values (NaN when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class ServerMetrics:
    """Thread-safe counters of one server process."""

    def __init__(self, *, latency_window: int = LATENCY_WINDOW) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._latencies: dict[str, deque[float]] = {}
        self._latency_sum: Counter[str] = Counter()
        self._latency_count: Counter[str] = Counter()
        self._latency_window = latency_window
        self._batch_buckets = [0] * len(BATCH_SIZE_BUCKETS)
        self._batch_sum = 0
        self._batch_count = 0
        self._token_buckets = [0] * len(BATCH_TOKEN_BUCKETS)
        self._token_sum = 0
        self._token_max = 0
        self._rejected_full = 0
        self._texts_scored = 0
        self._texts_truncated = 0
        self._scoring_seconds = 0.0

    # --- recording --------------------------------------------------------------------------------

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request and its latency."""
        with self._lock:
            self._requests[(endpoint, status)] += 1
            window = self._latencies.setdefault(endpoint, deque(maxlen=self._latency_window))
            window.append(seconds)
            self._latency_sum[endpoint] += seconds
            self._latency_count[endpoint] += 1

    def observe_batch(self, size: int, seconds: float, *, tokens: int = 0) -> None:
        """Count one forward pass of ``size`` sequences costing ``tokens`` tokens that took ``seconds``."""
        with self._lock:
            for index, bound in enumerate(BATCH_SIZE_BUCKETS):
                if size <= bound:
                    self._batch_buckets[index] += 1
            for index, bound in enumerate(BATCH_TOKEN_BUCKETS):
                if tokens <= bound:
                    self._token_buckets[index] += 1
            self._token_sum += tokens
            self._token_max = max(self._token_max, tokens)
            self._batch_sum += size
            self._batch_count += 1
            self._texts_scored += size
            self._scoring_seconds += seconds

    def observe_truncated(self, count: int) -> None:
        """Count texts shortened to the token limit."""
        with self._lock:
            self._texts_truncated += count

    def observe_rejected_full(self) -> None:
        """Count one request turned away with 503 because the queue was full."""
        with self._lock:
            self._rejected_full += 1

    @property
    def rejected_full(self) -> int:
        """Requests turned away with 503 because the queue was full."""
        with self._lock:
            return self._rejected_full

    # --- reading ----------------------------------------------------------------------------------

    def request_count(self, endpoint: str | None = None, status: int | None = None) -> int:
        """Requests seen, optionally only those of one endpoint and/or status."""
        with self._lock:
            return sum(
                n
                for (ep, st), n in self._requests.items()
                if (endpoint is None or ep == endpoint) and (status is None or st == status)
            )

    def batch_sizes_seen(self) -> dict[int, int]:
        """Histogram of forward-pass sizes as {upper bucket bound: batches in that bucket alone}."""
        with self._lock:
            counts: dict[int, int] = {}
            previous = 0
            for bound, cumulative in zip(BATCH_SIZE_BUCKETS, self._batch_buckets):
                counts[bound] = cumulative - previous
                previous = cumulative
            return counts

    def render(
        self,
        *,
        queue_depth: int = 0,
        queue_requests: int = 0,
        max_queue: int | None = None,
        max_batch: int | None = None,
        max_batch_tokens: int | None = None,
        scorer_truncations: Mapping[str, int] | None = None,
    ) -> str:
        """The whole exposition text; the keyword arguments are the server's current state and limits.

        ``scorer_truncations`` are the scorer's own counts of texts cut or dropped to its saved
        ``max_length`` (``RewardScorer.truncation_counts``, by kind), rendered when given.
        """
        with self._lock:
            lines: list[str] = []
            lines += self._render_requests()
            lines += self._render_latency()
            lines += self._render_batches()
            lines += self._render_batch_tokens()
            lines += _gauge_lines(
                "rewardlab_texts_scored_total", "counter", "Texts scored by the model.", self._texts_scored
            )
            lines += _gauge_lines(
                "rewardlab_texts_truncated_total",
                "counter",
                "Texts shortened to the token limit before scoring.",
                self._texts_truncated,
            )
            lines += _gauge_lines(
                "rewardlab_scoring_seconds_total",
                "counter",
                "Time spent in model forward passes.",
                self._scoring_seconds,
            )
            lines += _gauge_lines(
                "rewardlab_queue_depth", "gauge", "Texts waiting for a batch right now.", queue_depth
            )
            lines += _gauge_lines(
                "rewardlab_queue_requests",
                "gauge",
                "Scoring requests in the server right now (being read, tokenized, waiting or scored).",
                queue_requests,
            )
            if max_queue is not None:
                lines += _gauge_lines(
                    "rewardlab_queue_limit",
                    "gauge",
                    "Scoring requests the server holds at once (--max-queue); more get 503.",
                    max_queue,
                )
            lines += _gauge_lines(
                "rewardlab_queue_rejected_total",
                "counter",
                "Requests answered 503 because the queue was full.",
                self._rejected_full,
            )
            if max_batch is not None:
                lines += _gauge_lines(
                    "rewardlab_max_batch", "gauge", "Most texts per forward pass (--max-batch).", max_batch
                )
            if max_batch_tokens is not None:
                lines += _gauge_lines(
                    "rewardlab_max_batch_tokens",
                    "gauge",
                    "Most tokens per forward pass (--max-batch-tokens, or max batch x max tokens).",
                    max_batch_tokens,
                )
            if scorer_truncations is not None:
                lines += [
                    "# HELP rewardlab_scorer_truncations_total Texts the scorer cut or dropped to the model's "
                    "saved max_length, by kind.",
                    "# TYPE rewardlab_scorer_truncations_total counter",
                ]
                for kind in sorted(set(scorer_truncations) | {"cut", "dropped"}):
                    count = scorer_truncations.get(kind, 0)
                    lines.append(f"rewardlab_scorer_truncations_total{_labels(kind=kind)} {_number(count)}")
        return "\n".join(lines) + "\n"

    def _render_requests(self) -> list[str]:
        lines = [
            "# HELP rewardlab_requests_total HTTP requests answered, by endpoint and status code.",
            "# TYPE rewardlab_requests_total counter",
        ]
        for (endpoint, status), count in sorted(self._requests.items()):
            lines.append(f"rewardlab_requests_total{_labels(endpoint=endpoint, status=str(status))} {count}")
        return lines

    def _render_latency(self) -> list[str]:
        lines = [
            "# HELP rewardlab_request_latency_seconds Request latency; quantiles over the last "
            f"{self._latency_window} requests of each endpoint.",
            "# TYPE rewardlab_request_latency_seconds summary",
        ]
        for endpoint in sorted(self._latencies):
            recent = sorted(self._latencies[endpoint])
            for q in LATENCY_QUANTILES:
                labels = _labels(endpoint=endpoint, quantile=str(q))
                lines.append(f"rewardlab_request_latency_seconds{labels} {_number(quantile(recent, q))}")
            labels = _labels(endpoint=endpoint)
            lines.append(f"rewardlab_request_latency_seconds_sum{labels} {_number(self._latency_sum[endpoint])}")
            lines.append(f"rewardlab_request_latency_seconds_count{labels} {self._latency_count[endpoint]}")
        return lines

    def _render_batch_tokens(self) -> list[str]:
        lines = [
            "# HELP rewardlab_batch_tokens Tokens per model forward pass (the cost --max-batch-tokens caps).",
            "# TYPE rewardlab_batch_tokens histogram",
        ]
        for bound, cumulative in zip(BATCH_TOKEN_BUCKETS, self._token_buckets):
            lines.append(f'rewardlab_batch_tokens_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'rewardlab_batch_tokens_bucket{{le="+Inf"}} {self._batch_count}')
        lines.append(f"rewardlab_batch_tokens_sum {self._token_sum}")
        lines.append(f"rewardlab_batch_tokens_count {self._batch_count}")
        lines += _gauge_lines(
            "rewardlab_batch_tokens_max", "gauge", "Most tokens any forward pass held so far.", self._token_max
        )
        return lines

    def _render_batches(self) -> list[str]:
        lines = [
            "# HELP rewardlab_batch_size Sequences per model forward pass.",
            "# TYPE rewardlab_batch_size histogram",
        ]
        for bound, cumulative in zip(BATCH_SIZE_BUCKETS, self._batch_buckets):
            lines.append(f'rewardlab_batch_size_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'rewardlab_batch_size_bucket{{le="+Inf"}} {self._batch_count}')
        lines.append(f"rewardlab_batch_size_sum {self._batch_sum}")
        lines.append(f"rewardlab_batch_size_count {self._batch_count}")
        return lines


def _gauge_lines(name: str, kind: str, help_text: str, value: float) -> Iterable[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]


def parse_exposition(text: str) -> dict[str, float]:
    """Read exposition text back into {"name{labels}": value}; used by tests and the load script."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        samples[key] = float(value)
    return samples
