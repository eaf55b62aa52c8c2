"""Run an ASGI app with uvicorn in a daemon thread: the shared base of our local servers.

Example:
    >>> with BackgroundServer(app) as server:                              # doctest: +SKIP
    ...     requests.get(server.url + "/health")
"""
from __future__ import annotations

import json
import threading
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class JsonH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, except that a request it cannot parse (a raw control character
    in the request line, a broken header) gets a JSON 400 like every other error of our servers."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": msg, "error_type": "bad_request"}).encode()
        event = h11.Response(status_code=400, reason=b"Bad Request", headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")])
        for out in (event, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(out))
        self.transport.close()


class BackgroundServer:
    """``start()`` returns once the socket listens (``port=0`` picks a free port); ``stop()`` joins."""

    def __init__(self, asgi, host: str = "127.0.0.1", port: int = 0, **uvicorn_options):
        self.asgi, self.host, self.port = asgi, host, port
        self.uvicorn_options = uvicorn_options          # more uvicorn.Config keywords
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30):
        config = uvicorn.Config(self.asgi, host=self.host, port=self.port, log_level="warning",
                                lifespan="off", access_log=False, http=JsonH11Protocol, **self.uvicorn_options)
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
