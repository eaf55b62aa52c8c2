"""Embedded Hugging Face Hub-compatible HTTP server (starlette app run by uvicorn)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def _whoami(request):
    return JSONResponse({"type": "user", "name": "anonymous", "auth": {}})


class HubServer:
    """Serve a Hub-compatible API from ``root`` in a background thread."""

    def __init__(self, root, host: str = "127.0.0.1", port: int = 0,
                 tokens: dict[str, tuple[str, str]] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.tokens = host, port, dict(tokens or {})
        self.app = Starlette(routes=[Route("/api/whoami-v2", _whoami)])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HubServer":
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
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

    def __exit__(self, *exc):
        self.stop()


def serve(root, host: str = "127.0.0.1", port: int = 8000, tokens=None) -> None:
    """Run the server in the foreground until interrupted."""
    server = HubServer(root, host, port, tokens)
    uvicorn.run(server.app, host=host, port=port, log_level="info")
