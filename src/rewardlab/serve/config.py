"""Settings of the reward server: where it listens, how it batches and which requests it refuses."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from rewardlab.errors import RewardlabError

OVERLENGTH_POLICIES = ("truncate", "reject")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


class ServeConfigError(RewardlabError, ValueError):
    """A server setting that cannot work (named in the message)."""


@dataclass(frozen=True)
class ServeConfig:
    """Everything the app and the runner need besides the model.

    ``max_tokens=None`` means "the model's own ``max_length``". ``overlength`` decides what happens
    to a text longer than that: ``truncate`` keeps its last ``max_tokens`` tokens (the reward is read
    at the end of the text, so the end must survive) and says so in the response; ``reject`` answers
    400. ``token`` is the bearer secret itself (never printed); None turns authentication off.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_texts: int = 1024
    max_tokens: int | None = None
    overlength: str = "truncate"
    token: str | None = field(default=None, repr=False)
    log_level: str = "warning"

    def __post_init__(self) -> None:
        checks = (
            (self.max_batch >= 1, f"max_batch must be at least 1, got {self.max_batch}"),
            (self.max_wait_ms >= 0, f"max_wait_ms must be 0 or more, got {self.max_wait_ms}"),
            (self.max_body_bytes >= 1, f"max_body_bytes must be at least 1, got {self.max_body_bytes}"),
            (self.max_texts >= 1, f"max_texts must be at least 1, got {self.max_texts}"),
            (
                self.max_tokens is None or self.max_tokens >= 1,
                f"max_tokens must be at least 1, got {self.max_tokens}",
            ),
            (
                self.overlength in OVERLENGTH_POLICIES,
                f"overlength must be one of {', '.join(OVERLENGTH_POLICIES)}, got {self.overlength!r}",
            ),
            (0 <= self.port <= 65535, f"port must be between 0 and 65535, got {self.port}"),
            (self.token is None or self.token != "", "the bearer token is empty"),
        )
        for ok, message in checks:
            if not ok:
                raise ServeConfigError(message)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """The warning to print when the server would listen beyond loopback, else None."""
    if is_loopback(host):
        return None
    return (
        f"warning: the reward server listens on {host}, reachable from other machines; "
        "anyone who can reach it can score texts. Set a token with --token-env, or keep the default 127.0.0.1."
    )


def token_from_env(variable: str) -> str:
    """Read the bearer token from environment variable ``variable``; refuse an unset or empty one."""
    value = os.environ.get(variable)
    if value is None:
        raise ServeConfigError(f"--token-env {variable}: the environment variable {variable} is not set")
    if not value.strip():
        raise ServeConfigError(f"--token-env {variable}: the environment variable {variable} is empty")
    return value.strip()
