"""The reward server's ASGI app: OpenRLHF ``/get_reward``, chat ``/score``, ``/health`` and ``/metrics``.

Request handling is split across three places so the event loop never does heavy work: body
parsing, validation and tokenization run on one preparation thread (tokenizers are not safe to
call from several threads at once), model forward passes run on the batcher's scoring thread,
and the event loop only moves bytes and futures.

Scoring requests pass one admission check on arrival, before their body is read: at most
``max_queue`` of them are in the server at once, and one more is answered 503 with ``Retry-After``
at once, so an overloaded server sheds load instead of letting every caller's latency (and the
memory of the bodies it holds) grow without bound.

No exception leaves the app: an unexpected one is logged and answered with a JSON 500, so the
client's keep-alive connection stays usable (Starlette's own 500 path re-raises to the server,
and uvicorn then drops the connection).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rewardlab.scoring import RewardScorer
from rewardlab.serve.batcher import BatcherClosedError, DynamicBatcher
from rewardlab.serve.config import ServeConfig, check_batch_tokens, overlength_for
from rewardlab.serve.encoding import EncodedBatch, encode_conversations, encode_texts
from rewardlab.serve.metrics import CONTENT_TYPE, ServerMetrics
from rewardlab.serve.protocol import RequestError, parse_json, parse_reward_request, parse_score_request

ENDPOINTS = ("/get_reward", "/score", "/health", "/metrics")
PUBLIC_ENDPOINTS = ("/health",)
RETRY_AFTER_S = 1
"""Seconds a caller refused with 503 (full queue) is asked to wait; a forward pass takes far less."""

logger = logging.getLogger("uvicorn.error")


def sigmoid(value: float) -> float:
    """The logistic function, written to stay finite for large |value|."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp_value = math.exp(value)
    return exp_value / (1.0 + exp_value)


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class _Admission:
    """Counts the scoring requests in the server and refuses one more than ``limit``."""

    def __init__(self, limit: int, metrics: ServerMetrics) -> None:
        self.limit = limit
        self.active = 0
        self._metrics = metrics

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one place while the request is handled; raise a 503 RequestError when none is free.

        Only the event loop calls this, so a plain counter needs no lock.
        """
        if self.active >= self.limit:
            self._metrics.observe_rejected_full()
            raise RequestError(
                503,
                f"the server is busy: {self.limit} requests are already queued (--max-queue); "
                f"retry after {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class _MetricsAndAuth:
    """ASGI middleware: checks the bearer token and counts every request by endpoint and status."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, token: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.token = token.encode("utf-8") if token else None

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token or b"")
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_and_note_status(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started_response = True
            await send(message)

        try:
            if self.token is not None and path not in PUBLIC_ENDPOINTS and not self._authorized(scope):
                response = _error_response(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')")
                await response(scope, receive, send_and_note_status)
            else:
                await self.app(scope, receive, send_and_note_status)
        except Exception as error:
            if started_response:
                raise  # half a response is out: only closing the connection can tell the client
            logger.error("unexpected error answering %s %s", scope.get("method"), path, exc_info=error)
            response = _error_response(500, f"internal error: {type(error).__name__}: {error}")
            await response(scope, receive, send_and_note_status)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - started)


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise RequestError(400, f"the Content-Length header is not a number: {declared!r}") from None
        if declared_size > limit:
            raise RequestError(
                413, f"the request body has {declared_size} bytes; the limit is {limit} (--max-body-bytes)"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body exceeds the limit of {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _checked_rewards(rewards: list[float], field: str) -> list[float]:
    for index, value in enumerate(rewards):
        if not math.isfinite(value):
            raise RequestError(500, f"the model produced a non-finite reward ({value}) for {field}[{index}]")
    return rewards


def create_app(scorer: RewardScorer, config: ServeConfig) -> FastAPI:
    """Build the reward server around a loaded scorer; batching starts with the app's lifespan."""
    if config.overlength is None:
        config = dataclasses.replace(config, overlength=overlength_for(scorer.truncation))
    max_tokens = config.max_tokens or scorer.max_length
    check_batch_tokens(config.max_batch_tokens, max_tokens)
    # Without a budget, the most one pass can hold anyway: the budget never binds.
    max_batch_tokens = config.max_batch_tokens or config.max_batch * max_tokens
    metrics = ServerMetrics()
    admission = _Admission(config.max_queue, metrics)
    batcher = DynamicBatcher(
        lambda sequences: scorer.score_token_ids(sequences, batch_size=len(sequences)),
        max_batch=config.max_batch,
        max_wait_s=config.max_wait_ms / 1000.0,
        max_batch_tokens=max_batch_tokens,
        padded=not getattr(scorer, "packing", False),
        metrics=metrics,
    )
    preparation: dict[str, ThreadPoolExecutor] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        preparation["pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardlab-prepare")
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            preparation.pop("pool").shutdown(wait=True)

    app = FastAPI(
        title="rewardlab reward server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.max_tokens = max_tokens
    app.state.max_batch_tokens = max_batch_tokens
    app.state.overlength = config.overlength
    app.state.admission = admission

    async def prepare(request: Request, work: Callable[[bytes], EncodedBatch]) -> EncodedBatch:
        """Read the body and run ``work`` on it off the loop, announced to the batcher meanwhile."""
        batcher.expect()
        try:
            raw = await _read_body(request, config.max_body_bytes)
            return await asyncio.get_running_loop().run_in_executor(preparation["pool"], work, raw)
        finally:
            batcher.arrived()  # no await between this and the batcher.score() that follows

    async def score(encoded: EncodedBatch, field: str) -> list[float]:
        if not encoded.token_ids:
            return []
        try:
            rewards = await batcher.score(encoded.token_ids)
        except BatcherClosedError as error:
            raise RequestError(503, str(error)) from None
        except RequestError:
            raise
        except Exception as error:  # a model failure answers 500 and leaves the server running
            raise RequestError(500, f"scoring failed: {type(error).__name__}: {error}") from None
        metrics.observe_truncated(len(encoded.truncated))
        return _checked_rewards(rewards, field)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, error: RequestError) -> JSONResponse:
        return _error_response(error.status, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error_response(error.status_code, str(error.detail), error.headers)

    # No handler for Exception here: Starlette would answer it and then re-raise it to uvicorn,
    # which closes the connection. `_MetricsAndAuth` answers it instead and keeps the connection.

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        def work(raw: bytes) -> EncodedBatch:
            parsed = parse_reward_request(parse_json(raw), max_texts=config.max_texts)
            return encode_texts(
                scorer.tokenizer, parsed.queries, max_tokens=max_tokens, overlength=config.overlength
            )

        with admission.admitted():
            encoded = await prepare(request, work)
            rewards = await score(encoded, "query")
        flags = encoded.truncated_flags
        return JSONResponse(
            {
                "rewards": rewards,
                "scores": [sigmoid(r) for r in rewards],
                "extra_logs": {
                    "truncated": [float(flag) for flag in flags],
                    "num_tokens": [float(len(ids)) for ids in encoded.token_ids],
                },
                "truncated": encoded.truncated,
            }
        )

    @app.post("/score")
    async def score_conversations(request: Request) -> JSONResponse:
        def work(raw: bytes) -> EncodedBatch:
            payload = parse_json(raw)
            conversations = parse_score_request(payload, max_texts=config.max_texts)
            return encode_conversations(
                scorer.tokenizer,
                conversations,
                max_tokens=max_tokens,
                overlength=config.overlength,
                single=isinstance(payload, dict),
            )

        with admission.admitted():
            encoded = await prepare(request, work)
            rewards = await score(encoded, "item")
        return JSONResponse(
            {
                "rewards": rewards,
                "scores": [sigmoid(r) for r in rewards],
                "truncated": encoded.truncated,
                "num_tokens": [len(ids) for ids in encoded.token_ids],
            }
        )

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "max_batch": config.max_batch,
                "max_batch_tokens": max_batch_tokens,
                "max_wait_ms": config.max_wait_ms,
                "max_texts": config.max_texts,
                "max_tokens": max_tokens,
                "max_body_bytes": config.max_body_bytes,
                "overlength": config.overlength,
                "auth": config.token is not None,
                "max_queue": config.max_queue,
                "queue_requests": admission.active,
                "queue_depth": batcher.queue_depth,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> PlainTextResponse:
        text = metrics.render(
            queue_depth=batcher.queue_depth,
            queue_requests=admission.active,
            max_queue=config.max_queue,
            max_batch=config.max_batch,
            max_batch_tokens=max_batch_tokens,
            # Counts of the scorer's own cuts and drops where this scorer keeps them.
            scorer_truncations=dict(getattr(scorer, "truncation_counts", {})),
        )
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    app.add_middleware(_MetricsAndAuth, metrics=metrics, token=config.token)
    return app

