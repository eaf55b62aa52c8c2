"""Read side of the Hub storage: commit logs, trees, paths-info, file contents (mixed into Storage).

A pointer-shaped file counts as LFS only when its object was uploaded to the same repo: a pointer
naming another repo's object is served as the plain text it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dulwich.errors import NotTreeError
from dulwich.objects import Tree
from dulwich.repo import Repo

from . import lfs
from .errors import HubError


@dataclass
class Entry:
    """A file or folder of a revision's tree."""
    path: str
    type: str  # "file" | "directory"
    oid: str
    size: int = 0
    lfs: dict | None = None  # {"oid": sha256, "size": n, "pointerSize": m}


@dataclass
class FileData:
    """A file resolved at a revision: bytes (regular) or the LFS object path."""
    commit: str
    blob_id: str
    size: int
    content: bytes | None = None
    lfs_sha256: str | None = None
    lfs_path: Path | None = None


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def lookup(repo: Repo, tree: Tree, path: str):
    """(mode, sha) of ``path`` in ``tree``; KeyError when absent (or under a file)."""
    try:
        return tree.lookup_path(repo.__getitem__, path.encode())
    except (KeyError, NotTreeError, UnicodeEncodeError):
        raise KeyError(path) from None


class ReadingMixin:
    """Needs ``_repo``, ``resolve`` and ``lfs_dir`` (see storage.Storage)."""

    def _pointer(self, repo_type: str, repo_id: str, data: bytes) -> tuple[str, int] | None:
        """(sha256, size) if ``data`` is a pointer to an object this repo holds."""
        pointer = lfs.parse_lfs_pointer(data)
        if pointer and lfs.has_object(self.lfs_dir(repo_type, repo_id), *pointer):
            return pointer
        return None

    def _commit_tree(self, repo_type: str, repo_id: str, revision: str) -> tuple[Repo, str, Tree]:
        repo = self._repo(repo_type, repo_id)
        commit = self.resolve(repo_type, repo_id, revision)
        return repo, commit, repo[repo[commit.encode()].tree]

    def log(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
        """Commits reachable from ``revision``, newest first, in the Hub's JSON shape."""
        repo = self._repo(repo_type, repo_id)
        sha = self.resolve(repo_type, repo_id, revision)
        out = []
        for entry in repo.get_walker(include=[sha.encode()]):
            c = entry.commit
            title, _, message = c.message.decode(errors="replace").partition("\n\n")
            out.append({"id": c.id.decode(), "title": title.strip(), "message": message.strip(),
                        "authors": [{"user": c.author.decode().split(" <")[0]}], "date": iso(c.commit_time)})
        return out

    def _entry(self, repo: Repo, repo_type: str, repo_id: str, path: str, mode: int, sha: bytes) -> Entry:
        if mode == 0o040000:
            return Entry(path, "directory", sha.decode())
        data = repo[sha].as_raw_string()
        pointer = self._pointer(repo_type, repo_id, data)
        info = {"oid": pointer[0], "size": pointer[1], "pointerSize": len(data)} if pointer else None
        return Entry(path, "file", sha.decode(), pointer[1] if pointer else len(data), info)

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str = "",
             recursive: bool = False) -> tuple[str, list[Entry]]:
        """(commit, entries) under ``path`` (a folder) at ``revision``."""
        repo, commit, tree = self._commit_tree(repo_type, repo_id, revision)
        path = path.strip("/")
        if path:
            try:
                mode, sha = lookup(repo, tree, path)
            except KeyError:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound") from None
            if mode != 0o040000:
                raise HubError(404, f"{path} is not a folder", "EntryNotFound")
            tree = repo[sha]
        out: list[Entry] = []

        def walk(t: Tree, prefix: str):
            for item in t.iteritems():
                p = prefix + item.path.decode(errors="replace")
                out.append(self._entry(repo, repo_type, repo_id, p, item.mode, item.sha))
                if recursive and item.mode == 0o040000:
                    walk(repo[item.sha], p + "/")
        walk(tree, path + "/" if path else "")
        return commit, out

    def paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list[str]) -> list[Entry]:
        """Entries of the given paths at ``revision`` (missing paths are skipped, like the Hub)."""
        repo, _, tree = self._commit_tree(repo_type, repo_id, revision)
        out = []
        for p in paths:
            if not isinstance(p, str):
                raise HubError(400, "paths-info: 'paths' must be a list of strings")
            p = p.strip("/")
            try:
                mode, sha = lookup(repo, tree, p) if p else (0o040000, tree.id)
            except KeyError:
                continue
            out.append(self._entry(repo, repo_type, repo_id, p, mode, sha))
        return out

    def last_commit(self, repo_type: str, repo_id: str, revision: str, path: str) -> dict | None:
        """{"id", "title", "date"} of the last commit that changed ``path``."""
        repo = self._repo(repo_type, repo_id)
        sha = self.resolve(repo_type, repo_id, revision)
        for entry in repo.get_walker(include=[sha.encode()], paths=[path.encode()] if path else None):
            c = entry.commit
            return {"id": c.id.decode(), "title": c.message.decode(errors="replace").split("\n")[0],
                    "date": iso(c.commit_time)}
        return None

    def read(self, repo_type: str, repo_id: str, revision: str, path: str) -> FileData:
        repo, commit, tree = self._commit_tree(repo_type, repo_id, revision)
        try:
            mode, sha = lookup(repo, tree, path.strip("/"))
        except KeyError:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound") from None
        if mode == 0o040000:
            raise HubError(404, f"{path} is a folder", "EntryNotFound")
        data = repo[sha].as_raw_string()
        pointer = self._pointer(repo_type, repo_id, data)
        if pointer:
            return FileData(commit, sha.decode(), pointer[1], lfs_sha256=pointer[0],
                            lfs_path=self.lfs_dir(repo_type, repo_id) / pointer[0])
        return FileData(commit, sha.decode(), len(data), content=data)
