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

`OpenAIPolicy.generate_many` sends many episodes' requests concurrently (at most
``max_concurrency`` in flight), each with its own ``seed``, and answers them in request order.
`OpenAIPolicy.for_episode` gives the per-episode view whose calls are numbered 1, 2, … on top of a
seed derived from (policy seed, env, variant seed, index, sample), so a seeded vLLM server
repeats an episode's draws.

Dynamic LoRA adapters (``vllm serve BASE --enable-lora`` with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``): `load_lora_adapter` registers an adapter under a name,
and `OpenAIPolicy.with_model` gives a policy that asks for that name as its model.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import httpx

from rewardlab.data.pair import Message
from rewardlab.policies.base import (
    CONTEXT_LIMIT,
    ContextLimitError,
    Generation,
    GenerationRequest,
    PolicyError,
    SamplingSettings,
    check_sample_request,
    continuation_prefix,
    cut_at_stop,
    sample_seed,
    text_or_raise,
)

PREFILL_MODES = ("continue", "none")
_CONTEXT_OVERFLOW = re.compile(r"maximum context length|context length|context window|too many tokens|prompt is too long",
                               re.IGNORECASE)
"""How vLLM, llama.cpp and OpenAI word a 400 for a prompt that does not fit the model's context."""
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_SEED_MODULUS = 2**31
"""Seeds sent to the server are reduced modulo this (vLLM and OpenAI take a 32-bit signed seed)."""


def _auth_headers(api_key_env: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _one_line(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


def load_lora_adapter(base_url: str, name: str, path: str, *, api_key_env: str = "OPENAI_API_KEY",
                      timeout: float = 300) -> None:
    """Load the LoRA adapter at ``path`` (on the server's machine) into a vLLM server as model ``name``.

    ``base_url`` is the server's ``/v1`` URL. An adapter already loaded under ``name`` counts as
    success. The server must run with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``.
    """
    url = f"{base_url.rstrip('/')}/load_lora_adapter"
    try:
        response = httpx.post(url, json={"lora_name": name, "lora_path": path}, headers=_auth_headers(api_key_env),
                              timeout=timeout)
    except httpx.HTTPError as error:
        raise PolicyError(f"{url} could not be reached to load LoRA adapter {name!r}: "
                          f"{type(error).__name__}: {error}") from error
    if 200 <= response.status_code < 300:
        return
    text = response.text
    if response.status_code == 400 and "already been loaded" in text:
        return
    message = (f"{url} answered HTTP {response.status_code} loading LoRA adapter {name!r} from {path!r}: "
               f"{_one_line(text)}")
    if response.status_code == 404:
        message += ("; the server has no runtime LoRA loading: start it with `vllm serve BASE --enable-lora` "
                    "and the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
    raise PolicyError(message)


def finish_reason_of(text: str, stop: list[str], finish_reason: Any) -> str | None:
    """Map the server's ``finish_reason`` to `FINISH_REASONS`: a stop is ``stop`` when ``text`` ends
    with a stop string and ``eos`` otherwise; ``length`` is kept; anything else is None."""
    if finish_reason == "stop":
        return "stop" if any(text.endswith(marker) for marker in stop if marker) else "eos"
    if finish_reason == "length":
        return "length"
    return None


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
                 timeout_seconds: float = 300.0, prefill: str = "continue", seed: int = 0) -> None:
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
        self.seed = seed
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_seconds = timeout_seconds
        self._headers = _auth_headers(api_key_env)
        self._client = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout_seconds)
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def with_model(self, name: str) -> OpenAIPolicy:
        """The same settings (and API key) asking for model ``name``, e.g. a LoRA adapter loaded with
        `load_lora_adapter`; it has its own connection pool and concurrency limit."""
        other = OpenAIPolicy(name, self.base_url, api_key_env=self.api_key_env, max_tokens=self.max_tokens,
                             temperature=self.temperature, max_concurrency=self.max_concurrency,
                             max_retries=self.max_retries, backoff_seconds=self.backoff_seconds,
                             timeout_seconds=self.timeout_seconds, prefill=self.prefill, seed=self.seed)
        other._headers = dict(self._headers)  # this policy's key, even if the variable changed since
        other._client.headers = other._headers
        return other

    def for_episode(self, hints: Mapping[str, Any]) -> _SeededOpenAI:
        """The per-episode view: its calls send seeds derived from the episode, so reruns repeat."""
        identity = (self.seed, hints.get("env"), hints.get("seed"), hints.get("index"))
        if hints.get("sample"):  # repeated episodes of one variant (as `HFPolicy.for_episode`)
            identity = (*identity, hints["sample"])
        return _SeededOpenAI(self, zlib.crc32(repr(identity).encode("utf-8")))

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
            if response.status_code == 400 and _CONTEXT_OVERFLOW.search(response.text):
                raise ContextLimitError(f"{self.base_url}/chat/completions: the transcript no longer fits the "
                                        f"model's context ({response.text[:300]})")
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
        """The assistant message for ``messages``, cut after the first stop string (no seed is sent)."""
        return self._generation(messages, stop, None).text

    def generate_many(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One `Generation` per request, in request order; the requests are sent concurrently (at most
        ``max_concurrency`` at once), each with ``seed = request.seed % 2**31``.

        If any request fails, the ones not yet started are cancelled and, once the running ones
        have finished, the first failure is raised (a `PolicyError`).
        """
        if not requests:
            return []
        if len(requests) == 1:
            return [self._generation_or_limit(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests)),
                                thread_name_prefix="openai-policy") as pool:
            futures = [pool.submit(self._generation_or_limit, request) for request in requests]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [future for future in futures if future in done and future.exception() is not None]
            if failed:
                for future in pending:
                    future.cancel()
                wait(pending)
                raise failed[0].exception()
            return [future.result() for future in futures]

    def _generation_or_limit(self, request: GenerationRequest) -> Generation:
        """`_generation`, with a context overflow answered as a `Generation` whose finish reason says so."""
        try:
            return self._generation(request.messages, request.stop, request.seed)
        except ContextLimitError:
            return Generation(continuation_prefix(request.messages), CONTEXT_LIMIT)

    def _generation(self, messages: list[Message], stop: list[str], seed: int | None) -> Generation:
        """The one request behind `generate` and `generate_many` (``seed=None`` sends no seed)."""
        body = self.request_body(messages, stop)
        if seed is not None:
            body["seed"] = seed % _SEED_MODULUS
        payload = self._post(body)
        try:
            choice = payload["choices"][0]
            content = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as error:
            raise PolicyError(f"unexpected chat/completions response {str(payload)[:300]}: {error!r}") from error
        content = restore_stop(content, stop, choice.get("finish_reason"), choice.get("stop_reason"))
        prefix = continuation_prefix(messages)
        full = prefix + content if (prefix and self.prefill == "continue") else content
        text = cut_at_stop(full, stop)
        return Generation(text, finish_reason_of(text, stop, choice.get("finish_reason")))

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


class _SeededOpenAI:
    """Per-episode view of an `OpenAIPolicy`: call ``n`` of the episode sends seed ``base + n``.

    ``request`` numbers calls exactly as ``generate`` does, so an episode can be driven either one
    call at a time or through the policy's `OpenAIPolicy.generate_many`.
    """

    def __init__(self, policy: OpenAIPolicy, seed: int) -> None:
        self._policy = policy
        self._seed = seed
        self._calls = 0

    @property
    def policy(self) -> OpenAIPolicy:
        """The shared policy (whose `generate_many` answers this view's requests)."""
        return self._policy

    def request(self, messages: list[Message], stop: list[str]) -> GenerationRequest:
        """The next call of the episode as a `GenerationRequest` (for `OpenAIPolicy.generate_many`)."""
        self._calls += 1
        return GenerationRequest(list(messages), list(stop), self._seed + self._calls)

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        """The next call of the episode, sent with its seed."""
        request = self.request(messages, stop)
        return text_or_raise(self._policy.generate_many([request])[0])
