"""Embedded Hugging Face Hub-compatible HTTP server (starlette request/response objects, uvicorn).

Point ``HF_ENDPOINT`` (and ``HF_HUB_DISABLE_XET=1``) at it and ``huggingface_hub``, ``datasets`` and
the ``hf`` CLI work unmodified. Auth: tokens given at start (name -> (token, "read"|"write")); writes
need a write token, private repos are invisible without a valid token. With NO tokens configured
the server is open: anyone may read and write (fine on loopback, don't expose it).

Example::

    from huggingface_hub import HfApi
    with HubServer("/tmp/hub", tokens={"alice": ("hf_alice", "write")}) as hub:
        api = HfApi(endpoint=hub.url, token="hf_alice")
        api.create_repo("alice/demo", repo_type="dataset")
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote

import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..background import BackgroundServer
from . import routes_api, routes_files
from .storage import HubError, Storage, repo_not_found

logger = logging.getLogger(__name__)
ROLES = ("read", "write")


class Ctx:
    """One parsed request: method, unquoted path segments, query, auth, body."""

    def __init__(self, app: "HubApp", request: Request, segments: list[str]):
        self.app, self.storage, self.request = app, app.storage, request
        self.method = request.method
        self.segments = segments
        self.query = parse_qs(request.scope.get("query_string", b"").decode())
        self.base_url = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        self.body = b""
        self.user, self.role = app.authenticate(request.headers.get("authorization"))

    def q(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        return self.q(name).lower() in ("1", "true", "yes")

    # -------------------------------------------------------------- access checks
    def can_read(self, repo_type: str, repo_id: str) -> dict:
        """Repo metadata if this request may see the repo, else 404 RepoNotFound (like the Hub)."""
        meta = self.storage.meta(repo_type, repo_id)
        if meta["private"] and self.app.tokens and self.user is None:
            raise repo_not_found(repo_id)
        return meta

    def need_write(self, what: str) -> None:
        if not self.app.tokens:
            return  # open server
        if self.user is None:
            raise HubError(401, f"Unauthorized: {what} needs a write token (pass token=... or set HF_TOKEN)")
        if self.role != "write":
            raise HubError(403, f"Forbidden: {what} needs a write token, but the token of "
                                f"{self.user!r} is read-only")


def error_response(e: HubError) -> Response:
    headers = {"X-Error-Message": e.message.encode("ascii", "replace").decode()}
    if e.code:
        headers["X-Error-Code"] = e.code
    return JSONResponse({**e.extra, "error": e.message}, status_code=e.status, headers=headers)


class HubApp:
    """The ASGI application: auth, path parsing, dispatch to routes_api / routes_files."""

    def __init__(self, root, tokens: dict[str, tuple[str, str]] | None = None):
        self.storage = Storage(root)
        self.tokens = {}
        for name, (token, role) in (tokens or {}).items():
            if role not in ROLES:
                raise ValueError(f"token for {name!r}: role must be 'read' or 'write', got {role!r}")
            self.tokens[token] = (name, role)
        self.secret = secrets.token_bytes(32)  # signs LFS upload URLs

    def authenticate(self, header: str | None) -> tuple[str | None, str | None]:
        token = header.split(" ", 1)[1].strip() if header and " " in header else None
        if not self.tokens:
            return ("anonymous", "write") if token else (None, "write")
        if token is None:
            return None, None
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = scope.get("raw_path") or scope["path"].encode()
        segments = [unquote(s) for s in raw.decode("latin-1").split("?")[0].split("/")[1:]]
        try:
            ctx = Ctx(self, request, segments)
            response = await self.dispatch(ctx)
        except HubError as e:
            response = error_response(e)
        except ClientDisconnect:
            logger.info("client disconnected during %s %s: nothing applied", request.method, scope["path"])
            return
        except Exception:
            logger.exception("internal error on %s %s", request.method, scope["path"])
            response = JSONResponse({"error": "Internal server error"}, status_code=500)
        await response(scope, receive, send)

    async def dispatch(self, ctx: Ctx) -> Response:
        seg = ctx.segments
        if seg[:1] == ["lfs-upload"] and ctx.method == "PUT":
            return await routes_files.lfs_upload(ctx)
        if ctx.method in ("POST", "PUT", "DELETE"):
            ctx.body = await ctx.request.body()  # whole body first: a dropped client changes nothing
        if seg[:1] == ["api"]:
            return await run_in_threadpool(routes_api.handle, ctx)
        return await run_in_threadpool(routes_files.handle, ctx)


class HubServer(BackgroundServer):
    """Serve a Hub-compatible API from ``root`` in a background thread (see module docstring)."""

    def __init__(self, root, host: str = "127.0.0.1", port: int = 0,
                 tokens: dict[str, tuple[str, str]] | None = None):
        self.root = Path(root)
        self.app = HubApp(self.root, tokens)
        super().__init__(self.app, host, port)


def parse_tokens(specs: list[str] | None) -> dict[str, tuple[str, str]]:
    """``["alice=hf_x:write", ...]`` -> {"alice": ("hf_x", "write")}; ValueError names the bad spec."""
    out = {}
    for spec in specs or []:
        name, _, rest = spec.partition("=")
        token, _, role = rest.rpartition(":")
        if not name or not token or role not in ROLES:
            raise ValueError(f"--token expects NAME=TOKEN:read|write, got {spec.split('=')[0]}=***")
        out[name] = (token, role)
    return out


def serve(root, host: str = "127.0.0.1", port: int = 8000,
          tokens: dict[str, tuple[str, str]] | None = None) -> None:
    """Run the server in the foreground until interrupted (``qup hub serve``)."""
    app = HubApp(root, tokens)
    mode = f"{len(app.tokens)} token(s)" if app.tokens else "OPEN (no tokens: anyone may write)"
    logger.info("qup hub serving %s on http://%s:%d, %s", Path(root).resolve(), host, port, mode)
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
