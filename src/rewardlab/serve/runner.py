"""Run the reward server: in the foreground for `rewardlab serve`, or on a background thread.

The background form binds its socket before the server thread starts (port 0 picks a free port
with no race) and returns only once uvicorn accepts connections; tests and the load benchmark use it.
"""

from __future__ import annotations

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
from rewardlab.serve.config import ServeConfig, exposure_warning

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


def run_server(model_dir: str | Path, config: ServeConfig, *, device: str | None = None) -> None:
    """Load the reward model in ``model_dir`` and serve it until Ctrl-C or SIGTERM (a clean stop)."""
    warning = exposure_warning(config.host)
    if warning:
        print(warning, file=sys.stderr)
    scorer = RewardScorer.from_pretrained(model_dir, device=device)
    max_tokens = config.max_tokens or scorer.max_length
    positions = getattr(scorer.model.causal_lm.config, "max_position_embeddings", None)
    if positions is not None and max_tokens > positions:
        print(
            f"warning: --max-tokens {max_tokens} is more than the model's {positions} positions; "
            "texts that long may score badly or fail",
            file=sys.stderr,
        )
    auth = "bearer token required" if config.token else "no authentication"
    print(
        f"serving {model_dir} on http://{config.host}:{config.port} "
        f"(POST /get_reward, POST /score, GET /health, GET /metrics; {auth}; "
        f"max batch {config.max_batch}, wait {config.max_wait_ms} ms, "
        f"max {max_tokens} tokens per text ({config.overlength}))",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.Server(_uvicorn_config(create_app(scorer, config), config)).run()
    except KeyboardInterrupt:
        pass  # uvicorn finished open requests and shut down; Ctrl-C is the normal way to stop
    print("reward server stopped", file=sys.stderr)


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
        family = socket.AF_INET6 if ":" in self._config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._config.host, self._config.port))
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
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
