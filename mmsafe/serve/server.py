"""Run an ASGI app with uvicorn on 127.0.0.1: in the foreground (the CLI) or in a background thread (tests,
benchmarks), on a free port."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Wait until ``url`` answers 200, raising ``RuntimeError`` if ``process`` (the server) exits or time runs
    out. Send the process's output to a file, not a pipe: a chatty server blocks once a pipe nobody reads is full."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before answering {url}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)


def _config(app: Any, host: str, port: int, graceful_s: float) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=graceful_s)


def serve(app: Any, host: str = HOST, port: int = 8000, graceful_s: float = 1.0) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM); requests in flight then get up to ``graceful_s`` seconds to
    finish (the default 1 s: a stalled request in fault mode must not hold shutdown for its whole stall)."""
    import uvicorn

    uvicorn.Server(_config(app, host, port, graceful_s)).run()


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` from a thread on a free port; ``server.url`` is its
    base URL (``http://127.0.0.1:PORT``)."""

    def __init__(self, app: Any, host: str = HOST, port: int = 0, start_timeout_s: float = 120.0,
                 graceful_s: float = 1.0) -> None:
        import uvicorn

        self.server = uvicorn.Server(_config(app, host, port, graceful_s))
        self.host, self.start_timeout_s = host, start_timeout_s
        self.thread = threading.Thread(target=self.server.run, name="mmsafe-serve", daemon=True)
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see its log above)")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
