"""The reward server end to end: a real uvicorn server on a loopback port, real HTTP, a real tiny model."""

from __future__ import annotations

import json
import math
import threading

import httpx

from rewardlab.data.render import conversation_text, render
from rewardlab.scoring import RewardScorer
from rewardlab.serve.metrics import parse_exposition
from rewardlab.workflows import score_one

LONG_PROMPT = "Describe every step of baking bread, from flour and water to the finished loaf. " * 6
TOLERANCE = 1e-5


def chat(scorer: RewardScorer, prompt: str, response: str) -> str:
    """A fully rendered prompt+response text, as an RLHF trainer would send it."""
    return conversation_text(scorer.tokenizer, [{"role": "user", "content": prompt}], response)


def assert_close(got: list[float], expected: list[float]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert abs(g - e) < TOLERANCE, (got, expected)


def test_overlength_follows_the_models_saved_truncation_unless_given(serve, tiny_scorer: RewardScorer) -> None:
    saved = tiny_scorer.truncation
    try:
        tiny_scorer.truncation = "prompt-left"
        client, _ = serve()
        assert client.get("/health").json()["overlength"] == "truncate"
        client, _ = serve(overlength="reject")
        assert client.get("/health").json()["overlength"] == "reject"
    finally:
        tiny_scorer.truncation = saved


def test_health_reports_limits(serve, tiny_scorer: RewardScorer) -> None:
    client, server = serve(max_batch=8)
    assert server.url.startswith("http://127.0.0.1:")
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["max_tokens"] == tiny_scorer.max_length
    # the model was saved with truncation "drop": it never saw a cut text, so over-length texts are refused
    assert body["max_batch"] == 8 and body["overlength"] == "reject" and body["auth"] is False
    # no --max-batch-tokens: the budget is what max_batch texts of max_tokens hold, so it never binds
    assert body["max_batch_tokens"] == 8 * tiny_scorer.max_length
    assert body["max_queue"] == 256 and body["queue_requests"] == 0


def test_get_reward_round_trip_matches_the_scorer(serve, tiny_scorer: RewardScorer) -> None:
    client, _ = serve()
    texts = [chat(tiny_scorer, f"What is {i} + {i}?", f"It is {2 * i}.") for i in range(5)]
    response = client.post(
        "/get_reward", json={"query": texts, "prompts": [t[:10] for t in texts], "labels": [None] * 5}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"rewards", "scores", "extra_logs"}
    assert_close(body["rewards"], tiny_scorer.score_texts(texts))
    assert [round(s, 9) for s in body["scores"]] == [round(1 / (1 + math.exp(-r)), 9) for r in body["rewards"]]
    assert all(0.0 <= s <= 1.0 for s in body["scores"])
    assert body["extra_logs"]["truncated"] == [0.0] * 5
    assert body["extra_logs"]["num_tokens"] == [float(len(tiny_scorer.encode_text(t))) for t in texts]
    assert body["truncated"] == []


def test_empty_query_list_gives_empty_results(serve) -> None:
    """OpenRLHF's protocol: one reward per query, so an empty batch gets empty lists (as its own server does)."""
    client, _ = serve()
    body = client.post("/get_reward", json={"query": []}).json()
    assert body["rewards"] == [] and body["scores"] == []


def test_score_endpoint_matches_rewardlab_score(serve, tiny_scorer: RewardScorer) -> None:
    client, _ = serve()
    single = client.post("/score", json={"prompt": "Name a colour.", "response": "Blue."})
    assert single.status_code == 200, single.text
    assert_close(single.json()["rewards"], [score_one(tiny_scorer, "Name a colour.", "Blue.")])

    prompts = [
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Largest planet?"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    ]
    responses = ["Jupiter.", "Goodbye!"]
    many = client.post("/score", json=[{"prompt": p, "response": r} for p, r in zip(prompts, responses)]).json()
    assert_close(many["rewards"], tiny_scorer.score_conversations(prompts, responses))
    assert many["truncated"] == []
    # the same conversation sent rendered to /get_reward gets the same reward
    rendered = [conversation_text(tiny_scorer.tokenizer, p, r) for p, r in zip(prompts, responses)]
    assert_close(client.post("/get_reward", json={"query": rendered}).json()["rewards"], many["rewards"])


def test_truncate_policy_keeps_the_end_and_says_so(serve, tiny_scorer: RewardScorer) -> None:
    client, _ = serve(max_tokens=24, overlength="truncate")
    long_text = chat(tiny_scorer, LONG_PROMPT, "Bake it.")
    short_text = chat(tiny_scorer, "hi", "yo")
    body = client.post("/get_reward", json={"query": [short_text, long_text]}).json()
    assert body["truncated"] == [1]
    assert body["extra_logs"]["truncated"] == [0.0, 1.0]
    ids = tiny_scorer.encode_text(long_text)
    assert_close(body["rewards"], tiny_scorer.score_token_ids([tiny_scorer.encode_text(short_text), ids[:1] + ids[-23:]]))

    prompt = [{"role": "user", "content": LONG_PROMPT}]
    scored = client.post("/score", json={"prompt": prompt, "response": "Bake it."}).json()
    assert scored["truncated"] == [0] and scored["num_tokens"][0] <= 24
    cut = render(tiny_scorer.tokenizer, prompt, "Bake it.", max_length=24, truncation="prompt-left")
    assert cut is not None
    assert_close(scored["rewards"], tiny_scorer.score_token_ids([cut.input_ids]))


def test_reject_policy_answers_400_naming_the_text(serve, tiny_scorer: RewardScorer) -> None:
    client, _ = serve(max_tokens=24, overlength="reject")
    long_text = chat(tiny_scorer, LONG_PROMPT, "Bake it.")
    response = client.post("/get_reward", json={"query": ["fine", long_text]})
    assert response.status_code == 400
    assert "query[1]" in response.json()["error"] and "24" in response.json()["error"]
    response = client.post("/score", json=[{"prompt": "ok", "response": "ok"}, {"prompt": LONG_PROMPT, "response": "x"}])
    assert response.status_code == 400 and "[1] renders to" in response.json()["error"]
    assert client.post("/get_reward", json={"query": ["fine"]}).status_code == 200


def test_bad_requests_get_4xx_with_the_field_named_and_the_server_survives(serve, tiny_scorer: RewardScorer) -> None:
    client, _ = serve(max_body_bytes=4096, max_texts=4)
    cases = [
        (client.post("/get_reward", content=b'{"query": ["a",'), 400, "not valid JSON"),
        (client.post("/get_reward", content=b""), 400, "empty"),
        (client.post("/get_reward", content=b"\xff\xfe"), 400, "UTF-8"),
        (client.post("/get_reward", json=["a"]), 422, "JSON object"),
        (client.post("/get_reward", json={"texts": ["a"]}), 422, "missing field 'query'"),
        (client.post("/get_reward", json={"query": "a"}), 422, "'query' must be a list"),
        (client.post("/get_reward", json={"query": ["a", 1]}), 422, "query[1]"),
        (client.post("/get_reward", json={"query": [""]}), 422, "query[0] is empty"),
        (client.post("/get_reward", json={"query": ["a"] * 5}), 413, "--max-texts"),
        (client.post("/get_reward", json={"query": ["x" * 5000]}), 413, "--max-body-bytes"),
        (client.post("/get_reward", content=(b"x" * 1024 for _ in range(8))), 413, "--max-body-bytes"),
        (client.post("/score", json={"prompt": [{"role": "user"}], "response": "r"}), 422, "prompt[0].content"),
        (client.post("/score", json={"prompt": "p", "response": None}), 422, "'response' must be a string"),
        (client.get("/get_reward"), 405, ""),
        (client.get("/nowhere"), 404, ""),
    ]
    for response, status, needle in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert needle in response.json()["error"], response.json()
    text = chat(tiny_scorer, "still there?", "yes")
    after = client.post("/get_reward", json={"query": [text]})
    assert after.status_code == 200
    assert_close(after.json()["rewards"], tiny_scorer.score_texts([text]))


def test_bearer_token(serve) -> None:
    client, _ = serve(token="open-sesame")
    assert client.get("/health").status_code == 200
    missing = client.post("/get_reward", json={"query": ["a"]})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/get_reward", json={"query": ["a"]}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    good = {"Authorization": "Bearer open-sesame"}
    assert client.post("/get_reward", json={"query": ["a"]}, headers=good).status_code == 200
    assert client.post("/score", json={"prompt": "p", "response": "r"}, headers=good).status_code == 200
    samples = parse_exposition(client.get("/metrics", headers=good).text)
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="401"}'] == 2


def test_concurrent_callers_each_get_their_own_rewards_in_shared_batches(serve, tiny_scorer: RewardScorer) -> None:
    client, server = serve(max_batch=16, max_wait_ms=100)
    n_callers, per_caller = 32, 3
    texts = [
        [chat(tiny_scorer, f"Caller {c} asks question {i} about {'tea' if i % 2 else 'rivers'}.", f"Answer {c}-{i}" + "!" * c)
         for i in range(per_caller)]
        for c in range(n_callers)
    ]
    flat = [t for group in texts for t in group]
    expected = tiny_scorer.score_texts(flat)
    assert len({round(r, 4) for r in expected}) > len(flat) // 2, "texts must be told apart by their rewards"
    results: list[list[float] | None] = [None] * n_callers
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_callers)

    def call(caller: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                barrier.wait()
                response = own.post("/get_reward", json={"query": texts[caller]})
                response.raise_for_status()
                results[caller] = response.json()["rewards"]
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=call, args=(c,)) for c in range(n_callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for caller in range(n_callers):
        assert_close(results[caller], expected[caller * per_caller : (caller + 1) * per_caller])

    samples = parse_exposition(client.get("/metrics").text)
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="200"}'] == n_callers
    assert samples["rewardlab_batch_size_sum"] == len(flat)
    # each request holds 3 texts: a forward pass of more than 4 texts must mix several requests
    assert samples['rewardlab_batch_size_bucket{le="4"}'] < samples["rewardlab_batch_size_count"], samples
    assert samples["rewardlab_batch_size_count"] < n_callers, "requests were not batched together"
    for q in ("0.5", "0.9", "0.99"):
        assert samples[f'rewardlab_request_latency_seconds{{endpoint="/get_reward",quantile="{q}"}}'] > 0


def test_metrics_is_prometheus_text(serve) -> None:
    client, _ = serve()
    client.post("/get_reward", json={"query": ["hello"]})
    client.post("/get_reward", content=b"nope")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_exposition(response.text)
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="200"}'] == 1
    assert samples['rewardlab_requests_total{endpoint="/get_reward",status="400"}'] == 1
    assert samples["rewardlab_texts_scored_total"] == 1
    json.dumps(samples)  # every value parsed as a number
