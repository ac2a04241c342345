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
from rewardlab.policies import PolicyError
from rewardlab.policies.openai_http import OpenAIPolicy

OPENING = [{"role": "user", "content": "task"}, {"role": "assistant", "content": "<cot>"}]


class ChatServer:
    """A tiny chat/completions server whose replies are queued by the test; it records every request."""

    def __init__(self, delay: float = 0.0) -> None:
        self.replies: list[tuple[int, dict, dict]] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.delay = delay
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
                    status, payload, extra = server.replies.pop(0) if server.replies else (200, _choice("ok"), {})
                time.sleep(server.delay)
                with server._lock:
                    server.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
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
