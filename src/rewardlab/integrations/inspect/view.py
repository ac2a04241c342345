"""`serve_view`: Inspect's log viewer (``inspect view``) on a loopback port, for a folder of logs.

Used by ``scripts/inspect_view_screenshot.py`` and the tests that open an exported log in a real browser.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx

_HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((_HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_view(log_dir: Path, *, port: int | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Run ``inspect view --log-dir LOG_DIR`` on loopback until the block ends; yields its base URL."""
    port = port or free_port()
    process = subprocess.Popen([sys.executable, "-m", "inspect_ai", "view", "--log-dir", str(log_dir), "--host", _HOST,
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://{_HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise RuntimeError(f"inspect view exited with status {process.returncode}: {output[-2000:]}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"inspect view did not answer on {url} within {timeout:g} s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def sample_url(base: str, log_file: str, sample_id: str, *, epoch: int = 1, tab: str = "messages") -> str:
    """The viewer's page of one sample (``tab``: transcript, messages, scoring, info or json)."""
    return f"{base}/#/logs/{quote(log_file)}/samples/sample/{quote(sample_id)}/{epoch}/{tab}"
