"""The local Hub server, driven by the real clients: HfApi, hf_hub_download, datasets, the hf CLI."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from toolkit.hub import HubServer

from ..conftest import ALICE, BOB, VENV_BIN

TOKENS = {"alice": (ALICE, "write"), "bob": (BOB, "read")}


def _commits(api, repo_id, repo_type="model", revision=None):
    return api.list_repo_commits(repo_id, repo_type=repo_type, revision=revision)


def test_upload_tag_branch_tree_download(api, hub, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("# demo\n")
    (folder / "sub" / "weights.bin").write_bytes(os.urandom(4096))
    (folder / "notes.txt").write_text("first")
    url = api.create_repo("alice/demo")
    assert url == f"{hub.url}/alice/demo"
    first = api.upload_folder(repo_id="alice/demo", folder_path=folder, commit_message="first")
    api.create_tag("alice/demo", tag="v1.0")

    # second commit: an 11 MB text file (LFS by size), an update and a deletion, with parentCommit
    big = b"0123456789abcdef" * (11 * 1024 * 1024 // 16)
    second = api.create_commit("alice/demo", commit_message="second", parent_commit=first.oid, operations=[
        CommitOperationAdd("big.txt", big), CommitOperationAdd("notes.txt", b"second"),
        CommitOperationDelete("README.md"), CommitOperationDelete("sub/")])
    api.create_branch("alice/demo", branch="dev", revision="v1.0")

    refs = api.list_repo_refs("alice/demo")
    assert {(b.name, b.target_commit) for b in refs.branches} == {("main", second.oid), ("dev", first.oid)}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", first.oid)]
    tree = {f.path: f for f in api.list_repo_tree("alice/demo", recursive=True)}
    assert set(tree) == {".gitattributes", "big.txt", "notes.txt"}
    assert tree["big.txt"].lfs.size == len(big)
    assert tree["notes.txt"].lfs is None and tree["notes.txt"].size == len(b"second")
    sub = list(api.list_repo_tree("alice/demo", path_in_repo="sub", revision="dev"))
    assert [f.path for f in sub] == ["sub/weights.bin"] and sub[0].lfs is not None
    assert [c.title for c in _commits(api, "alice/demo")] == ["second", "first", "initial commit"]

    cache = tmp_path / "cache"
    old = hf_hub_download("alice/demo", "notes.txt", revision="v1.0", endpoint=hub.url, token=BOB,
                          cache_dir=cache)
    assert open(old).read() == "first"
    got = hf_hub_download("alice/demo", "big.txt", endpoint=hub.url, token=BOB, cache_dir=cache)
    assert open(got, "rb").read() == big
    snap = snapshot_download("alice/demo", revision="dev", endpoint=hub.url, token=BOB, cache_dir=cache)
    assert open(os.path.join(snap, "sub", "weights.bin"), "rb").read() == \
        (folder / "sub" / "weights.bin").read_bytes()
    assert open(os.path.join(snap, "README.md")).read() == "# demo\n"
    assert api.model_info("alice/demo", revision="v1.0").sha == first.oid
    api.delete_tag("alice/demo", tag="v1.0")
    api.delete_branch("alice/demo", branch="dev")
    refs = api.list_repo_refs("alice/demo")
    assert refs.tags == [] and [b.name for b in refs.branches] == ["main"]


def test_resolve_headers_and_range(api, hub):
    data = os.urandom(5000)
    api.create_repo("alice/files", repo_type="dataset")
    info = api.upload_file(path_or_fileobj=data, path_in_repo="d/x.parquet", repo_id="alice/files",
                           repo_type="dataset")
    url = f"{hub.url}/datasets/alice/files/resolve/main/d/x.parquet"
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["X-Repo-Commit"] == info.oid
    assert head.headers["X-Linked-Size"] == "5000"
    assert head.headers["X-Linked-Etag"].strip('"') == __import__("hashlib").sha256(data).hexdigest()
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/5000"
    # revisions may be URL-encoded refs: a PR ref
    pr = api.create_commit("alice/files", repo_type="dataset", commit_message="pr", create_pr=True,
                           operations=[CommitOperationAdd("pr.txt", b"in the PR")])
    assert pr.pr_revision == "refs/pr/1"
    enc = httpx.get(f"{hub.url}/datasets/alice/files/resolve/refs%2Fpr%2F1/pr.txt")
    assert enc.content == b"in the PR" and enc.headers["X-Repo-Commit"] == pr.oid
    missing = httpx.get(f"{hub.url}/datasets/alice/files/resolve/main/nope.txt")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"


def test_parent_commit_conflict_is_412(api):
    api.create_repo("alice/conflict")
    base = _commits(api, "alice/conflict")[0].commit_id
    api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="alice/conflict")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit("alice/conflict", commit_message="stale", parent_commit=base,
                          operations=[CommitOperationAdd("b.txt", b"b")])
    assert err.value.response.status_code == 412
    assert "b.txt" not in api.list_repo_files("alice/conflict")


def test_auth_private_repos_and_write_tokens(api, hub):
    from huggingface_hub import HfApi
    api.create_repo("alice/secret", private=True)
    api.upload_file(path_or_fileobj=b"s3cret", path_in_repo="s.txt", repo_id="alice/secret")
    anon, bob = HfApi(endpoint=hub.url, token=False), HfApi(endpoint=hub.url, token=BOB)
    with pytest.raises(RepositoryNotFoundError):
        anon.model_info("alice/secret")
    r = httpx.get(f"{hub.url}/alice/secret/resolve/main/s.txt")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(RepositoryNotFoundError):  # another user's token: private stays hidden
        bob.model_info("alice/secret")
    assert api.model_info("alice/secret").private is True
    assert [m.id for m in anon.list_models(author="alice")] == []
    assert [m.id for m in bob.list_models(author="alice")] == []
    assert [m.id for m in api.list_models(author="alice")] == ["alice/secret"]
    api.update_repo_settings("alice/secret", private=False)
    assert anon.model_info("alice/secret").private is False
    assert bob.whoami()["name"] == "bob"

    with pytest.raises(HfHubHTTPError, match="needs a write token") as err:  # no token at all
        anon.create_repo("alice/nope")
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError, match="read-only") as err:
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/secret")
    assert err.value.response.status_code == 403
    api.update_repo_settings("alice/secret", private=True)
    bad = httpx.get(f"{hub.url}/api/whoami-v2", headers={"Authorization": "Bearer hf_wrong"})
    assert bad.status_code == 401 and bad.json() == {"error": "Invalid credentials in Authorization header"}
    assert "hf_wrong" not in bad.text
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.url, token="hf_wrong").model_info("alice/secret")
    assert err.value.response.status_code == 401


def test_restart_keeps_everything(api, hub):
    api.create_repo("alice/persist", repo_type="space", space_sdk="gradio", private=True)
    c = api.upload_file(path_or_fileobj=os.urandom(3000), path_in_repo="m.safetensors",
                        repo_id="alice/persist", repo_type="space")
    api.create_tag("alice/persist", tag="t1", repo_type="space")
    root = hub.root
    hub.stop()
    with HubServer(root, tokens=TOKENS) as again:
        from huggingface_hub import HfApi
        api2 = HfApi(endpoint=again.url, token=ALICE)
        info = api2.space_info("alice/persist", revision="t1", files_metadata=True)
        assert info.sha == c.oid and info.private is True
        lfs = {s.rfilename: s.lfs for s in info.siblings}["m.safetensors"]
        assert lfs is not None and lfs.size == 3000
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=again.url, token=False).space_info("alice/persist")
        api2.delete_repo("alice/persist", repo_type="space")
        with pytest.raises(RepositoryNotFoundError):
            api2.space_info("alice/persist")


def _raw_send(url: str, head: str, body: bytes) -> None:
    """Send a request head + a truncated body on a raw socket, then drop the connection."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        time.sleep(0.2)


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def test_dropped_connection_leaves_no_partial_commit(api, hub, caplog):
    import hashlib
    caplog.set_level("INFO", logger="toolkit.hub.server")
    api.create_repo("alice/drop")
    before = _commits(api, "alice/drop")
    data = os.urandom(100_000)
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(f"{hub.url}/alice/drop.git/info/lfs/objects/batch",
                       headers={"Authorization": f"Bearer {ALICE}"},
                       json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).json()
    href = urlparse(batch["objects"][0]["actions"]["upload"]["href"])
    _raw_send(hub.url, f"PUT {href.path}?{href.query} HTTP/1.1\r\nHost: {href.netloc}\r\n"
                       f"Content-Length: {len(data)}", data[:40_000])
    tmp_dir = hub.root / "lfs" / "tmp"
    assert _wait(lambda: not any(tmp_dir.iterdir()))
    assert not (hub.root / "lfs" / oid).exists()
    # a commit referencing the never-completed LFS object is refused
    ndjson = (json.dumps({"key": "header", "value": {"summary": "half"}}) + "\n" +
              json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid,
                                                      "size": len(data)}}) + "\n").encode()
    r = httpx.post(f"{hub.url}/api/models/alice/drop/commit/main", content=ndjson,
                   headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 422 and "was not uploaded" in r.json()["error"]
    # a commit NDJSON body cut mid-way
    _raw_send(hub.url, f"POST /api/models/alice/drop/commit/main HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Authorization: Bearer {ALICE}\r\nContent-Type: application/x-ndjson\r\n"
                       f"Content-Length: {len(ndjson) + 500}", ndjson)
    assert _wait(lambda: "disconnected during POST" in caplog.text)
    assert "disconnected during PUT" in caplog.text
    assert [c.commit_id for c in _commits(api, "alice/drop")] == [c.commit_id for c in before]
    # the retry succeeds through the normal client
    ok = api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="alice/drop")
    assert len(_commits(api, "alice/drop")) == len(before) + 1
    assert httpx.get(f"{hub.url}/alice/drop/resolve/{ok.oid}/w.bin").content == data


def test_concurrent_commits_are_serialised(api, hub):
    api.create_repo("alice/busy")
    errors = []

    def push(i):
        try:
            api.create_commit("alice/busy", commit_message=f"c{i}",
                              operations=[CommitOperationAdd(f"f{i}.txt", f"{i}".encode())])
        except Exception as e:  # collected and asserted below
            errors.append(e)
    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {f"f{i}.txt" for i in range(8)} <= set(api.list_repo_files("alice/busy"))
    log = _commits(api, "alice/busy")
    assert sorted(c.title for c in log[:8]) == sorted(f"c{i}" for i in range(8)) and len(log) == 9
    from dulwich.repo import Repo  # history is linear: every commit has exactly one parent
    git = Repo(str(hub.root / "repos" / "models" / "alice" / "busy" / "git"))
    assert [len(git[c.commit_id.encode()].parents) for c in log] == [1] * 8 + [0]


DATASETS_SCRIPT = """
import json, sys
from datasets import Dataset, load_dataset
from huggingface_hub import HfApi
first, second = json.loads(sys.argv[1]), json.loads(sys.argv[2])
Dataset.from_dict(first).push_to_hub("alice/traces", config_name="rft")
HfApi().create_tag("alice/traces", tag="v1", repo_type="dataset")
Dataset.from_dict(second).push_to_hub("alice/traces", config_name="rft")
old = load_dataset("alice/traces", "rft", revision="v1", split="train")
new = load_dataset("alice/traces", "rft", split="train")
print(json.dumps({"old": old.to_dict(), "new": new.to_dict()}))
"""


def test_datasets_push_to_hub_and_load_at_tag(hub, client_env, tmp_path):
    first = {"question": ["1+1?", "2*3?", "10-4?"], "answer": ["2", "6", "6"], "correct": [True, False, True]}
    second = {"question": ["7+1?"], "answer": ["8"], "correct": [True]}
    out = subprocess.run([sys.executable, "-c", DATASETS_SCRIPT, json.dumps(first), json.dumps(second)],
                         env=client_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"old": first, "new": second}


def test_hf_cli_upload_download(hub, client_env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "b.bin").write_bytes(os.urandom(2048))
    hf = str(VENV_BIN / "hf")
    up = subprocess.run([hf, "upload", "alice/cli", str(src), ".", "--repo-type", "dataset"],
                        env=client_env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr[-2000:]
    down = subprocess.run([hf, "download", "alice/cli", "--repo-type", "dataset", "--local-dir",
                           str(tmp_path / "dst")], env=client_env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr[-2000:]
    for name in ("a.txt", "b.bin"):
        assert (tmp_path / "dst" / name).read_bytes() == (src / name).read_bytes()
    anon = {**client_env, "HF_TOKEN": ""}
    denied = subprocess.run([hf, "upload", "alice/cli", str(src), ".", "--repo-type", "dataset"],
                            env=anon, capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0 and "needs a write token" in denied.stdout + denied.stderr


def test_qup_hub_serve_cli(tmp_path, free_port):
    proc = subprocess.Popen([str(VENV_BIN / "qup"), "hub", "serve", "--root", str(tmp_path / "r"),
                             "--port", str(free_port), "--token", f"carol={ALICE}:write"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{free_port}/api/whoami-v2"
        assert _wait(lambda: _ok(url), timeout=30), "qup hub serve did not come up"
        r = httpx.get(url, headers={"Authorization": f"Bearer {ALICE}"})
        assert r.json()["name"] == "carol" and r.json()["auth"]["accessToken"]["role"] == "write"
    finally:
        proc.terminate()
        logs = proc.communicate(timeout=10)[0]
    assert ALICE not in logs and "1 token(s)" in logs


def _ok(url):
    try:
        return httpx.get(url).status_code in (200, 401)
    except httpx.HTTPError:
        return False


def test_create_repo_exist_ok_like_the_hub(api):
    first = api.create_repo("alice/again", repo_type="dataset")
    again = api.create_repo("alice/again", repo_type="dataset", exist_ok=True)
    assert again.repo_id == first.repo_id == "alice/again"
    from huggingface_hub.errors import HfHubHTTPError
    with pytest.raises(HfHubHTTPError, match="already created"):
        api.create_repo("alice/again", repo_type="dataset")
