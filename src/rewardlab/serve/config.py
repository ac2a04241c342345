"""Settings of the reward server: where it listens, how it batches and which requests it refuses."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from rewardlab.errors import RewardlabError

OVERLENGTH_POLICIES = ("truncate", "reject")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_MAX_QUEUE = 256


class ServeConfigError(RewardlabError, ValueError):
    """A server setting that cannot work (named in the message)."""


@dataclass(frozen=True)
class ServeConfig:
    """Everything the app and the runner need besides the model.

    ``max_tokens=None`` means "the model's own ``max_length``". ``max_batch_tokens`` caps the tokens of
    one forward pass (summed over its texts; None: only ``max_batch`` limits a batch). ``max_queue``
    is how many scoring requests may be in the server at once (being read, tokenized, waiting or
    scored); one more gets 503 with ``Retry-After``. ``overlength`` decides what happens
    to a text longer than that: ``truncate`` keeps its last ``max_tokens`` tokens (the reward is read
    at the end of the text, so the end must survive) and says so in the response; ``reject`` answers
    400; None follows the model's saved ``truncation`` (``drop`` → reject, ``prompt-left`` → truncate). ``token`` is the bearer secret itself (never printed); None turns authentication off.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_texts: int = 1024
    max_tokens: int | None = None
    max_batch_tokens: int | None = None
    max_queue: int = DEFAULT_MAX_QUEUE
    overlength: str | None = None
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
                self.max_batch_tokens is None or self.max_batch_tokens >= 1,
                f"max_batch_tokens must be at least 1, got {self.max_batch_tokens}",
            ),
            (self.max_queue >= 1, f"max_queue must be at least 1, got {self.max_queue}"),
            (
                self.overlength is None or self.overlength in OVERLENGTH_POLICIES,
                f"overlength must be one of {', '.join(OVERLENGTH_POLICIES)}, got {self.overlength!r}",
            ),
            (0 <= self.port <= 65535, f"port must be between 0 and 65535, got {self.port}"),
            (self.token is None or self.token != "", "the bearer token is empty"),
        )
        for ok, message in checks:
            if not ok:
                raise ServeConfigError(message)


def check_batch_tokens(max_batch_tokens: int | None, max_tokens: int) -> None:
    """Refuse a token budget smaller than one text may be: such a text could never be scored."""
    if max_batch_tokens is not None and max_batch_tokens < max_tokens:
        raise ServeConfigError(
            f"--max-batch-tokens {max_batch_tokens} is less than the {max_tokens} tokens one text may have "
            "(--max-tokens, default the model's max_length); raise --max-batch-tokens or lower --max-tokens"
        )


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


def overlength_for(truncation: str) -> str:
    """The server's over-length policy that matches a model's saved ``truncation`` setting.

    A model trained with ``drop`` never saw a cut text, so the server refuses one rather than
    scoring it; ``prompt-left`` models were trained on cut prompts, so cutting is what they expect.
    """
    return "reject" if truncation == "drop" else "truncate"
