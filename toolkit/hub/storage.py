"""On-disk storage of the Hub server: one bare git repo (dulwich) per Hub repo, LFS blobs per repo.

Layout under ``root`` (one folder per repo, so distinct ids never share files)::

    repos/{type}s/{namespace}/{name}/git/        bare git repo (branches, tags = real refs)
    repos/{type}s/{namespace}/{name}/meta.json   metadata (private flag, type, sdk, createdAt)
    repos/{type}s/{namespace}/{name}/lock        per-repo lock (see repolock.py)
    repos/{type}s/{namespace}/{name}/lfs/<sha256>  LFS objects uploaded to this repo
    lfs/tmp/                                     partial uploads (moved into a repo once verified)

A Hub commit is a git commit whose tree stores LFS pointer files, like the Hub. Commits take the
repo lock, build the whole tree first, then move the ref: nothing is half-applied. Roots written by
older versions (one shared LFS folder, ``{name}.git`` files) are moved into this layout on start
(legacy.py).

Example::

    st = Storage("/tmp/hub")
    st.create_repo("dataset", "alice/gsm8k-rft", private=False)
    sha, _ = st.commit("dataset", "alice/gsm8k-rft", "main", [("file", "a.txt", b"hi")], "add a")
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import time
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree
from dulwich.object_store import commit_tree_changes
from dulwich.repo import Repo

from . import legacy, lfs
from .errors import HubError, repo_not_found
from .names import SHA_RE, check_oid, check_path, check_ref_name, check_repo_id, check_revision
from .reading import ReadingMixin, iso, lookup
from .repolock import recover, repo_lock

LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's "regular file" size limit
# The LFS patterns of the .gitattributes the Hub writes into every new repo (abridged).
LFS_PATTERNS = ["*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
                "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
                "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
                "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
                "*.mp3", "*.wav", "*.jpg", "*.jpeg", "*.png", "*.webp"]
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def _check_layout(repo: Repo, tree: Tree, changes: list[tuple]) -> None:
    """400 if an added file would sit under a file, or replace a folder (git trees can't hold both)."""
    added = {p.decode() for p, mode, _ in changes if mode is not None}
    deleted = {p.decode() for p, mode, _ in changes if mode is None}

    def mode_of(path: str) -> int | None:
        try:
            return None if path in deleted else lookup(repo, tree, path)[0]
        except KeyError:
            return None
    for path in added:
        parts = path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in added or mode_of(prefix) not in (None, 0o040000):
                raise HubError(400, f"Invalid commit: {prefix!r} is a file, so {path!r} cannot be under it")
        if mode_of(path) == 0o040000:
            raise HubError(400, f"Invalid commit: {path!r} is a folder; delete it first")


class Storage(ReadingMixin):
    """Versioned Hub repos on disk (see module docstring). On start: recovers repos left locked by
    a killed writer and removes partial LFS uploads."""

    def __init__(self, root):
        self.root = Path(root)
        self.tmp_dir = self.root / "lfs" / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)
        legacy.migrate(self)
        for lock in self.root.glob("repos/*/*/*/lock"):
            recover(lock, lock.parent / "git")
        lfs.sweep_tmp(self.tmp_dir)

    # ------------------------------------------------------------------ repos
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = check_repo_id(repo_type, repo_id)
        return self.root / "repos" / f"{repo_type}s" / ns / name

    def lfs_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.repo_dir(repo_type, repo_id) / "lfs"

    def meta(self, repo_type: str, repo_id: str) -> dict:
        """Repo metadata; raises 404 RepoNotFound when absent."""
        try:
            return json.loads((self.repo_dir(repo_type, repo_id) / "meta.json").read_text())
        except FileNotFoundError:
            raise repo_not_found(repo_id) from None

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        self.meta(repo_type, repo_id)
        return Repo(str(self.repo_dir(repo_type, repo_id) / "git"))

    def _lock(self, repo_type: str, repo_id: str):
        base = self.repo_dir(repo_type, repo_id)
        return repo_lock(base / "lock", base / "git")

    @staticmethod
    def _write_meta(base: Path, meta: dict) -> None:
        tmp = base / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, base / "meta.json")

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False,
                    sdk: str | None = None, author: str = "anonymous") -> dict:
        base = self.repo_dir(repo_type, repo_id)
        with self._lock(repo_type, repo_id):
            if (base / "meta.json").is_file():
                raise HubError(409, "You already created this repo", "RepoExists")
            for leftover in ("git", "lfs"):  # of a deleted repo, or a create cut by a crash
                shutil.rmtree(base / leftover, ignore_errors=True)
            repo = Repo.init_bare(str(base / "git"), mkdir=True)
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
            self._write_meta(base, meta)  # last: the repo exists once this file does
        return meta

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> dict:
        with self._lock(repo_type, repo_id):
            meta = {**self.meta(repo_type, repo_id), "private": bool(private)}
            self._write_meta(self.repo_dir(repo_type, repo_id), meta)
        return meta

    def list_repos(self, repo_type: str) -> list[dict]:
        """Metadata of every repo of a type, sorted by id."""
        return sorted((json.loads(p.read_text()) for p in
                       (self.root / "repos" / f"{repo_type}s").glob("*/*/meta.json")), key=lambda m: m["id"])

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        base = self.repo_dir(repo_type, repo_id)
        with self._lock(repo_type, repo_id):
            self.meta(repo_type, repo_id)
            (base / "meta.json").unlink()  # first: the repo is gone even if the rest is cut short
            for leftover in ("git", "lfs"):  # the lock file stays: waiters hold it open
                shutil.rmtree(base / leftover, ignore_errors=True)

    # ------------------------------------------------------------------ refs and revisions
    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Commit sha of a branch, tag, full ref or commit sha; 404 RevisionNotFound otherwise."""
        repo = self._repo(repo_type, repo_id)
        rev = check_revision(revision).encode()
        for ref in (rev, b"refs/heads/" + rev, b"refs/tags/" + rev) if not rev.startswith(b"refs/") else (rev,):
            if ref in repo.refs:
                return self._peel(repo, repo.refs[ref])
        if SHA_RE.fullmatch(revision) and rev in repo.object_store and repo[rev].type_name == b"commit":
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
        check_ref_name(ref)
        with self._lock(repo_type, repo_id):
            sha = self.resolve(repo_type, repo_id, revision)
            repo = self._repo(repo_type, repo_id)
            if not repo.refs.add_if_new(ref.encode(), sha.encode()):
                kind = "Tag" if ref.startswith("refs/tags/") else "Reference"
                raise HubError(409, f"{kind} {ref.split('/', 2)[-1]} already exists")

    def delete_ref(self, repo_type: str, repo_id: str, ref: str) -> None:
        if ref == "refs/heads/main":
            raise HubError(403, "Cannot delete the default branch 'main'")
        check_ref_name(ref)
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

    def commit(self, repo_type: str, repo_id: str, branch: str, ops: list[tuple],
               title: str, description: str = "", parent_commit: str | None = None,
               author: str = "anonymous", create_pr: bool = False) -> tuple[str, int | None]:
        """Apply ops atomically on ``branch`` (or on a new ``refs/pr/N`` started from it when
        ``create_pr``); returns (new commit sha, PR number or None).

        ops: ("file", path, bytes) | ("lfsFile", path, sha256, size) | ("deletedFile", path)
        | ("deletedFolder", path).
        """
        with self._lock(repo_type, repo_id):
            repo = self._repo(repo_type, repo_id)
            ref = check_ref_name(branch if branch.startswith("refs/") else f"refs/heads/{branch}").encode()
            if ref not in repo.refs or ref.startswith(b"refs/tags/"):
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            head = repo.refs[ref]
            if parent_commit and parent_commit != head.decode():
                raise HubError(412, f"A commit has happened since {parent_commit}. Please refresh and "
                                    f"try again (head of {branch} is {head.decode()}).")
            tree = repo[repo[head].tree]
            changes = [self._change(repo, tree, repo_type, repo_id, op) for op in ops]
            _check_layout(repo, tree, changes)
            new_tree = commit_tree_changes(repo.object_store, tree, changes)
            sha = self._new_commit(repo, new_tree, [head], title, description, author)
            if not create_pr:
                if not repo.refs.set_if_equals(ref, head, sha.encode()):
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
                return sha, None
            num = 1 + max((int(r.rsplit(b"/", 1)[1]) for r in repo.refs.allkeys()
                           if r.startswith(b"refs/pr/") and r.rsplit(b"/", 1)[1].isdigit()), default=0)
            repo.refs.add_if_new(f"refs/pr/{num}".encode(), sha.encode())  # under the lock: N is ours
            return sha, num

    def _change(self, repo: Repo, tree: Tree, repo_type: str, repo_id: str, op: tuple) -> tuple:
        """One op as a (path, mode, blob id) tree change, blobs written; 4xx if invalid."""
        path = check_path(op[1], folder=op[0] == "deletedFolder")
        if op[0] in ("file", "lfsFile"):
            if op[0] == "lfsFile":
                oid, size = check_oid(op[2]), op[3]
                if not lfs.has_object(self.lfs_dir(repo_type, repo_id), oid, size):
                    raise HubError(422, f"LFS object {oid} for {path!r} was not uploaded to {repo_id} "
                                        "(or its size differs); upload it via the LFS batch API first")
                data = lfs.lfs_pointer(oid, size)
            else:
                data = op[2]
            blob = Blob.from_string(data)
            repo.object_store.add_object(blob)
            return path.encode(), 0o100644, blob.id
        try:
            mode, _ = lookup(repo, tree, path)
        except KeyError:
            raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound") from None
        if op[0] == "deletedFile" and mode == 0o040000:
            raise HubError(400, f"{path!r} is a folder: use a folder deletion")
        return path.encode(), None, None

    @staticmethod
    def upload_mode(path: str, size: int, sample: bytes) -> str:
        """"lfs" or "regular", as the Hub decides: .gitattributes patterns, size, binary content."""
        name = path.rsplit("/", 1)[-1]
        if size > LFS_THRESHOLD or b"\x00" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS):
            return "lfs"
        return "regular"
