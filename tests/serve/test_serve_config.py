"""ServeConfig validation, loopback detection and the bearer token from the environment."""

from __future__ import annotations

import pytest

from rewardlab.serve.config import (
    ServeConfig,
    ServeConfigError,
    check_batch_tokens,
    exposure_warning,
    is_loopback,
    token_from_env,
)


def test_defaults_listen_on_loopback_only() -> None:
    config = ServeConfig()
    assert config.host == "127.0.0.1"
    assert is_loopback(config.host)
    assert exposure_warning(config.host) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_other_hosts_get_a_warning(host: str) -> None:
    assert not is_loopback(host)
    warning = exposure_warning(host)
    assert warning is not None and host in warning and "--token-env" in warning


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("max_batch", 0, "max_batch"),
        ("max_wait_ms", -1, "max_wait_ms"),
        ("max_body_bytes", 0, "max_body_bytes"),
        ("max_texts", 0, "max_texts"),
        ("max_tokens", 0, "max_tokens"),
        ("max_batch_tokens", 0, "max_batch_tokens"),
        ("max_queue", 0, "max_queue"),
        ("overlength", "chop", "overlength"),
        ("port", 70000, "port"),
        ("token", "", "token"),
    ],
)
def test_bad_settings_are_named(field: str, value: object, needle: str) -> None:
    with pytest.raises(ServeConfigError, match=needle):
        ServeConfig(**{field: value})


def test_token_is_not_printed() -> None:
    assert "s3cret" not in repr(ServeConfig(token="s3cret"))


def test_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_TEST_TOKEN", " abc123 \n")
    assert token_from_env("RL_TEST_TOKEN") == "abc123"
    monkeypatch.setenv("RL_TEST_TOKEN", "   ")
    with pytest.raises(ServeConfigError, match="RL_TEST_TOKEN is empty"):
        token_from_env("RL_TEST_TOKEN")
    monkeypatch.delenv("RL_TEST_TOKEN")
    with pytest.raises(ServeConfigError, match="RL_TEST_TOKEN is not set"):
        token_from_env("RL_TEST_TOKEN")


def test_a_token_budget_below_one_text_is_refused() -> None:
    check_batch_tokens(None, 4096)
    check_batch_tokens(512, 512)
    with pytest.raises(ServeConfigError, match="--max-batch-tokens 100 is less than the 512 tokens"):
        check_batch_tokens(100, 512)
