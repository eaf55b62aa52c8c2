"""kill -9 of ``qup hub serve`` mid-commit and mid-upload: a restart on the same root recovers."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest

from ..conftest import ALICE, VENV_BIN
from .test_server import _ok, _wait

AUTH = {"Authorization": f"Bearer {ALICE}"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root, tmp_path):
    """Start ``qup hub serve`` on ``root``; returns (process, url)."""
    port = _port()
    log = open(tmp_path / f"serve-{port}.log", "w")
    proc = subprocess.Popen([str(VENV_BIN / "qup"), "hub", "serve", "--root", str(root), "--port", str(port),
                             "--token", f"alice={ALICE}:write"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if not _wait(lambda: _ok(url + "/api/whoami-v2"), timeout=30):
        proc.kill()
        pytest.fail("qup hub serve did not come up: " + (tmp_path / f"serve-{port}.log").read_text()[-2000:])
    return proc, url


def _content(i: int) -> bytes:
    return random.Random(i).randbytes(400_000)


def _commit(url: str, indices) -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": f"files {list(indices)[:3]}"}}]
    lines += [{"key": "file", "value": {"path": f"f{i}.bin", "content": base64.b64encode(_content(i)).decode(),
                                        "encoding": "base64"}} for i in indices]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    return httpx.post(f"{url}/api/models/alice/crash/commit/main", content=body, headers=AUTH, timeout=60)


def _git_locks(root) -> list:
    """dulwich's ``*.lock`` files inside git dirs (refs/ or objects/), whatever the layout."""
    return [p for p in (root / "repos").rglob("*.lock") if {"refs", "objects"} & set(p.parts)]


def test_kill_9_mid_commit_then_restart_and_commit(tmp_path):
    root = tmp_path / "hub"
    proc, url = _serve(root, tmp_path)
    httpx.post(f"{url}/api/repos/create", json={"name": "crash"}, headers=AUTH).raise_for_status()
    stop, n = threading.Event(), 4

    def storm(t):
        i = t
        while not stop.is_set():
            try:
                _commit(url, [i, i + n])
            except httpx.HTTPError:
                return
            i += 2 * n
    threads = [threading.Thread(target=storm, args=(t,), daemon=True) for t in range(n)]
    for t in threads:
        t.start()
    caught, deadline = [], time.monotonic() + 60
    try:
        while not caught and time.monotonic() < deadline:  # freeze; kill only while a write is half-done
            time.sleep(random.uniform(0.005, 0.03))
            os.kill(proc.pid, signal.SIGSTOP)
            caught = _git_locks(root)
            os.kill(proc.pid, signal.SIGKILL if caught else signal.SIGCONT)
    finally:
        stop.set()
        proc.kill()
        proc.wait()
    for t in threads:
        t.join(timeout=60)
    assert caught, "never caught the server mid-write"
    proc, url = _serve(root, tmp_path)
    try:
        refs = httpx.get(f"{url}/api/models/alice/crash/refs").json()
        assert [b["name"] for b in refs["branches"]] == ["main"]
        files = {f["path"] for f in httpx.get(f"{url}/api/models/alice/crash/tree/main").json()}
        done = max([int(p[1:-4]) for p in files if p.endswith(".bin")], default=0)
        retry = _commit(url, range(done + 2 * n + 1))  # every file again, the interrupted ones included
        assert retry.status_code == 200, retry.text
        assert _commit(url, [10_000]).status_code == 200
        for i in (0, done + 1, 10_000):
            got = httpx.get(f"{url}/alice/crash/resolve/main/f{i}.bin")
            assert got.content == _content(i)
        assert _git_locks(root) == []
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_mid_lfs_upload_leaves_no_partial_file(tmp_path):
    root = tmp_path / "hub"
    proc, url = _serve(root, tmp_path)
    try:
        httpx.post(f"{url}/api/repos/create", json={"name": "up"}, headers=AUTH).raise_for_status()
        data = os.urandom(2_000_000)
        oid = hashlib.sha256(data).hexdigest()
        batch = httpx.post(f"{url}/alice/up.git/info/lfs/objects/batch", headers=AUTH,
                           json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).json()
        href = urlparse(batch["objects"][0]["actions"]["upload"]["href"])
        with socket.create_connection((href.hostname, href.port)) as s:
            s.sendall(f"PUT {href.path}?{href.query} HTTP/1.1\r\nHost: {href.netloc}\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:1_000_000])
            assert _wait(lambda: any((root / "lfs" / "tmp").iterdir()), timeout=10)
            proc.kill()
            proc.wait()
    finally:
        proc.kill()
        proc.wait()
    assert any((root / "lfs" / "tmp").iterdir())  # what the killed upload left
    proc, url = _serve(root, tmp_path)
    try:
        assert list((root / "lfs" / "tmp").iterdir()) == []
    finally:
        proc.kill()
        proc.wait()


def test_root_of_older_versions_is_migrated(tmp_path):
    """Old layout (``{ns}/{stem}.json|.git``, LFS shared in ``lfs/``) moves into per-repo folders."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo
    from huggingface_hub import HfApi

    from toolkit.hub import HubServer
    root, data = tmp_path / "hub", b"old weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    (root / "lfs").mkdir(parents=True)
    (root / "lfs" / oid).write_bytes(data)
    old = root / "repos" / "models" / "alice"
    old.mkdir(parents=True)
    repo = Repo.init_bare(str(old / "SmolLM2-1.git"), mkdir=True)
    blob = Blob.from_string(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n"
                            .encode())
    tree = Tree()
    tree.add(b"w.bin", 0o100644, blob.id)
    c = Commit()
    c.tree, c.parents, c.message = tree.id, [], b"old\n"
    c.author = c.committer = b"alice <alice@example.com>"
    c.author_time = c.commit_time = 1_700_000_000
    c.author_timezone = c.commit_timezone = 0
    for obj in (blob, tree, c):
        repo.object_store.add_object(obj)
    repo.refs[b"refs/heads/main"] = c.id
    (old / "SmolLM2-1.json").write_text(json.dumps({"type": "model", "id": "alice/SmolLM2-1.7B", "private": False,
                                                    "sdk": None, "createdAt": "2025-01-01T00:00:00.000Z"}))
    (old / "SmolLM2-1.lock").touch()
    with HubServer(root, tokens={"alice": (ALICE, "write")}) as hub:
        assert httpx.get(f"{hub.url}/alice/SmolLM2-1.7B/resolve/main/w.bin").content == data
        api = HfApi(endpoint=hub.url, token=ALICE)
        api.create_repo("alice/SmolLM2-1.7B-Instruct")
        assert sorted(m.id for m in api.list_models()) == ["alice/SmolLM2-1.7B", "alice/SmolLM2-1.7B-Instruct"]
    assert sorted(p.name for p in old.iterdir()) == ["SmolLM2-1.7B", "SmolLM2-1.7B-Instruct"]
