"""`rewardlab serve` as a user runs it: a subprocess on a loopback port, stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rewardlab.cli import main
from rewardlab.scoring import RewardScorer

STARTUP_TIMEOUT_S = 90


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_answers_like_rewardlab_score(
    tiny_model_dir: Path, tiny_scorer: RewardScorer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", str(tiny_model_dir), "--prompt", "Name a fruit.", "--response", "A pear."]) == 0
    cli_reward = float(capsys.readouterr().out.strip())

    port = free_loopback_port()
    env = {**os.environ, "RL_SERVE_TEST_TOKEN": "tok-123"}
    command = [
        sys.executable, "-m", "rewardlab.cli", "serve", str(tiny_model_dir), "--port", str(port),
        "--max-batch", "4", "--max-tokens", "128", "--token-env", "RL_SERVE_TEST_TOKEN", "--log-level", "warning",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert process.poll() is None, process.communicate()
            try:
                health = client.get("/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "rewardlab serve did not start"
                time.sleep(0.2)
        assert health.json()["max_tokens"] == 128 and health.json()["auth"] is True
        headers = {"Authorization": "Bearer tok-123"}
        assert client.post("/score", json={"prompt": "Name a fruit.", "response": "A pear."}).status_code == 401
        scored = client.post("/score", json={"prompt": "Name a fruit.", "response": "A pear."}, headers=headers)
        assert scored.status_code == 200
        assert abs(scored.json()["rewards"][0] - cli_reward) < 1e-5
        assert abs(scored.json()["rewards"][0] - tiny_scorer.score_conversations(
            [[{"role": "user", "content": "Name a fruit."}]], ["A pear."])[0]) < 1e-5

        # a second server on the same port: one line, exit 2, no banner, and the first keeps serving
        second = subprocess.run(
            [sys.executable, "-m", "rewardlab.cli", "serve", str(tiny_model_dir), "--port", str(port)],
            capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S,
        )
        assert second.returncode == 2, second
        assert second.stderr.strip().splitlines() == [
            f"error: cannot listen on 127.0.0.1:{port}: the port is already in use (another server?); "
            "stop it or pick another with --port"
        ], second.stderr
        assert "serving" not in second.stderr + second.stdout
        assert client.get("/health").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}" in stderr and "bearer token required" in stderr
    assert "reward server stopped" in stderr
    assert "reachable from other machines" not in stderr, "loopback serving must not warn"
    assert "tok-123" not in stderr


def test_serve_command_refuses_an_unset_token_variable(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.pop("RL_SERVE_TEST_UNSET", None)
    assert main(["serve", str(tiny_model_dir), "--token-env", "RL_SERVE_TEST_UNSET"]) == 2
    assert "RL_SERVE_TEST_UNSET is not set" in capsys.readouterr().err


def test_serve_command_refuses_bad_limits_and_missing_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path), "--max-batch", "0"]) == 2
    assert "max_batch" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing"), "--port", str(free_loopback_port())]) == 2
    assert "missing" in capsys.readouterr().err
