"""File routes of the Hub server: ``/{repo}/resolve/{rev}/{path}`` and the git-LFS batch protocol.

LFS uploads (basic transfer): ``POST /{repo}.git/info/lfs/objects/batch`` (write access to the repo)
answers, per object the repo does not hold yet, an ``upload`` href signed by the server for that repo
(``PUT /lfs-upload/{type}/{repo}/{oid}?size=&exp=&sig=``; the client sends no token there; valid for
an hour) and a ``verify`` href. Uploads stream into ``lfs/tmp`` and move into the repo's own
``lfs/`` only once size and sha256 match (lfs.py), so a dropped upload leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time

from starlette.responses import JSONResponse, Response, StreamingResponse

from . import lfs
from .errors import HubError
from .names import is_oid
from .routes_api import PREFIX, json_body

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
        return max(0, size - _offset(m.group(2))), size - 1
    start = _offset(m.group(1))
    end = min(_offset(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        raise HubError(416, f"Range {header} not satisfiable (size {size})")
    return start, end


def _offset(digits: str) -> int:
    """A Range offset; one past any file's size when longer than 18 digits (int() refuses ~4300)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10 ** 18


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


def _sign(ctx, repo_type: str, repo_id: str, oid: str, size: int, exp: int) -> str:
    msg = f"{repo_type}:{repo_id}:{oid}:{size}:{exp}".encode()
    return hmac.new(ctx.app.secret, msg, hashlib.sha256).hexdigest()


def lfs_batch(ctx, repo_type, repo_id) -> Response:
    ctx.can_write(repo_type, repo_id, f"uploading LFS objects to {repo_id}")
    data = json_body(ctx)
    if data.get("operation") != "upload":
        raise HubError(422, "Only the 'upload' LFS operation is supported; download files via /resolve/")
    if not isinstance(data.get("objects") or [], list):
        raise HubError(422, "LFS batch: 'objects' must be a list")
    lfs_dir, limit, objects = ctx.storage.lfs_dir(repo_type, repo_id), ctx.app.max_lfs_bytes, []
    for obj in data.get("objects") or []:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not is_oid(oid) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            objects.append({"oid": str(oid)[:100], "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "oid must be a sha256 hex and size an int"}})
            continue
        if size > limit:
            objects.append({"oid": oid, "size": size, "error": {
                "code": 413, "message": f"object of {size} bytes is larger than this server's limit ({limit})"}})
            continue
        item = {"oid": oid, "size": size, "authenticated": True}
        if not lfs.has_object(lfs_dir, oid, size):  # only this repo's objects count as present
            exp = int(time.time()) + UPLOAD_URL_TTL
            sig = _sign(ctx, repo_type, repo_id, oid, size, exp)
            item["actions"] = {
                "upload": {"href": f"{ctx.base_url}/lfs-upload/{repo_type}/{repo_id}/{oid}"
                                   f"?size={size}&exp={exp}&sig={sig}"},
                "verify": {"href": f"{ctx.base_url}/{PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/verify"},
            }
        objects.append(item)
    return JSONResponse({"transfer": "basic", "objects": objects}, media_type=LFS_JSON)


def lfs_verify(ctx, repo_type, repo_id) -> Response:
    ctx.can_write(repo_type, repo_id, f"verifying LFS objects of {repo_id}")
    data = json_body(ctx)
    oid, size = data.get("oid"), data.get("size")
    if not is_oid(oid) or not isinstance(size, int) or \
            not lfs.has_object(ctx.storage.lfs_dir(repo_type, repo_id), oid, size):
        raise HubError(404, f"LFS object {str(oid)[:100]} (size {size}) not found in {repo_id}: upload it first")
    return JSONResponse({"success": True}, media_type=LFS_JSON)


async def lfs_upload(ctx) -> Response:
    """PUT /lfs-upload/{type}/{ns}/{name}/{oid}?size=&exp=&sig=: stream, check, move into the repo."""
    seg = ctx.segments
    if len(seg) != 5:
        raise HubError(404, "lfs-upload: unknown upload URL; ask the batch API again")
    repo_type, repo_id, oid = seg[1], f"{seg[2]}/{seg[3]}", seg[4]
    try:
        size, exp = int(ctx.q("size")), int(ctx.q("exp"))
    except ValueError:
        raise HubError(400, "lfs-upload: missing or bad 'size'/'exp' in the upload URL") from None
    if not is_oid(oid) or exp < time.time() or not hmac.compare_digest(ctx.q("sig").encode(),
                                                    _sign(ctx, repo_type, repo_id, oid, size, exp).encode()):
        raise HubError(403, "lfs-upload: invalid or expired upload URL; ask the batch API again")
    ctx.storage.meta(repo_type, repo_id)  # not deleted since
    await lfs.receive(ctx.request.stream(), ctx.storage.tmp_dir, ctx.storage.lfs_dir(repo_type, repo_id),
                      oid, size)
    return Response(status_code=200)
