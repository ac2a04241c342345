"""Run the reward server: in the foreground for `rewardlab serve`, or on a background thread.

Both forms bind the listening socket themselves before anything else (port 0 picks a free port
with no race), so a port in use or an address of another machine is a one-line `ServeConfigError`
before the model loads, and the "serving on ..." banner names a port that is really held. The
background form returns only once uvicorn accepts connections; tests and the load benchmark use it.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from rewardlab.scoring import RewardScorer
from rewardlab.serve.app import create_app
from rewardlab.serve.config import ServeConfig, ServeConfigError, exposure_warning

STARTUP_TIMEOUT_S = 60.0


def _uvicorn_config(app: FastAPI, config: ServeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=False,
        lifespan="on",
    )


_BIND_HINTS = {
    errno.EADDRINUSE: "the port is already in use (another server?); stop it or pick another with --port",
    errno.EACCES: "permission denied (ports below 1024 need privileges); pick another with --port",
    errno.EADDRNOTAVAIL: "that address does not belong to this machine; check --host",
}


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), or a `ServeConfigError` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: lets a restarted server reuse a port whose old connections linger in
        # TIME_WAIT; it does not let two servers listen on one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        reason = _BIND_HINTS.get(error.errno or 0, error.strerror or str(error))
        raise ServeConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def run_server(model_dir: str | Path, config: ServeConfig, *, device: str | None = None) -> None:
    """Load the reward model in ``model_dir`` and serve it until Ctrl-C or SIGTERM (a clean stop).

    The socket is bound first: a port in use fails at once, before the (maybe slow) model load.
    """
    warning = exposure_warning(config.host)
    if warning:
        print(warning, file=sys.stderr)
    sock = bind_socket(config.host, config.port)
    try:
        _load_and_serve(model_dir, config, device, sock)
    finally:
        sock.close()
    print("reward server stopped", file=sys.stderr)


def _load_and_serve(model_dir: str | Path, config: ServeConfig, device: str | None, sock: socket.socket) -> None:
    scorer = RewardScorer.from_pretrained(model_dir, device=device)
    max_tokens = config.max_tokens or scorer.max_length
    positions = getattr(scorer.model.causal_lm.config, "max_position_embeddings", None)
    if positions is not None and max_tokens > positions:
        print(
            f"warning: --max-tokens {max_tokens} is more than the model's {positions} positions; "
            "texts that long may score badly or fail",
            file=sys.stderr,
        )
    app = create_app(scorer, config)
    auth = "bearer token required" if config.token else "no authentication"
    print(
        f"serving {model_dir} on {_url(sock)} "
        f"(POST /get_reward, POST /score, GET /health, GET /metrics; {auth}; "
        f"max batch {config.max_batch} texts / {app.state.max_batch_tokens} tokens, wait {config.max_wait_ms} ms, "
        f"queue {config.max_queue} requests, max {max_tokens} tokens per text ({app.state.overlength}))",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.Server(_uvicorn_config(app, config)).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn finished open requests and shut down; Ctrl-C is the normal way to stop


class BackgroundServer:
    """The reward server on a background thread, for use as a context manager.

    ``url`` is ``http://host:port`` with the port actually bound (``config.port=0`` picks a free one).
    """

    def __init__(self, scorer: RewardScorer, config: ServeConfig) -> None:
        self._config = config
        self.app = create_app(scorer, config)
        """The FastAPI app being served (its ``state`` holds the metrics and the batcher)."""
        self._server = uvicorn.Server(_uvicorn_config(self.app, config))
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None
        self.url = ""

    def start(self) -> "BackgroundServer":
        """Bind, start the thread and wait until the server accepts connections."""
        sock = bind_socket(self._config.host, self._config.port)
        self._socket = sock
        self.url = _url(sock)
        self._thread = threading.Thread(target=self._serve, name="rewardlab-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if self._failure is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"the reward server failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the reward server did not start within {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        return self

    def _serve(self) -> None:
        try:
            assert self._socket is not None
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # reported to the starting thread
            self._failure = error

    def stop(self) -> None:
        """Ask uvicorn to finish open requests and exit; wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
