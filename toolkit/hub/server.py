"""Embedded Hugging Face Hub-compatible HTTP server (starlette request/response objects, uvicorn).

Point ``HF_ENDPOINT`` (and ``HF_HUB_DISABLE_XET=1``) at it and ``huggingface_hub``, ``datasets`` and
the ``hf`` CLI work unmodified. Auth (auth.py): tokens given at start, ``name -> (token, role[, orgs])``;
a write token writes only in its own namespace and its orgs, private repos are visible only to their
namespace's tokens. With NO tokens configured the server is open: anyone may read and write (fine on
loopback, don't expose it) but it runs no jobs. Request bodies are read only after the auth checks,
within limits. Every request's ``Host`` and every write's ``Origin`` are checked (guard.py).

Example::

    from huggingface_hub import HfApi
    with HubServer("/tmp/hub", tokens={"alice": ("hf_alice", "write")}) as hub:
        api = HfApi(endpoint=hub.url, token="hf_alice")
        api.create_repo("alice/demo", repo_type="dataset")
"""
from __future__ import annotations

import logging
import math
import re
import secrets
import socket
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote

import anyio.from_thread
import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..background import BackgroundServer, JsonH11Protocol
from . import guard, routes_api, routes_files, routes_jobs
from .auth import Auth, Identity
from .jobs import JobRunner
from .errors import HubError, repo_not_found
from .storage import Storage

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024 ** 2   # JSON / NDJSON request bodies (commits carry small files inline)
MAX_LFS_BYTES = 50 * 1024 ** 3     # one LFS object, like the Hub's per-file limit


class Ctx:
    """One parsed request: method, unquoted path segments, query, caller; the body is read on first use."""

    def __init__(self, app: "HubApp", request: Request, segments: list[str]):
        self.app, self.storage, self.request = app, app.storage, request
        self.method = request.method
        self.segments = segments
        self.query = parse_qs(request.scope.get("query_string", b"").decode("utf-8", "replace"))
        self.base_url = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        self.identity: Identity | None = app.auth.identify(request.headers.get("authorization"))
        self.user = self.identity.name if self.identity else None
        self._body: bytes | None = None

    def q(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        return self.q(name).lower() in ("1", "true", "yes")

    @property
    def body(self) -> bytes:
        """The whole body (read from a worker thread, after the caller's auth checks)."""
        if self._body is None:
            self._body = anyio.from_thread.run(self.app.read_body, self.request)
        return self._body

    # -------------------------------------------------------------- access checks
    def can_read(self, repo_type: str, repo_id: str) -> dict:
        """Repo metadata if this request may see the repo, else 404 RepoNotFound (like the Hub)."""
        meta = self.storage.meta(repo_type, repo_id)
        if meta["private"] and not self.may_see(repo_id.split("/")[0]):
            raise repo_not_found(repo_id)
        return meta

    def may_see(self, namespace: str) -> bool:
        """Whether private repos of ``namespace`` are visible to this request."""
        return self.app.auth.open or (self.identity is not None and self.identity.member_of(namespace))

    def need_write(self, what: str, namespace: str | None = None) -> None:
        """401/403 unless this request may write (in ``namespace`` when given)."""
        if self.app.auth.open:
            return
        if self.identity is None:
            raise HubError(401, f"Unauthorized: {what} needs a write token (pass token=... or set HF_TOKEN)")
        if self.identity.role != "write":
            raise HubError(403, f"Forbidden: {what} needs a write token, but the token of "
                                f"{self.user!r} is read-only")
        if namespace is not None and not self.identity.member_of(namespace):
            raise HubError(403, f'Forbidden: {what}: you don\'t have the rights to write under the '
                                f'namespace "{namespace}"')

    def can_write(self, repo_type: str, repo_id: str, what: str) -> dict:
        """Repo metadata if this request may write to the repo: 404 if unseen, else 401/403."""
        meta = self.can_read(repo_type, repo_id)
        self.need_write(what, repo_id.split("/")[0])
        return meta


_UNSAFE = re.compile(r"[^\x20-\x7e]")


def error_response(e: HubError) -> Response:
    message = e.message.encode("utf-8", "backslashreplace").decode()  # lone surrogates from JSON input
    headers = {"X-Error-Message": _UNSAFE.sub("?", message)[:1000]}  # no control chars in headers
    if e.code:
        headers["X-Error-Code"] = e.code
    return JSONResponse({**e.extra, "error": message}, status_code=e.status, headers=headers)


def _with_date(send):
    """``send`` that adds an exact ``Date`` header (uvicorn's is refreshed once a second, so it
    lags by up to two: ``fetch_job_logs`` stops at Date + 1 s and would miss the newest lines)."""
    async def wrapped(message):
        if message["type"] == "http.response.start":
            date = formatdate(math.ceil(time.time()), usegmt=True).encode()
            message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
        await send(message)
    return wrapped


class HubApp:
    """The ASGI application: auth, path parsing, dispatch to routes_api / routes_jobs / routes_files."""

    def __init__(self, root, tokens: dict | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 max_lfs_bytes: int = MAX_LFS_BYTES, max_running_jobs: int = 2, host: str = "127.0.0.1",
                 allowed_hosts=(), jobs: str = "sandbox", job_paths=None):
        self.storage = Storage(root)
        self.auth = Auth(tokens)
        self.host, self.allowed_hosts = host, tuple(allowed_hosts)
        self.jobs = JobRunner(Path(root) / "jobs", max_running=max_running_jobs, mode=jobs,
                              data_paths=job_paths)              # HF Jobs (jobs.py)
        self.max_body_bytes, self.max_lfs_bytes = max_body_bytes, max_lfs_bytes
        self.secret = secrets.token_bytes(32)  # signs LFS upload URLs

    async def read_body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, 413 beyond ``limit`` (default ``max_body_bytes``; checked before and
        while reading)."""
        limit = limit or self.max_body_bytes
        too_large = HubError(413, f"Request body too large: the limit is {limit} bytes")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_large
        chunks, got = [], 0
        async for chunk in request.stream():
            got += len(chunk)
            if got > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        send = _with_date(send)
        request = Request(scope, receive)
        raw = scope.get("raw_path") or scope["path"].encode()
        segments = [unquote(s) for s in raw.decode("latin-1").split("?")[0].split("/")[1:]]
        try:
            guard.check(request.method, request.headers, self.host, self.allowed_hosts)
            response = await self.dispatch(Ctx(self, request, segments))
        except HubError as e:
            response = error_response(e)
        except ClientDisconnect:
            logger.info("client disconnected during %s %s: nothing applied", request.method,
                        scope["path"][:200].encode("unicode_escape").decode())
            return
        except Exception:
            logger.exception("internal error on %s %r", request.method, scope["path"][:200])
            response = JSONResponse({"error": "Internal server error"}, status_code=500)
        await response(scope, receive, send)

    async def dispatch(self, ctx: Ctx) -> Response:
        seg = ctx.segments
        if seg[:1] == ["lfs-upload"] and ctx.method == "PUT":
            return await routes_files.lfs_upload(ctx)
        if seg[:2] == ["api", "jobs"]:
            return await run_in_threadpool(routes_jobs.handle, ctx)
        if seg[:1] == ["api"]:
            return await run_in_threadpool(routes_api.handle, ctx)
        return await run_in_threadpool(routes_files.handle, ctx)


def endpoint(host: str, port: int) -> str:
    """The URL a local client (a job) uses for a server bound to ``host``:``port``."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HubServer(BackgroundServer):
    """Serve a Hub-compatible API from ``root`` in a background thread (see module docstring)."""

    def __init__(self, root, host: str = "127.0.0.1", port: int = 0, tokens: dict | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES, max_lfs_bytes: int = MAX_LFS_BYTES, **options):
        self.root = Path(root)
        self.app = HubApp(self.root, tokens, max_body_bytes, max_lfs_bytes, host=host, **options)
        super().__init__(self.app, host, port, date_header=False)   # HubApp sends an exact Date

    @property
    def url(self) -> str:
        return endpoint(self.host, self.port)

    def start(self, timeout: float = 30):
        super().start(timeout)
        self.app.jobs.endpoint = self.url        # a job's HF_ENDPOINT: this Hub
        return self

    def stop(self) -> None:
        self.app.jobs.close()                    # no job outlives its Hub
        super().stop()


def serve(root, host: str = "127.0.0.1", port: int = 8000, tokens: dict | None = None,
          max_body_bytes: int = MAX_BODY_BYTES, max_lfs_bytes: int = MAX_LFS_BYTES, **options) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (``qup hub serve``); its jobs are
    cancelled on the way out (and die with it on SIGKILL: see sandbox.py)."""
    app = HubApp(root, tokens, max_body_bytes, max_lfs_bytes, host=host, **options)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))                      # bound here: --port 0 gets its real port
    port = sock.getsockname()[1]
    app.jobs.endpoint = endpoint(host, port)
    mode = f"{len(app.auth.by_token)} token(s)" if not app.auth.open else "OPEN (no tokens: anyone may write)"
    why = app.jobs.refusal({i.name for i in app.auth.by_token.values()})
    logger.info("qup hub serving %s on %s, %s; jobs: %s", Path(root).resolve(), endpoint(host, port), mode,
                "off (open Hub)" if app.auth.open else why or app.jobs.mode)
    config = uvicorn.Config(app, log_level="info", lifespan="off", http=JsonH11Protocol, date_header=False)
    try:
        _Server(config).run(sockets=[sock])
    finally:
        app.jobs.close()


class _Server(uvicorn.Server):
    """uvicorn's server, cancelling the Hub's jobs when it stops (SIGINT/SIGTERM): uvicorn re-raises
    the signal after its shutdown, so a ``finally`` after ``run()`` would not run on SIGTERM."""

    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets)
        await run_in_threadpool(self.config.app.jobs.close)
