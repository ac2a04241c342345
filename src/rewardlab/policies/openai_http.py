"""OpenAI-compatible chat/completions policy (vLLM, llama.cpp server, hosted APIs).

The key comes from an environment variable (``OPENAI_API_KEY`` by default; optional for local
servers). Requests retry with exponential backoff on connection errors, 429 and 5xx, honouring
``Retry-After``; a semaphore caps concurrent requests.

Assistant openings (the episode's ``<cot>``): with ``prefill="continue"`` (default) the final
assistant message is sent with vLLM's ``continue_final_message=true, add_generation_prompt=false``
and the reply is appended to it; ``prefill="none"`` drops the opening for servers that reject
those fields (the reply is then a fresh message).

`OpenAIPolicy.sample` asks for K replies in one request (``n=K``, as vLLM and OpenAI accept), with
the settings' temperature, top-p, max tokens and a seed derived from (settings.seed, messages,
start), so a repeated request to a seeded vLLM server draws the same samples.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from typing import Any

import httpx

from rewardlab.data.pair import Message
from rewardlab.policies.base import (
    PolicyError,
    SamplingSettings,
    check_sample_request,
    continuation_prefix,
    cut_at_stop,
    sample_seed,
)

PREFILL_MODES = ("continue", "none")
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def restore_stop(text: str, stop: list[str], finish_reason: str | None, stop_reason: Any) -> str:
    """Put back the stop string that OpenAI-style servers strip from the reply.

    vLLM reports the matched string as ``stop_reason``; otherwise, when generation ended on a stop,
    a closing tag stop (``</bash>``) is restored if its opening tag is left unclosed.
    """
    if any(text.endswith(marker) for marker in stop if marker):
        return text
    if isinstance(stop_reason, str) and stop_reason in stop:
        return text + stop_reason
    if finish_reason == "stop":
        for marker in stop:
            tag = re.fullmatch(r"</([A-Za-z_][\w-]*)>", marker)
            if tag and text.rfind(f"<{tag.group(1)}>") > text.rfind(marker):
                return text + marker
    return text


class OpenAIPolicy:
    """Chat completions from ``{base_url}/chat/completions`` with model ``model``."""

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", *,
                 api_key_env: str = "OPENAI_API_KEY", max_tokens: int = 1024, temperature: float = 1.0,
                 max_concurrency: int = 8, max_retries: int = 5, backoff_seconds: float = 1.0,
                 timeout_seconds: float = 300.0, prefill: str = "continue") -> None:
        if prefill not in PREFILL_MODES:
            raise PolicyError(f"prefill must be one of {', '.join(PREFILL_MODES)}, got {prefill!r}")
        if max_concurrency < 1:
            raise PolicyError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.prefill = prefill
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_seconds)
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def request_body(self, messages: list[Message], stop: list[str]) -> dict[str, Any]:
        """The JSON body sent for ``messages``."""
        prefix = continuation_prefix(messages)
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature}
        if stop:
            body["stop"] = list(stop)
        if prefix and self.prefill == "continue":
            body.update(messages=messages, continue_final_message=True, add_generation_prompt=False)
        elif prefix:
            body["messages"] = messages[:-1]
        else:
            body["messages"] = messages
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last_problem = ""
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                retry_after = None
            try:
                with self._slots:
                    response = self._client.post("/chat/completions", json=body)
            except httpx.TransportError as error:
                last_problem = f"{type(error).__name__}: {error}"
                continue
            if response.status_code in _RETRY_STATUS:
                last_problem = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise PolicyError(f"{self.base_url}/chat/completions answered HTTP {response.status_code}: "
                                  f"{response.text[:500]}")
            try:
                return response.json()
            except ValueError as error:
                raise PolicyError(f"{self.base_url}/chat/completions returned invalid JSON: {error}") from error
        raise PolicyError(f"{self.base_url}/chat/completions failed after {self.max_retries + 1} attempts "
                          f"(last problem: {last_problem})")

    def _delay(self, attempt: int, hinted: str | None) -> float:
        if hinted:
            try:
                return min(60.0, max(0.0, float(hinted)))
            except ValueError:
                pass
        return self.backoff_seconds * (2 ** (attempt - 1)) * (1 + random.random() * 0.25)

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        """The assistant message for ``messages``, cut after the first stop string."""
        payload = self._post(self.request_body(messages, stop))
        try:
            choice = payload["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as error:
            raise PolicyError(f"unexpected chat/completions response {str(payload)[:300]}: {error!r}") from error
        content = restore_stop(content, stop, choice.get("finish_reason"), choice.get("stop_reason"))
        prefix = continuation_prefix(messages)
        full = prefix + content if (prefix and self.prefill == "continue") else content
        return cut_at_stop(full, stop)

    def sample_body(self, messages: list[Message], k: int, settings: SamplingSettings, *,
                    start: int = 0) -> dict[str, Any]:
        """The JSON body of the one request `sample` sends."""
        body = self.request_body(messages, [])
        seed = sample_seed(settings, json.dumps(messages, sort_keys=True, ensure_ascii=False), start, bits=31)
        body.update(n=k, max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                    top_p=settings.top_p, seed=seed)
        return body

    def sample(self, messages: list[Message], k: int, settings: SamplingSettings, *, start: int = 0) -> list[str]:
        """Samples ``start`` … ``start + k - 1`` of the prompt from one ``n=k`` request, in choice order."""
        check_sample_request(k, start)
        payload = self._post(self.sample_body(messages, k, settings, start=start))
        try:
            choices = sorted(payload["choices"], key=lambda choice: choice.get("index", 0))
            contents = [choice["message"].get("content") or "" for choice in choices]
        except (KeyError, TypeError, AttributeError) as error:
            raise PolicyError(f"unexpected chat/completions response {str(payload)[:300]}: {error!r}") from error
        if len(contents) != k:
            raise PolicyError(f"{self.base_url}/chat/completions returned {len(contents)} choices for n={k}; "
                              "the server may not support n (vLLM and OpenAI do)")
        prefix = continuation_prefix(messages)
        continuing = bool(prefix) and self.prefill == "continue"
        return [prefix + content if continuing else content for content in contents]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
