"""The reward server under hostile input and load: a real uvicorn server on 127.0.0.1, raw keep-alive
connections (http.client and plain sockets), the tiny-random model.

Each keep-alive check holds on to the client's socket object: http.client only opens a new
connection when the old one was closed, so ``conn.sock is sock`` after the last request proves the
server kept the connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest

from rewardlab.data.render import conversation_text
from rewardlab.scoring import RewardScorer
from rewardlab.serve.app import create_app
from rewardlab.serve.config import ServeConfig, ServeConfigError
from rewardlab.serve.metrics import parse_exposition
from rewardlab.serve.runner import BackgroundServer

TOLERANCE = 1e-5
WAIT_S = 20.0


def chat(scorer: RewardScorer, prompt: str, response: str) -> str:
    return conversation_text(scorer.tokenizer, [{"role": "user", "content": prompt}], response)


def address(server: BackgroundServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def keep_alive(server: BackgroundServer) -> tuple[http.client.HTTPConnection, socket.socket]:
    """An open keep-alive connection and its socket."""
    conn = http.client.HTTPConnection(*address(server), timeout=30)
    conn.connect()
    assert conn.sock is not None
    return conn, conn.sock


def exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None):
    """One request on ``conn``; (status, lower-cased headers, decoded JSON body)."""
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(payload)


def assert_close(got: list[float], expected: list[float]) -> None:
    assert len(got) == len(expected) and all(abs(g - e) < TOLERANCE for g, e in zip(got, expected)), (got, expected)


def metrics_of(client: Any) -> dict[str, float]:
    return parse_exposition(client.get("/metrics").text)


def test_deeply_nested_json_answers_400_and_the_keep_alive_connection_survives(
    serve, tiny_scorer: RewardScorer
) -> None:
    client, server = serve()
    conn, sock = keep_alive(server)
    hostile = [
        ("/get_reward", b"[" * 100_000),
        ("/score", b'{"prompt":' * 100_000),
        ("/get_reward", b'{"query": ["a"], "labels": ' + b"[" * 100_000),
    ]
    for path, body in hostile:
        status, headers, payload = exchange(conn, "POST", path, body)
        assert status == 400, payload
        assert "nests JSON arrays or objects too deeply" in payload["error"]
        assert headers.get("connection", "").lower() != "close"
    text = chat(tiny_scorer, "Still there?", "Yes.")
    status, _, payload = exchange(conn, "POST", "/get_reward", json.dumps({"query": [text]}).encode())
    assert status == 200, payload
    assert_close(payload["rewards"], tiny_scorer.score_texts([text]))
    assert conn.sock is sock, "the server dropped the keep-alive connection"
    samples = metrics_of(client)
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="400"}'] == 2
    assert samples['rewardlab_requests_total{endpoint="/score",status="400"}'] == 1
    assert not any('status="500"' in key for key in samples)


def test_an_unexpected_error_answers_a_json_500_and_keeps_the_connection(serve) -> None:
    def add_a_buggy_route(server: BackgroundServer) -> None:
        async def buggy() -> None:
            raise ZeroDivisionError("a bug in a handler")

        server.app.add_api_route("/buggy", buggy, methods=["GET"])

    client, server = serve(prepare=add_a_buggy_route)
    conn, sock = keep_alive(server)
    status, _, payload = exchange(conn, "GET", "/buggy")
    assert status == 500 and payload["error"] == "internal error: ZeroDivisionError: a bug in a handler"
    status, _, payload = exchange(conn, "GET", "/health")
    assert status == 200 and payload["status"] == "ok"
    assert conn.sock is sock, "a 500 must not cost the client its connection"
    assert metrics_of(client)['rewardlab_requests_total{endpoint="other",status="500"}'] == 1


def test_score_refuses_empty_conversations_naming_the_field(serve) -> None:
    client, _ = serve()
    fine = {"prompt": "Name a colour.", "response": "Blue."}
    cases = [
        ([], "the body is an empty list"),
        ({"prompt": "Name a colour.", "response": ""}, "field 'response' is empty"),
        ([fine, {"prompt": "Name a colour.", "response": "  \n"}], "field '[1].response' is empty"),
        ({"prompt": "", "response": "Blue."}, "field 'prompt' is an empty string"),
    ]
    for payload, needle in cases:
        response = client.post("/score", json=payload)
        assert response.status_code == 422, response.text
        assert needle in response.json()["error"]
    assert metrics_of(client)["rewardlab_texts_scored_total"] == 0, "nothing empty may reach the model"
    assert client.post("/score", json=fine).status_code == 200


def test_a_full_queue_answers_503_with_retry_after_and_recovers(serve, tiny_scorer: RewardScorer) -> None:
    client, server = serve(max_queue=2)
    text = chat(tiny_scorer, "Name a river.", "The Nile.")
    body = json.dumps({"query": [text]}).encode()
    head = (
        b"POST /get_reward HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    # Two callers whose bodies are still on their way hold both places in the queue.
    holders = [socket.create_connection(address(server), timeout=30) for _ in range(2)]
    try:
        for holder in holders:
            holder.sendall(head + body[:5])
        deadline = time.monotonic() + WAIT_S
        while client.get("/health").json()["queue_requests"] < 2:
            assert time.monotonic() < deadline, "the two held requests never reached the server"
            time.sleep(0.02)

        conn, sock = keep_alive(server)
        status, headers, payload = exchange(conn, "POST", "/get_reward", body)
        assert status == 503 and headers["retry-after"] == "1", (status, headers)
        assert "--max-queue" in payload["error"] and "2 requests" in payload["error"]
        # refused before its (larger) body is read, and the connection still carries the next request
        big = json.dumps([{"prompt": "p" * 200_000, "response": "r"}]).encode()
        status, headers, _ = exchange(conn, "POST", "/score", big)
        assert status == 503 and headers["retry-after"] == "1"
        # health and metrics are never queued
        samples = metrics_of(client)
        assert samples["rewardlab_queue_requests"] == 2 and samples["rewardlab_queue_limit"] == 2
        assert samples["rewardlab_queue_rejected_total"] == 2

        for holder in holders:
            holder.sendall(body[5:])
        for holder in holders:
            response = http.client.HTTPResponse(holder)
            response.begin()
            assert response.status == 200
            assert_close(json.loads(response.read())["rewards"], tiny_scorer.score_texts([text]))
    finally:
        for holder in holders:
            holder.close()

    status, _, payload = exchange(conn, "POST", "/get_reward", body)
    assert status == 200, payload
    assert conn.sock is sock, "a 503 must not cost the client its connection"
    samples = metrics_of(client)
    assert samples["rewardlab_queue_requests"] == 0 and samples["rewardlab_queue_rejected_total"] == 2
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="503"}'] == 1
    assert samples['rewardlab_requests_total{endpoint="/score",status="503"}'] == 1
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="200"}'] == 3


def test_the_token_budget_caps_every_forward_pass(serve, tiny_scorer: RewardScorer) -> None:
    max_tokens, budget = 64, 160
    client, _ = serve(max_batch=32, max_tokens=max_tokens, max_batch_tokens=budget, max_wait_ms=50)
    texts = [
        chat(tiny_scorer, f"Question {i} about {'tea' if i % 2 else 'rivers'}." + " Go on." * (i % 5), f"Answer {i}.")
        for i in range(24)
    ]
    lengths = [len(tiny_scorer.encode_text(t)) for t in texts]
    assert max(lengths) <= max_tokens and sum(lengths) > 2 * budget, lengths
    health = client.get("/health").json()
    assert health["max_batch_tokens"] == budget and health["max_batch"] == 32

    response = client.post("/get_reward", json={"query": texts})
    assert response.status_code == 200, response.text
    assert_close(response.json()["rewards"], tiny_scorer.score_texts(texts))
    samples = metrics_of(client)
    assert samples["rewardlab_max_batch_tokens"] == budget
    assert samples["rewardlab_batch_tokens_max"] <= budget
    # 24 texts fit one pass of --max-batch 32; the budget alone splits them
    assert samples["rewardlab_batch_size_count"] >= -(-sum(lengths) // budget)
    assert samples["rewardlab_batch_size_sum"] == len(texts)
    if tiny_scorer.packing:  # one padding-free row per pass: the cost is the texts' own tokens
        assert samples["rewardlab_batch_tokens_sum"] == sum(lengths)
    else:
        assert samples["rewardlab_batch_tokens_sum"] >= sum(lengths)


def test_a_token_budget_below_one_text_is_refused_at_startup(tiny_scorer: RewardScorer) -> None:
    with pytest.raises(ServeConfigError, match="--max-batch-tokens 16 is less than the 64 tokens"):
        create_app(tiny_scorer, ServeConfig(max_tokens=64, max_batch_tokens=16))
    with pytest.raises(ServeConfigError, match=f"less than the {tiny_scorer.max_length} tokens"):
        create_app(tiny_scorer, ServeConfig(max_batch_tokens=tiny_scorer.max_length - 1))


def test_metrics_expose_the_scorers_truncation_counts(serve, tiny_scorer: RewardScorer) -> None:
    """The live `RewardScorer.truncation_counts` (zero for a scorer that keeps none)."""
    client, _ = serve()
    counts = getattr(tiny_scorer, "truncation_counts", None)
    if counts is not None:  # /metrics must read the live counter, not a copy taken at startup
        counts["cut"] += 3
    try:
        samples = metrics_of(client)
        for kind in ("cut", "dropped"):
            expected = (counts or {}).get(kind, 0)
            assert samples[f'rewardlab_scorer_truncations_total{{kind="{kind}"}}'] == expected
    finally:
        if counts is not None:
            counts["cut"] -= 3
