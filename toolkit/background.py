"""Run an ASGI app with uvicorn in a daemon thread: the shared base of our local servers.

Example:
    >>> with BackgroundServer(app) as server:                              # doctest: +SKIP
    ...     requests.get(server.url + "/health")
"""
from __future__ import annotations

import threading
import time

import uvicorn


class BackgroundServer:
    """``start()`` returns once the socket listens (``port=0`` picks a free port); ``stop()`` joins."""

    def __init__(self, asgi, host: str = "127.0.0.1", port: int = 0):
        self.asgi, self.host, self.port = asgi, host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30):
        config = uvicorn.Config(self.asgi, host=self.host, port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name=type(self).__name__)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"{type(self).__name__} could not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
