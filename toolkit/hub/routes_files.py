"""File routes of the Hub server: ``/{repo}/resolve/{rev}/{path}`` and the git-LFS batch protocol.

LFS uploads (basic transfer): ``POST /{repo}.git/info/lfs/objects/batch`` answers, per missing
object, an ``upload`` href signed by the server (``PUT /lfs-upload/{oid}?size=&sig=``; the client
sends no token there; valid for an hour) and a ``verify`` href. Uploads stream into ``lfs/tmp`` and are moved to
``lfs/<sha256>`` only once size and sha256 match, so a dropped upload leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import time

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response, StreamingResponse

from .routes_api import PREFIX, json_body
from .storage import HubError

_OID_RE = re.compile(r"^[0-9a-f]{64}$")
LFS_JSON = "application/vnd.git-lfs+json"


def _repo_of(segments: list[str]) -> tuple[str, str, list[str]]:
    """(type, repo_id, rest) of ``[datasets|spaces/]ns/name/...`` paths."""
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(segments[0], "model")
    seg = segments[1:] if repo_type != "model" else segments
    if len(seg) < 3:
        raise HubError(404, f"Not found: /{'/'.join(segments)}")
    return repo_type, f"{seg[0]}/{seg[1]}", seg[2:]


def handle(ctx) -> Response:
    seg = ctx.segments
    if len(seg) >= 4 and seg[-4:-1] == ["info", "lfs", "objects"] and ctx.method == "POST":
        repo_type, repo_id, _ = _repo_of(seg)
        if not repo_id.endswith(".git"):
            raise HubError(404, "LFS routes live under /{repo}.git/info/lfs/")
        repo_id = repo_id[:-4]
        if seg[-1] == "batch":
            return lfs_batch(ctx, repo_type, repo_id)
        if seg[-1] == "verify":
            return lfs_verify(ctx, repo_type, repo_id)
    if ctx.method in ("GET", "HEAD"):
        repo_type, repo_id, rest = _repo_of(seg)
        if rest[:1] == ["resolve"] and len(rest) >= 3:
            return resolve(ctx, repo_type, repo_id, rest[1:])
    raise HubError(404, f"Not found: {ctx.method} /{'/'.join(seg)}")


# ---------------------------------------------------------------------------- resolve
def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single ``bytes=`` range, None for the whole file."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: last N bytes
        return max(0, size - int(m.group(2))), size - 1
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        raise HubError(416, f"Range {header} not satisfiable (size {size})")
    return start, end


def resolve(ctx, repo_type, repo_id, args) -> Response:
    from .routes_api import _split_rev
    ctx.can_read(repo_type, repo_id)
    rev, path = _split_rev(args)
    f = ctx.storage.read(repo_type, repo_id, rev, path)
    headers = {"X-Repo-Commit": f.commit, "Accept-Ranges": "bytes",
               "ETag": f'"{f.lfs_sha256 or f.blob_id}"', "Content-Type": "application/octet-stream"}
    if f.lfs_sha256:
        headers.update({"X-Linked-Etag": f'"{f.lfs_sha256}"', "X-Linked-Size": str(f.size)})
    try:
        rng = _range(ctx.request.headers.get("range"), f.size)
    except HubError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{f.size}"})
    start, end = rng or (0, f.size - 1)
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
    if ctx.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if f.content is not None:
        return Response(f.content[start:end + 1], status_code=status, headers=headers)

    def chunks(path=f.lfs_path, left=length):
        with open(path, "rb") as fh:
            fh.seek(start)
            while left > 0:
                data = fh.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                yield data
    return StreamingResponse(chunks(), status_code=status, headers=headers)


# ---------------------------------------------------------------------------- LFS
UPLOAD_URL_TTL = 3600  # seconds an LFS upload href stays valid


def _sign(ctx, oid: str, size: int, exp: int) -> str:
    return hmac.new(ctx.app.secret, f"{oid}:{size}:{exp}".encode(), hashlib.sha256).hexdigest()


def lfs_batch(ctx, repo_type, repo_id) -> Response:
    ctx.can_read(repo_type, repo_id)
    data = json_body(ctx)
    if data.get("operation") != "upload":
        raise HubError(422, "Only the 'upload' LFS operation is supported; download files via /resolve/")
    ctx.need_write(f"uploading LFS objects to {repo_id}")
    objects = []
    for obj in data.get("objects") or []:
        oid, size = obj.get("oid"), obj.get("size")
        if not isinstance(oid, str) or not _OID_RE.match(oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "oid must be a sha256 hex and size an int"}})
            continue
        item = {"oid": oid, "size": size, "authenticated": True}
        have = ctx.storage.lfs_object(oid)
        if not (have.is_file() and have.stat().st_size == size):
            verify = f"{ctx.base_url}/{PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/verify"
            exp = int(time.time()) + UPLOAD_URL_TTL
            sig = _sign(ctx, oid, size, exp)
            item["actions"] = {
                "upload": {"href": f"{ctx.base_url}/lfs-upload/{oid}?size={size}&exp={exp}&sig={sig}"},
                "verify": {"href": verify},
            }
        objects.append(item)
    return JSONResponse({"transfer": "basic", "objects": objects}, media_type=LFS_JSON)


def lfs_verify(ctx, repo_type, repo_id) -> Response:
    ctx.can_read(repo_type, repo_id)
    data = json_body(ctx)
    oid, size = str(data.get("oid")), data.get("size")
    have = ctx.storage.lfs_object(oid) if _OID_RE.match(oid) else None
    if have is None or not have.is_file() or have.stat().st_size != size:
        raise HubError(404, f"LFS object {oid} (size {size}) not found: upload it first")
    return JSONResponse({"success": True}, media_type=LFS_JSON)


async def lfs_upload(ctx) -> Response:
    """PUT /lfs-upload/{oid}?size=&exp=&sig=: stream, check sha256 and size, then move into place."""
    oid = ctx.segments[1] if len(ctx.segments) == 2 else ""
    try:
        size, exp = int(ctx.q("size")), int(ctx.q("exp"))
    except ValueError:
        raise HubError(400, "lfs-upload: missing or bad 'size'/'exp' in the upload URL") from None
    if not _OID_RE.match(oid) or exp < time.time() or \
            not hmac.compare_digest(ctx.q("sig"), _sign(ctx, oid, size, exp)):
        raise HubError(403, "lfs-upload: invalid or expired upload URL; ask the batch API again")
    final = ctx.storage.lfs_object(oid)
    fd, tmp = tempfile.mkstemp(dir=final.parent / "tmp", prefix=oid[:16] + ".")
    digest, got = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in ctx.request.stream():
                digest.update(chunk)
                got += len(chunk)
                if got > size:
                    raise HubError(400, f"lfs-upload: body is larger than the announced {size} bytes")
                fh.write(chunk)
        if got != size or digest.hexdigest() != oid:
            raise HubError(400, f"lfs-upload: received {got} bytes with sha256 {digest.hexdigest()}, "
                                f"expected {size} bytes with sha256 {oid}")
        os.replace(tmp, final)
    except (HubError, ClientDisconnect):
        os.unlink(tmp)
        raise
    return Response(status_code=200)

