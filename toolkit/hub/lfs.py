"""LFS objects of the Hub server: stored per repo, so a repo serves only objects uploaded to it.

Layout: ``{repo dir}/lfs/<sha256>`` (see storage.py); uploads stream into ``lfs/tmp`` under the root,
each temp file flock'ed by its writer, and are moved into the repo once size and sha256 match.
``sweep_tmp`` (run on start) removes temp files no live process holds: uploads cut by a crash.

Example:
    >>> parse_lfs_pointer(lfs_pointer("ab" * 32, 5))
    ('abababababababababababababababababababababababababababababababab', 5)
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import AsyncIterator

from .errors import HubError

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
_POINTER_RE = re.compile(rb"oid sha256:([0-9a-f]{64})\nsize (\d{1,19})\n?")


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) of a git-lfs pointer file, else None."""
    if not data.startswith(LFS_POINTER_PREFIX) or len(data) > 1024:
        return None
    m = _POINTER_RE.search(data)
    return (m.group(1).decode(), int(m.group(2))) if m else None


def lfs_pointer(sha256: str, size: int) -> bytes:
    return LFS_POINTER_PREFIX + f"oid sha256:{sha256}\nsize {size}\n".encode()


def has_object(lfs_dir: Path, oid: str, size: int | None = None) -> bool:
    """Whether ``lfs_dir`` (one repo's objects) holds ``oid`` (of ``size`` bytes if given)."""
    path = lfs_dir / oid
    try:
        return size is None or path.stat().st_size == size
    except OSError:
        return False


async def receive(chunks: AsyncIterator[bytes], tmp_dir: Path, lfs_dir: Path, oid: str, size: int) -> None:
    """Stream an upload into ``tmp_dir``, check size and sha256, then move it to ``lfs_dir/oid``."""
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=oid[:16] + ".")
    fcntl.flock(fd, fcntl.LOCK_EX)  # tells sweep_tmp a live writer owns it
    digest, got = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                digest.update(chunk)
                got += len(chunk)
                if got > size:
                    raise HubError(400, f"lfs-upload: body is larger than the announced {size} bytes")
                fh.write(chunk)
            if got != size or digest.hexdigest() != oid:
                raise HubError(400, f"lfs-upload: received {got} bytes with sha256 {digest.hexdigest()}, "
                                    f"expected {size} bytes with sha256 {oid}")
            lfs_dir.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, lfs_dir / oid)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sweep_tmp(tmp_dir: Path) -> int:
    """Remove temp uploads whose writer is gone (its flock is free); returns how many."""
    removed = 0
    for path in tmp_dir.iterdir():
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live upload
        else:
            path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed
