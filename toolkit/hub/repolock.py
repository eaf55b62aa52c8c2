"""Per-repo exclusive lock that survives ``kill -9``: recovery of dulwich's stale ``*.lock`` files.

dulwich writes every ref and loose object through ``<file>.lock`` + rename; a process killed in
between leaves the ``.lock`` behind and git refuses to write that file again. Every writer of a repo
holds our flock first, and marks the lock file with its pid while it works. The kernel drops the
flock when its owner dies, so a marked lock file found by the next holder means the previous owner
died mid-write: any ``.lock`` inside the git dir is then stale and is removed. Refs move by rename,
so a ref is always the old or the new commit, never half-made.

Example::

    with repo_lock(repo_dir / "lock", repo_dir / "git"):
        ...  # write objects, move refs
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def sweep_git_locks(gitdir: Path) -> list[Path]:
    """Remove every ``*.lock`` under ``gitdir`` (call only while holding the repo lock)."""
    removed = []
    for folder, _, files in os.walk(gitdir):
        for name in files:
            if name.endswith(".lock"):
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        logger.warning("recovered %s after an interrupted write: removed %d stale lock file(s)",
                       gitdir.parent.name, len(removed))
    return removed


@contextlib.contextmanager
def repo_lock(path: Path, gitdir: Path):
    """Hold the repo's exclusive lock (threads and processes); recover first if its last owner died."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            if fh.read().strip():  # marked but unlocked: the previous owner died while writing
                sweep_git_locks(gitdir)
            fh.truncate(0)
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def recover(path: Path, gitdir: Path) -> None:
    """Recover a repo left marked by a dead writer (run on server start)."""
    with contextlib.suppress(OSError):
        if path.stat().st_size:
            with repo_lock(path, gitdir):
                pass
