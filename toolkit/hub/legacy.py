"""One-time move of a root written by older versions of the server into the current layout.

Old layout: ``repos/{type}s/{ns}/{stem}.json|.git|.lock`` (``stem`` dropped everything after the
last dot, so dotted names could share files) and LFS objects shared by all repos in ``lfs/<sha256>``.
Each old repo moves to its own folder (named by the id in its metadata) and gets hard links to the
LFS objects its own history points to; an interrupted move resumes on the next start.
"""
from __future__ import annotations

import json
import logging
import os
import shutil

from dulwich.repo import Repo

from .errors import HubError
from .lfs import parse_lfs_pointer

logger = logging.getLogger(__name__)


def migrate(storage) -> None:
    for old_meta in storage.root.glob("repos/*/*/*.json"):
        if not old_meta.is_file():  # a current repo folder named like "x.json"
            continue
        try:
            meta = json.loads(old_meta.read_text())
            base = storage.repo_dir(meta["type"], meta["id"])
        except (ValueError, KeyError, TypeError, HubError, OSError) as e:
            logger.warning("not migrating %s: %s", old_meta, e)
            continue
        if (base / "meta.json").exists():
            continue
        old_git = old_meta.with_suffix(".git")
        if old_git.is_dir() and not (base / "git").exists():
            base.mkdir(parents=True, exist_ok=True)
            os.rename(old_git, base / "git")
        if not (base / "git").is_dir():
            continue
        _link_lfs(storage.root / "lfs", base)
        os.replace(old_meta, base / "meta.json")  # last: the repo appears once complete
        if old_meta.with_suffix(".lock").is_file():
            old_meta.with_suffix(".lock").unlink()
        logger.info("moved %s %s into the current storage layout", meta["type"], meta["id"])


def _link_lfs(pool, base) -> None:
    """Hard-link (or copy) into ``base/lfs`` the old shared objects this repo's blobs point to."""
    repo = Repo(str(base / "git"))
    (base / "lfs").mkdir(exist_ok=True)
    for sha in repo.object_store:
        obj = repo.object_store[sha]
        pointer = parse_lfs_pointer(obj.as_raw_string()) if obj.type_name == b"blob" else None
        if pointer and (pool / pointer[0]).is_file() and not (base / "lfs" / pointer[0]).exists():
            try:
                os.link(pool / pointer[0], base / "lfs" / pointer[0])
            except OSError:
                shutil.copyfile(pool / pointer[0], base / "lfs" / pointer[0])
