"""Prometheus text rendering of the server metrics."""

from __future__ import annotations

import math
import threading

from rewardlab.serve.metrics import ServerMetrics, parse_exposition, quantile


def test_quantile_nearest_rank() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.99) == 99.0
    assert quantile(values, 1.0) == 100.0
    assert math.isnan(quantile([], 0.5))


def test_exposition_counts_requests_batches_and_latency() -> None:
    metrics = ServerMetrics()
    for seconds in (0.010, 0.020, 0.030, 0.040):
        metrics.observe_request("/get_reward", 200, seconds)
    metrics.observe_request("/get_reward", 422, 0.001)
    metrics.observe_request("/score", 200, 0.5)
    metrics.observe_batch(1, 0.01)
    metrics.observe_batch(3, 0.02)
    metrics.observe_batch(32, 0.03)
    metrics.observe_truncated(2)

    text = metrics.render(queue_depth=7)
    samples = parse_exposition(text)
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="200"}'] == 4
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="422"}'] == 1
    assert samples['rewardlab_requests_total{endpoint="/score",status="200"}'] == 1
    assert samples['rewardlab_request_latency_seconds{endpoint="/get_reward",quantile="0.5"}'] == 0.02
    assert samples['rewardlab_request_latency_seconds{endpoint="/score",quantile="0.99"}'] == 0.5
    assert samples['rewardlab_request_latency_seconds_count{endpoint="/get_reward"}'] == 5
    # histogram buckets are cumulative
    assert samples['rewardlab_batch_size_bucket{le="1"}'] == 1
    assert samples['rewardlab_batch_size_bucket{le="2"}'] == 1
    assert samples['rewardlab_batch_size_bucket{le="4"}'] == 2
    assert samples['rewardlab_batch_size_bucket{le="32"}'] == 3
    assert samples['rewardlab_batch_size_bucket{le="+Inf"}'] == 3
    assert samples["rewardlab_batch_size_sum"] == 36
    assert samples["rewardlab_batch_size_count"] == 3
    assert samples["rewardlab_texts_scored_total"] == 36
    assert samples["rewardlab_texts_truncated_total"] == 2
    assert samples["rewardlab_queue_depth"] == 7
    assert "# TYPE rewardlab_batch_size histogram" in text
    assert "# TYPE rewardlab_request_latency_seconds summary" in text
    assert text.endswith("\n")
    assert metrics.request_count("/get_reward") == 5
    assert metrics.request_count(status=200) == 5
    assert metrics.batch_sizes_seen()[4] == 1 and metrics.batch_sizes_seen()[32] == 1


def test_latency_window_keeps_only_recent_requests() -> None:
    metrics = ServerMetrics(latency_window=10)
    for _ in range(100):
        metrics.observe_request("/score", 200, 5.0)
    for _ in range(10):
        metrics.observe_request("/score", 200, 0.1)
    samples = parse_exposition(metrics.render())
    assert samples['rewardlab_request_latency_seconds{endpoint="/score",quantile="0.99"}'] == 0.1
    assert samples['rewardlab_request_latency_seconds_count{endpoint="/score"}'] == 110


def test_updates_from_many_threads_are_all_counted() -> None:
    metrics = ServerMetrics()

    def hammer() -> None:
        for _ in range(500):
            metrics.observe_request("/get_reward", 200, 0.001)
            metrics.observe_batch(2, 0.0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.request_count() == 4000
    assert parse_exposition(metrics.render())["rewardlab_batch_size_count"] == 4000


def test_exposition_shows_the_token_budget_the_queue_and_scorer_truncations() -> None:
    metrics = ServerMetrics()
    metrics.observe_batch(4, 0.01, tokens=300)
    metrics.observe_batch(2, 0.01, tokens=1000)
    metrics.observe_rejected_full()
    metrics.observe_rejected_full()
    text = metrics.render(
        queue_depth=3,
        queue_requests=5,
        max_queue=8,
        max_batch=16,
        max_batch_tokens=1024,
        scorer_truncations={"cut": 4},
    )
    samples = parse_exposition(text)
    assert samples['rewardlab_batch_tokens_bucket{le="256"}'] == 0
    assert samples['rewardlab_batch_tokens_bucket{le="512"}'] == 1
    assert samples['rewardlab_batch_tokens_bucket{le="1024"}'] == 2
    assert samples['rewardlab_batch_tokens_bucket{le="+Inf"}'] == 2
    assert samples["rewardlab_batch_tokens_sum"] == 1300 and samples["rewardlab_batch_tokens_max"] == 1000
    assert samples["rewardlab_max_batch_tokens"] == 1024 and samples["rewardlab_max_batch"] == 16
    assert samples["rewardlab_queue_requests"] == 5 and samples["rewardlab_queue_limit"] == 8
    assert samples["rewardlab_queue_rejected_total"] == 2 and metrics.rejected_full == 2
    assert samples["rewardlab_queue_depth"] == 3
    assert samples['rewardlab_scorer_truncations_total{kind="cut"}'] == 4
    assert samples['rewardlab_scorer_truncations_total{kind="dropped"}'] == 0
    # without the scorer's counts (an older scorer) the series is simply absent
    assert "rewardlab_scorer_truncations_total" not in metrics.render()
