"""On-disk storage of the Hub server: one bare git repo (dulwich) per Hub repo, LFS blobs by sha256.

Layout under ``root``::

    repos/{type}s/{namespace}/{name}.git    bare git repo (branches, tags = real refs)
    repos/{type}s/{namespace}/{name}.json   metadata (private flag, type, sdk, createdAt)
    lfs/<sha256>                            LFS objects, content-addressed
    lfs/tmp/                                partial uploads (moved into place once verified)

A Hub commit is a git commit whose tree stores LFS pointer files, like the Hub. Commits take a
per-repo file lock, build the whole tree first, then move the ref: nothing is half-applied.

Example::

    st = Storage("/tmp/hub")
    st.create_repo("dataset", "alice/gsm8k-rft", private=False)
    sha = st.commit("dataset", "alice/gsm8k-rft", "main", [("file", "a.txt", b"hi")], "add a")
"""
from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree
from dulwich.object_store import commit_tree_changes
from dulwich.repo import Repo

from ..errors import QupError

REPO_TYPES = ("model", "dataset", "space")
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's "regular file" size limit
# The LFS patterns of the .gitattributes the Hub writes into every new repo (abridged).
LFS_PATTERNS = ["*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
                "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
                "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
                "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
                "*.mp3", "*.wav", "*.jpg", "*.jpeg", "*.png", "*.webp"]
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class HubError(QupError, ValueError):
    """An error answered to the client: HTTP ``status``, Hub ``code`` (X-Error-Code) and message."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.extra = extra or {}  # more JSON fields of the error body (e.g. the repo "url" on 409)


def repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")


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


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) of a git-lfs pointer file, else None."""
    if not data.startswith(LFS_POINTER_PREFIX) or len(data) > 1024:
        return None
    m = re.search(rb"oid sha256:([0-9a-f]{64})\nsize (\d+)", data)
    return (m.group(1).decode(), int(m.group(2))) if m else None


def lfs_pointer(sha256: str, size: int) -> bytes:
    return LFS_POINTER_PREFIX + f"oid sha256:{sha256}\nsize {size}\n".encode()


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Storage:
    """Versioned Hub repos on disk (see module docstring)."""

    def __init__(self, root):
        self.root = Path(root)
        (self.root / "lfs" / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)

    # ------------------------------------------------------------------ repos
    def _base(self, repo_type: str, repo_id: str) -> Path:
        parts = repo_id.split("/")
        if repo_type not in REPO_TYPES or len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts) \
                or any(p.endswith((".git", ".json", ".lock")) for p in parts):
            raise HubError(400, f"Invalid repo id {repo_id!r}: expected 'namespace/name' "
                                "(letters, digits, '-', '_', '.')")
        return self.root / "repos" / f"{repo_type}s" / parts[0] / parts[1]

    def meta(self, repo_type: str, repo_id: str) -> dict:
        """Repo metadata; raises 404 RepoNotFound when absent."""
        path = self._base(repo_type, repo_id).with_suffix(".json")
        if not path.is_file():
            raise repo_not_found(repo_id)
        return json.loads(path.read_text())

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        self.meta(repo_type, repo_id)
        return Repo(str(self._base(repo_type, repo_id).with_suffix(".git")))

    @contextlib.contextmanager
    def _lock(self, repo_type: str, repo_id: str):
        """Per-repo exclusive lock (threads and processes)."""
        path = self._base(repo_type, repo_id).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False,
                    sdk: str | None = None, author: str = "anonymous") -> dict:
        base = self._base(repo_type, repo_id)
        with self._lock(repo_type, repo_id):
            if base.with_suffix(".json").is_file():
                raise HubError(409, "You already created this repo", "RepoExists")
            gitdir = base.with_suffix(".git")
            shutil.rmtree(gitdir, ignore_errors=True)
            repo = Repo.init_bare(str(gitdir), mkdir=True)
            blob = Blob.from_string(GITATTRIBUTES)
            repo.object_store.add_object(blob)
            tree = Tree()
            tree.add(b".gitattributes", 0o100644, blob.id)
            repo.object_store.add_object(tree)
            sha = self._new_commit(repo, tree.id, [], "initial commit", "", author)
            repo.refs[b"refs/heads/main"] = sha.encode()
            repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
            meta = {"type": repo_type, "id": repo_id, "private": bool(private), "sdk": sdk,
                    "createdAt": iso(int(time.time()))}
            tmp = base.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, base.with_suffix(".json"))
        return meta

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> dict:
        base = self._base(repo_type, repo_id)
        with self._lock(repo_type, repo_id):
            meta = {**self.meta(repo_type, repo_id), "private": bool(private)}
            tmp = base.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, base.with_suffix(".json"))
        return meta

    def list_repos(self, repo_type: str) -> list[dict]:
        """Metadata of every repo of a type, sorted by id."""
        return sorted((json.loads(p.read_text()) for p in
                       (self.root / "repos" / f"{repo_type}s").glob("*/*.json")), key=lambda m: m["id"])

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        base = self._base(repo_type, repo_id)
        with self._lock(repo_type, repo_id):
            self.meta(repo_type, repo_id)
            base.with_suffix(".json").unlink()
            shutil.rmtree(base.with_suffix(".git"), ignore_errors=True)

    # ------------------------------------------------------------------ refs and revisions
    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Commit sha of a branch, tag, full ref or commit sha; 404 RevisionNotFound otherwise."""
        repo = self._repo(repo_type, repo_id)
        rev = revision.encode()
        for ref in (rev, b"refs/heads/" + rev, b"refs/tags/" + rev) if not rev.startswith(b"refs/") else (rev,):
            if ref in repo.refs:
                return self._peel(repo, repo.refs[ref])
        if _SHA_RE.match(revision) and rev in repo.object_store:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    @staticmethod
    def _peel(repo: Repo, sha: bytes) -> str:
        obj = repo[sha]
        while obj.type_name == b"tag":
            obj = repo[obj.object[1]]
        return obj.id.decode()

    def refs(self, repo_type: str, repo_id: str) -> dict:
        repo = self._repo(repo_type, repo_id)
        out = {"branches": [], "converts": [], "tags": [], "pullRequests": []}
        kinds = {b"refs/heads/": "branches", b"refs/tags/": "tags", b"refs/convert/": "converts",
                 b"refs/pr/": "pullRequests"}
        for ref in sorted(repo.refs.allkeys()):
            for prefix, kind in kinds.items():
                if ref.startswith(prefix):
                    name = ref[len(prefix):].decode() if kind != "pullRequests" else ref.decode()
                    out[kind].append({"name": name, "ref": ref.decode(),
                                      "targetCommit": self._peel(repo, repo.refs[ref])})
        return out

    def create_ref(self, repo_type: str, repo_id: str, ref: str, revision: str) -> None:
        with self._lock(repo_type, repo_id):
            sha = self.resolve(repo_type, repo_id, revision)
            repo = self._repo(repo_type, repo_id)
            if not repo.refs.add_if_new(ref.encode(), sha.encode()):
                kind = "Tag" if ref.startswith("refs/tags/") else "Reference"
                raise HubError(409, f"{kind} {ref.split('/', 2)[-1]} already exists")

    def delete_ref(self, repo_type: str, repo_id: str, ref: str) -> None:
        if ref == "refs/heads/main":
            raise HubError(403, "Cannot delete the default branch 'main'")
        with self._lock(repo_type, repo_id):
            repo = self._repo(repo_type, repo_id)
            if ref.encode() not in repo.refs:
                raise HubError(404, f"Invalid rev id: {ref.split('/', 2)[-1]}", "RevisionNotFound")
            del repo.refs[ref.encode()]

    # ------------------------------------------------------------------ commits
    @staticmethod
    def _new_commit(repo: Repo, tree: bytes, parents: list[bytes], title: str, description: str,
                    author: str) -> str:
        c = Commit()
        c.tree, c.parents = tree, parents
        c.author = c.committer = f"{author} <{author}@users.noreply.huggingface.co>".encode()
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.message = (title + ("\n\n" + description if description else "") + "\n").encode()
        repo.object_store.add_object(c)
        return c.id.decode()

    def lfs_object(self, sha256: str) -> Path:
        return self.root / "lfs" / sha256

    def commit(self, repo_type: str, repo_id: str, branch: str, ops: list[tuple],
               title: str, description: str = "", parent_commit: str | None = None,
               author: str = "anonymous") -> str:
        """Apply ops atomically on ``branch``; returns the new commit sha.

        ops: ("file", path, bytes) | ("lfsFile", path, sha256, size) | ("deletedFile", path)
        | ("deletedFolder", path).
        """
        with self._lock(repo_type, repo_id):
            repo = self._repo(repo_type, repo_id)
            ref = (branch if branch.startswith("refs/") else f"refs/heads/{branch}").encode()
            if ref not in repo.refs:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.refs[ref]
            if parent_commit and parent_commit != head.decode():
                raise HubError(412, f"A commit has happened since {parent_commit}. Please refresh and "
                                    f"try again (head of {branch} is {head.decode()}).")
            tree = repo[repo[head].tree]
            changes = []
            for op in ops:
                path = op[1].strip("/")
                if not path or any(p in ("", ".", "..", ".git") for p in path.split("/")):
                    raise HubError(400, f"Invalid path in commit: {op[1]!r}")
                if op[0] in ("file", "lfsFile"):
                    if op[0] == "lfsFile":
                        obj = self.lfs_object(op[2])
                        if not obj.is_file() or obj.stat().st_size != op[3]:
                            raise HubError(422, f"LFS object {op[2]} for {path!r} was not uploaded "
                                                "(or its size differs); upload it via the LFS batch API first")
                        data = lfs_pointer(op[2], op[3])
                    else:
                        data = op[2]
                    blob = Blob.from_string(data)
                    repo.object_store.add_object(blob)
                    changes.append((path.encode(), 0o100644, blob.id))
                else:
                    try:
                        mode, _ = tree.lookup_path(repo.__getitem__, path.encode())
                    except KeyError:
                        raise HubError(404, f"A file with this name doesn't exist: {path}",
                                       "EntryNotFound") from None
                    if op[0] == "deletedFile" and mode == 0o040000:
                        raise HubError(400, f"{path!r} is a folder: use a folder deletion")
                    changes.append((path.encode(), None, None))
            new_tree = commit_tree_changes(repo.object_store, tree, changes)
            sha = self._new_commit(repo, new_tree, [head], title, description, author)
            if not repo.refs.set_if_equals(ref, head, sha.encode()):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            return sha

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

    # ------------------------------------------------------------------ trees and files
    def _entry(self, repo: Repo, path: str, mode: int, sha: bytes) -> Entry:
        if mode == 0o040000:
            return Entry(path, "directory", sha.decode())
        data = repo[sha].as_raw_string()
        pointer = parse_lfs_pointer(data)
        lfs = {"oid": pointer[0], "size": pointer[1], "pointerSize": len(data)} if pointer else None
        return Entry(path, "file", sha.decode(), pointer[1] if pointer else len(data), lfs)

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str = "",
             recursive: bool = False) -> tuple[str, list[Entry]]:
        """(commit, entries) under ``path`` (a folder) at ``revision``."""
        repo = self._repo(repo_type, repo_id)
        commit = self.resolve(repo_type, repo_id, revision)
        tree = repo[repo[commit.encode()].tree]
        path = path.strip("/")
        if path:
            try:
                mode, sha = tree.lookup_path(repo.__getitem__, path.encode())
            except KeyError:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound") from None
            if mode != 0o040000:
                raise HubError(404, f"{path} is not a folder", "EntryNotFound")
            tree = repo[sha]
        out: list[Entry] = []

        def walk(t: Tree, prefix: str):
            for item in t.iteritems():
                p = prefix + item.path.decode()
                out.append(self._entry(repo, p, item.mode, item.sha))
                if recursive and item.mode == 0o040000:
                    walk(repo[item.sha], p + "/")
        walk(tree, path + "/" if path else "")
        return commit, out

    def paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list[str]) -> list[Entry]:
        """Entries of the given paths at ``revision`` (missing paths are skipped, like the Hub)."""
        repo = self._repo(repo_type, repo_id)
        commit = self.resolve(repo_type, repo_id, revision)
        tree = repo[repo[commit.encode()].tree]
        out = []
        for p in paths:
            p = p.strip("/")
            try:
                mode, sha = tree.lookup_path(repo.__getitem__, p.encode()) if p else (0o040000, tree.id)
            except KeyError:
                continue
            out.append(self._entry(repo, p, mode, sha))
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
        repo = self._repo(repo_type, repo_id)
        commit = self.resolve(repo_type, repo_id, revision)
        tree = repo[repo[commit.encode()].tree]
        try:
            mode, sha = tree.lookup_path(repo.__getitem__, path.strip("/").encode())
        except KeyError:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound") from None
        if mode == 0o040000:
            raise HubError(404, f"{path} is a folder", "EntryNotFound")
        data = repo[sha].as_raw_string()
        pointer = parse_lfs_pointer(data)
        if pointer and self.lfs_object(pointer[0]).is_file():
            return FileData(commit, sha.decode(), pointer[1], lfs_sha256=pointer[0],
                            lfs_path=self.lfs_object(pointer[0]))
        return FileData(commit, sha.decode(), len(data), content=data)

    @staticmethod
    def upload_mode(path: str, size: int, sample: bytes) -> str:
        """"lfs" or "regular", as the Hub decides: .gitattributes patterns, size, binary content."""
        name = path.rsplit("/", 1)[-1]
        if size > LFS_THRESHOLD or b"\x00" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS):
            return "lfs"
        return "regular"
