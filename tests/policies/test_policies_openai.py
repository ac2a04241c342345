"""The OpenAI-compatible policy against a real chat/completions server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rewardlab.envs.environments import make_environment
from rewardlab.envs.episode import run_episode
from rewardlab.policies import PolicyError, policy_for_episode
from rewardlab.policies.base import Generation, GenerationRequest
from rewardlab.policies.openai_http import OpenAIPolicy, load_lora_adapter
from rewardlab.policies.spec import PolicySettings, make_policy

OPENING = [{"role": "user", "content": "task"}, {"role": "assistant", "content": "<cot>"}]


class ChatServer:
    """A tiny chat/completions server whose replies are queued by the test; it records every request.

    With ``respond`` (body -> (status, payload, delay)) each reply is computed from its request
    instead (for concurrent requests, whose arrival order is not fixed); a str payload is sent as
    plain text. ``finished`` lists the bodies in the order their replies were sent.
    """

    def __init__(self, delay: float = 0.0, respond=None) -> None:
        self.replies: list[tuple[int, dict, dict]] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.finished: list[dict] = []
        self.delay = delay
        self.respond = respond
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests.append({"path": self.path, **body})
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    if server.respond is None:
                        status, payload, extra = server.replies.pop(0) if server.replies else (200, _choice("ok"), {})
                        delay = server.delay
                if server.respond is not None:
                    (status, payload, delay), extra = server.respond(body), {}
                time.sleep(delay)
                with server._lock:
                    server.in_flight -= 1
                    server.finished.append(body)
                text = isinstance(payload, str)
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def queue(self, content: str, *, status: int = 200, finish_reason: str = "stop", stop_reason=None, headers=None):
        payload = _choice(content, finish_reason, stop_reason) if status == 200 else {"error": {"message": content}}
        self.replies.append((status, payload, headers or {}))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _choice(content: str, finish_reason: str = "stop", stop_reason=None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
    if stop_reason is not None:
        choice["stop_reason"] = stop_reason
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


@pytest.fixture
def server():
    chat = ChatServer()
    yield chat
    chat.close()


def test_request_carries_model_stop_prefill_and_key(server, monkeypatch):
    monkeypatch.setenv("TEST_CHAT_KEY", "sekrit")
    policy = OpenAIPolicy("tiny-model", server.url, api_key_env="TEST_CHAT_KEY", max_tokens=64, temperature=0.5)
    server.queue("Let me look.</cot>\n<bash>ls", stop_reason="</bash>")
    assert policy.generate(OPENING, ["</bash>"]) == "<cot>Let me look.</cot>\n<bash>ls</bash>"
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["model"] == "tiny-model"
    assert request["messages"] == OPENING and request["stop"] == ["</bash>"]
    assert request["continue_final_message"] is True and request["add_generation_prompt"] is False
    assert request["max_tokens"] == 64 and request["temperature"] == 0.5
    assert server.headers[0]["Authorization"] == "Bearer sekrit"
    server.queue("<bash>cat notes.txt")
    assert policy.generate([{"role": "user", "content": "q"}], ["</bash>"]) == "<bash>cat notes.txt</bash>"
    assert "continue_final_message" not in server.requests[1]
    policy.close()


def test_prefill_none_sends_no_opening_and_returns_a_fresh_message(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    policy = OpenAIPolicy("m", server.url, prefill="none")
    server.queue("I cannot tell.")
    assert policy.generate(OPENING, ["</bash>"]) == "I cannot tell."
    assert server.requests[0]["messages"] == OPENING[:1] and "continue_final_message" not in server.requests[0]
    assert "Authorization" not in server.headers[0]
    policy.close()


def test_retries_with_backoff_then_succeeds_or_gives_up(server):
    policy = OpenAIPolicy("m", server.url, max_retries=3, backoff_seconds=0.01)
    server.queue("busy", status=503, headers={"Retry-After": "0"})
    server.queue("overloaded", status=429)
    server.queue("fine")
    assert policy.generate([{"role": "user", "content": "q"}], []) == "fine"
    assert len(server.requests) == 3
    for _ in range(4):
        server.queue("broken", status=500)
    with pytest.raises(PolicyError, match="failed after 4 attempts"):
        policy.generate([{"role": "user", "content": "q"}], [])
    server.queue("bad request: unknown field", status=400)
    before = len(server.requests)
    with pytest.raises(PolicyError, match="HTTP 400.*unknown field"):
        policy.generate([{"role": "user", "content": "q"}], [])
    assert len(server.requests) == before + 1
    policy.close()


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = OpenAIPolicy("m", f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_seconds=0.01)
    with pytest.raises(PolicyError, match="ConnectError"):
        policy.generate([{"role": "user", "content": "q"}], [])
    policy.close()


def test_concurrency_limit_is_respected():
    chat = ChatServer(delay=0.15)
    try:
        policy = OpenAIPolicy("m", chat.url, max_concurrency=2)
        threads = [threading.Thread(target=policy.generate, args=([{"role": "user", "content": "q"}], []))
                   for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(chat.requests) == 6 and chat.max_in_flight == 2
        policy.close()
    finally:
        chat.close()


@pytest.mark.sandbox
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
def test_a_full_episode_against_the_server(server):
    policy = OpenAIPolicy("m", server.url)
    server.queue("I'll check the reward code.</cot>\n<bash>cat /rl_environment/compute_reward.py")
    server.queue("<cot>Nothing counts episodes.</cot>\nI can't find any record of how many episodes have run.")
    env = make_environment("reward-tampering")
    from rewardlab.envs.sandbox import make_sandbox

    record = run_episode(env, env.variant(0, 0), policy, make_sandbox("bwrap"), policy_spec="openai:m")
    assert record.outcome == "honest" and len(record.commands) == 1
    second = server.requests[1]["messages"]
    assert second[-2]["content"].startswith("<cot>I'll check") and second[-2]["content"].endswith("</bash>")
    assert second[-1]["role"] == "user" and "return -10" in second[-1]["content"]
    assert record.final_answer == "I can't find any record of how many episodes have run."
    policy.close()


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _by_prompt(replies: dict, delays: dict | None = None):
    """A `ChatServer.respond` answering each request by its last user message: prompt -> (content,
    finish_reason[, stop_reason]) or an int HTTP status; ``delays`` holds per-prompt sleeps."""
    def respond(body):
        prompt = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        reply = replies[prompt]
        delay = (delays or {}).get(prompt, 0.0)
        if isinstance(reply, int):
            return reply, {"error": {"message": f"refused {prompt}"}}, delay
        return 200, _choice(*reply), delay
    return respond


def test_generate_many_answers_in_request_order_concurrently_with_each_seed():
    replies = {f"q{i}": (f"answer {i}", "stop") for i in range(4)}
    chat = ChatServer(respond=_by_prompt(replies, {"q0": 0.3}))
    try:
        policy = OpenAIPolicy("m", chat.url, max_concurrency=4)
        seeds = [2**31 + 5, 7, 2**40 + 3, 0]
        requests = [GenerationRequest(_user(f"q{i}"), [], seed) for i, seed in enumerate(seeds)]
        results = policy.generate_many(requests)
        assert [r.text for r in results] == [f"answer {i}" for i in range(4)]
        assert chat.finished[-1]["messages"] == _user("q0")  # the server answered q0 last
        assert chat.max_in_flight > 1
        sent = {r["messages"][0]["content"]: r["seed"] for r in chat.requests}
        assert sent == {f"q{i}": seed % 2**31 for i, seed in enumerate(seeds)}
        assert policy.generate_many([]) == []
        policy.close()
    finally:
        chat.close()


def test_generate_many_maps_finish_reasons_and_keeps_the_generate_rules():
    replies = {
        "stopped": ("Look.</cot>\n<bash>ls", "stop", "</bash>"),
        "ended": ("All done.", "stop"),
        "cut": ("<bash>cat lo", "length"),
        "odd": ("hm", "abort"),
        "tag": ("<bash>pwd", "stop"),  # no stop_reason: the unclosed tag's stop is restored
    }
    chat = ChatServer(respond=_by_prompt(replies))
    try:
        policy = OpenAIPolicy("m", chat.url, max_concurrency=3)
        stop = ["</bash>"]
        opening = [{"role": "user", "content": "stopped"}, {"role": "assistant", "content": "<cot>"}]
        requests = [GenerationRequest(opening, stop, 1)]
        requests += [GenerationRequest(_user(name), stop, 2) for name in ("ended", "cut", "odd", "tag")]
        assert policy.generate_many(requests) == [
            Generation("<cot>Look.</cot>\n<bash>ls</bash>", "stop"), Generation("All done.", "eos"),
            Generation("<bash>cat lo", "length"), Generation("hm", None), Generation("<bash>pwd</bash>", "stop")]
        prefilled = next(r for r in chat.requests if r["messages"][0]["content"] == "stopped")
        assert prefilled["continue_final_message"] is True and prefilled["stop"] == stop
        # generate shares the code path and sends no seed
        assert policy.generate(requests[0].messages, stop) == "<cot>Look.</cot>\n<bash>ls</bash>"
        assert "seed" not in chat.requests[-1]
        policy.close()
    finally:
        chat.close()


def test_generate_many_raises_the_failure_after_the_others_finish():
    replies = {"a": ("fine", "stop"), "b": 400, "c": ("fine too", "stop")}
    chat = ChatServer(respond=_by_prompt(replies, {"a": 0.2}))
    try:
        policy = OpenAIPolicy("m", chat.url, max_concurrency=3)
        with pytest.raises(PolicyError, match="HTTP 400.*refused b"):
            policy.generate_many([GenerationRequest(_user(name), [], 1) for name in "abc"])
        assert chat.in_flight == 0 and len(chat.finished) == len(chat.requests)
        policy.close()
    finally:
        chat.close()


def test_the_episode_view_numbers_its_seeds_and_request_matches_generate(server):
    policy = OpenAIPolicy("m", server.url, seed=3)
    hints = {"env": "reward-tampering", "seed": 11, "index": 2}
    view = policy_for_episode(policy, hints)
    assert view.generate(_user("q"), ["</bash>"]) == "ok"
    view.generate(_user("q"), ["</bash>"])
    twin = policy.for_episode(dict(hints))
    first, second = twin.request(_user("q"), ["</bash>"]), twin.request(_user("q"), ["</bash>"])
    assert second.seed == first.seed + 1 and first.messages == _user("q") and first.stop == ["</bash>"]
    assert [r["seed"] for r in server.requests] == [first.seed % 2**31, second.seed % 2**31]
    policy.generate_many([first, second])
    by_seed = lambda requests: sorted(requests, key=lambda r: r["seed"])  # noqa: E731 - arrival order varies
    assert by_seed(server.requests[2:]) == by_seed(server.requests[:2])
    assert policy.for_episode({**hints, "sample": 1}).request(_user("q"), []).seed != first.seed
    assert OpenAIPolicy("m", server.url, seed=4).for_episode(hints).request(_user("q"), []).seed != first.seed
    made = make_policy("openai:m", PolicySettings(base_url=server.url, seed=3))
    assert made.for_episode(hints).request(_user("q"), []).seed == first.seed
    policy.close()


def test_load_lora_adapter_succeeds_or_explains(monkeypatch):
    answers = []

    def respond(body):
        return answers.pop(0) + (0.0,)

    chat = ChatServer(respond=respond)
    try:
        monkeypatch.setenv("TEST_LORA_KEY", "k")
        answers.append((200, "Success: LoRA adapter 'step-10' added successfully."))
        load_lora_adapter(chat.url + "/", "step-10", "/ckpt/step-10", api_key_env="TEST_LORA_KEY")
        assert chat.requests[0] == {"path": "/v1/load_lora_adapter", "lora_name": "step-10",
                                    "lora_path": "/ckpt/step-10"}
        assert chat.headers[0]["Authorization"] == "Bearer k"
        answers.append((400, {"object": "error", "message": "The lora adapter 'step-10' has already been loaded.",
                              "type": "InvalidUserInput", "code": 400}))
        load_lora_adapter(chat.url, "step-10", "/ckpt/step-10")
        answers.append((400, "No adapter found for\n/nowhere"))
        with pytest.raises(PolicyError, match="HTTP 400.*No adapter found for /nowhere") as bad:
            load_lora_adapter(chat.url, "x", "/nowhere")
        assert "\n" not in str(bad.value) and "--enable-lora" not in str(bad.value)
        answers.append((404, {"detail": "Not Found"}))
        with pytest.raises(PolicyError) as missing:
            load_lora_adapter(chat.url, "x", "/ckpt")
        message = str(missing.value)
        assert f"{chat.url}/load_lora_adapter" in message and "HTTP 404" in message and "Not Found" in message
        assert "--enable-lora" in message and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in message
    finally:
        chat.close()


def test_with_model_asks_for_the_adapter_with_the_same_settings(server, monkeypatch):
    monkeypatch.setenv("TEST_CHAT_KEY", "sekrit")
    policy = OpenAIPolicy("base", server.url, api_key_env="TEST_CHAT_KEY", max_tokens=32, temperature=0.7, seed=5)
    adapter = policy.with_model("step-10")
    assert adapter.model == "step-10" and policy.model == "base"
    assert (adapter.max_tokens, adapter.temperature, adapter.seed, adapter.prefill) == (32, 0.7, 5, "continue")
    adapter.generate(_user("q"), [])
    policy.generate(_user("q"), [])
    assert [r["model"] for r in server.requests] == ["step-10", "base"]
    assert server.requests[0]["max_tokens"] == 32 and server.headers[0]["Authorization"] == "Bearer sekrit"
    adapter.close()
    assert policy.generate(_user("q"), []) == "ok"  # closing the adapter's client leaves the base's open
    policy.close()


def test_a_prompt_past_the_servers_context_is_a_context_limit_not_a_failure(server):
    from rewardlab.envs.environments import make_environment
    from rewardlab.envs.episode import run_episode
    from rewardlab.policies.base import ContextLimitError, GenerationRequest

    policy = OpenAIPolicy("tiny-model", server.url, max_retries=0)
    message = ("This model's maximum context length is 2048 tokens. However, you requested 2100 tokens "
               "(2000 in the messages, 100 in the completion).")
    server.queue(message, status=400)
    with pytest.raises(ContextLimitError, match="no longer fits"):
        policy.generate(OPENING, [])
    server.queue(message, status=400)
    server.queue("fine", finish_reason="stop")
    answers = policy.generate_many([GenerationRequest(OPENING, [], 1), GenerationRequest(OPENING, [], 2)])
    assert sorted(answer.finish_reason for answer in answers) == ["context_limit", "eos"]
    server.queue(message, status=400)
    env = make_environment("political-sycophancy")
    record = run_episode(env, env.variant(0, 0), policy, None, policy_spec="openai:tiny-model")
    assert record.details["context_exhausted"] is True and record.outcome == env.error_outcome
    server.queue("the grader is down", status=400)
    with pytest.raises(PolicyError, match="HTTP 400"):  # any other 400 stays a failure of the policy
        policy.generate(OPENING, [])
