"""Security review findings on input handling: names, paths, LFS oids, PR refs, malformed requests, limits."""
from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from urllib.parse import quote, urlparse

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from toolkit.hub import HubServer

from ..conftest import ALICE, BOB

AUTH = {"Authorization": f"Bearer {ALICE}"}


def _ndjson(*ops, summary="c") -> bytes:
    lines = [{"key": "header", "value": {"summary": summary}}, *ops]
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def _file(path, data=b"x"):
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(),
                                     "encoding": "base64"}}


def _raw(url: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return the response head (b'' if the server dropped the connection)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"connection: close" not in out.lower():   # kept alive: the head is enough
                    break
        except socket.timeout:
            return out or b"<timeout>"
        return out


def test_dotted_repo_names_never_share_storage(api, hub):
    names = ["SmolLM2-1.7B", "SmolLM2-1.7B-Instruct", "SmolLM2-1.7", "SmolLM2-1", "SmolLM2-1.json",
             "SmolLM2-1.git.x", "SmolLM2-1.lock", "a.b.c", "a.b", "a", "v1.0", "v1.0.1", "x.tar.gz", "x.tar"]
    for name in names:
        api.create_repo(f"alice/{name}")
        api.upload_file(path_or_fileobj=name.encode(), path_in_repo="who.txt", repo_id=f"alice/{name}")
    api.create_repo("alice/SmolLM2-1.7B", repo_type="dataset")
    for name in names:
        assert httpx.get(f"{hub.url}/alice/{name}/resolve/main/who.txt").text == name
    with pytest.raises(RepositoryNotFoundError):  # a name that does not exist deletes nothing
        api.delete_repo("alice/SmolLM2-1.7B-Base")
    api.delete_repo("alice/SmolLM2-1.7B")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/SmolLM2-1.7B")
    for name in names[1:]:
        assert httpx.get(f"{hub.url}/alice/{name}/resolve/main/who.txt").text == name
    assert api.dataset_info("alice/SmolLM2-1.7B").id == "alice/SmolLM2-1.7B"
    assert sorted(m.id for m in api.list_models(author="alice")) == sorted(f"alice/{n}" for n in names[1:])


def test_bad_paths_refs_and_names_are_refused(api, hub):
    api.create_repo("alice/paths")
    api.upload_file(path_or_fileobj=b"ok", path_in_repo="dir/a.txt", repo_id="alice/paths")
    url = f"{hub.url}/api/models/alice/paths/commit/main"
    for bad in ["a\x00b", "a\nb.txt", "tab\there", "del\x7f", "../x", "a/../b", "/abs.txt", ".git/config",
                "a/.git/x", "a/.GIT/x", "a//b", "./a", ".", "", "dir/a.txt/under-a-file"]:
        r = httpx.post(url, content=_ndjson(_file(bad)), headers=AUTH)
        assert r.status_code == 400 and "error" in r.json(), (bad, r.status_code, r.text)
    for op in ({"key": "deletedFile", "value": {"path": "a\x00"}}, {"key": "deletedFolder", "value": {"path": "../"}}):
        assert httpx.post(url, content=_ndjson(op), headers=AUTH).status_code == 400
    # the branch still works, with the same files
    assert sorted(api.list_repo_files("alice/paths")) == [".gitattributes", "dir/a.txt"]
    api.create_commit("alice/paths", commit_message="fine", operations=[
        CommitOperationAdd("dir/b.txt", b"b"), CommitOperationDelete("dir/a.txt")])
    assert sorted(api.list_repo_files("alice/paths")) == [".gitattributes", "dir/b.txt"]
    # names with a trailing newline (a `$` regex lets them through) or other bad characters
    for name in ["x\n", "x\r", "x\x00", "-x", "x-", "x--y", "x..y", "x.git", "é", "x" * 97]:
        r = httpx.post(f"{hub.url}/api/repos/create", json={"name": name}, headers=AUTH)
        assert r.status_code == 400 and "Invalid repo id" in r.json()["error"], (name, r.text)
    r = httpx.post(f"{hub.url}/api/repos/create", json={"name": "ok", "organization": "alice\n"}, headers=AUTH)
    assert r.status_code == 400
    assert [m.id for m in api.list_models(author="alice")] == ["alice/paths"]
    for branch in ["dev\n", "a..b", "a b", "x.lock", "a~1", "a:b", "a@{1}", "a/"]:
        r = httpx.post(f"{hub.url}/api/models/alice/paths/branch/{quote(branch, safe='')}", json={}, headers=AUTH)
        assert r.status_code == 400, (branch, r.text)
    assert [b.name for b in api.list_repo_refs("alice/paths").branches] == ["main"]


def test_lfs_file_oid_must_be_sha256_hex(api, hub):
    api.create_repo("alice/oids")
    meta = next((hub.root / "repos").rglob("*.json"))  # a file that exists on the server
    head = api.list_repo_commits("alice/oids")[0].commit_id
    for oid in ["../" * 3 + str(meta.relative_to(hub.root)), "A" * 64, "a" * 63, "a" * 64 + "\n", 5, None]:
        op = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid,
                                          "size": meta.stat().st_size}}
        r = httpx.post(f"{hub.url}/api/models/alice/oids/commit/main", content=_ndjson(op), headers=AUTH)
        assert r.status_code == 400 and "oid" in r.json()["error"], (oid, r.text)
    assert api.list_repo_commits("alice/oids")[0].commit_id == head


def test_create_pr_is_atomic_and_numbers_are_unique(api, hub):
    api.create_repo("alice/prs")
    with pytest.raises(HfHubHTTPError) as err:  # an invalid commit creates no PR ref
        api.create_commit("alice/prs", commit_message="bad", create_pr=True,
                          operations=[CommitOperationDelete("missing.txt")])
    assert err.value.response.status_code == 404
    assert api.list_repo_refs("alice/prs", include_pull_requests=True).pull_requests == []
    results, errors = [], []

    def pr(i):
        try:
            results.append(api.create_commit("alice/prs", commit_message=f"pr{i}", create_pr=True,
                                             operations=[CommitOperationAdd(f"f{i}.txt", b"%d" % i)]))
        except Exception as e:  # collected and asserted below
            errors.append(e)
    threads = [threading.Thread(target=pr, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.pr_num for r in results) == list(range(1, 9))
    refs = api.list_repo_refs("alice/prs", include_pull_requests=True).pull_requests
    assert sorted(r.ref for r in refs) == sorted(f"refs/pr/{n}" for n in range(1, 9))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_malformed_requests_get_json_4xx_and_no_traceback(api, hub):
    api.create_repo("alice/m")
    records = _Records()
    loggers = [logging.getLogger(n) for n in ("toolkit.hub", "uvicorn.error", "uvicorn")]
    for lg in loggers:
        lg.addHandler(records)
    blob = next(iter(api.list_repo_tree("alice/m"))).blob_id  # a sha that is not a commit
    base, m = hub.url, f"{hub.url}/api/models/alice/m"
    cases = [
        ("GET", f"{base}/api/models/alice/m%0A", None), ("GET", f"{base}/alice/m/resolve/main/a%0Ab", None),
        ("GET", f"{base}/alice/m/resolve/ma%0Ain/a", None), ("GET", f"{m}/revision/ma%00in", None),
        ("GET", f"{m}/tree/main/a%0Ab", None), ("GET", f"{m}/commits/m%00ain", None),
        ("GET", f"{m}/tree/refs%2F..%2F..%2Fconfig", None), ("GET", f"{m}/revision/{blob}", None),
        ("GET", f"{base}/api/models/alice", None), ("GET", f"{base}/", None), ("PUT", f"{base}/lfs-upload/x", b""),
        ("POST", f"{base}/api/repos/create", b"{not json"), ("POST", f"{base}/api/repos/create", b"[1]"),
        ("POST", f"{base}/api/repos/create", b'{"name": 5}'),
        ("POST", f"{base}/api/repos/create", b'{"name": "x", "organization": ["a"]}'),
        ("POST", f"{base}/api/repos/create", b'{"name": "x", "private": "maybe"}'),
        ("POST", f"{base}/api/repos/create", b"\xff\xfe"),
        ("POST", f"{m}/preupload/main", b'{"files": [1]}'),
        ("POST", f"{m}/preupload/main", b'{"files": [{"path": "a", "size": 1, "sample": "***"}]}'),
        ("POST", f"{m}/commit/main", b'{"key": "header", "value": []}\n'),
        ("POST", f"{m}/commit/main", _ndjson({"key": "lfsFile", "value": {"path": "a", "oid": "0" * 64,
                                                                          "size": "x"}})),
        ("POST", f"{m}/commit/main", _ndjson(_file(5))), ("POST", f"{m}/commit/main", b'{"key": "header"}'),
        ("POST", f"{m}/commit/main", json.dumps({"key": "header", "value": {"summary": 5}}).encode()),
        ("POST", f"{m}/commit/main", _ndjson({"key": "file", "value": {"path": "a", "content": "!!"}})),
        ("POST", f"{m}/paths-info/main", b'{"paths": "x"}'), ("POST", f"{m}/paths-info/main", b'{"paths": [5]}'),
        ("POST", f"{base}/alice/m.git/info/lfs/objects/batch", b'{"operation": "upload", "objects": "x"}'),
        ("POST", f"{base}/alice/m.git/info/lfs/objects/verify", b'{"oid": [], "size": {}}'),
        ("POST", f"{m}/tag/main", b'{"tag": 5}'), ("POST", f"{m}/branch/dev", b'{"startingPoint": 5}'),
        ("PUT", f"{m}/settings", b'{"visibility": 5}'), ("DELETE", f"{m}/branch/nope", b""),
        # lone surrogates (valid JSON escapes, not UTF-8) in paths, refs and messages
        ("POST", f"{m}/commit/main", _ndjson(_file("\ud800.txt"))),
        ("POST", f"{m}/commit/main", _ndjson(_file("a.txt"), summary="\ud800")),
        ("POST", f"{m}/tag/main", b'{"tag": "\\ud800"}'), ("POST", f"{m}/branch/dev", b'{"startingPoint": "\\ud800"}'),
        ("POST", f"{m}/preupload/main", b'{"files": [{"path": "\\ud800", "size": 1, "sample": ""}]}'),
    ]
    try:
        for method, url, body in cases:
            headers = {**AUTH, "Content-Type": "application/json"}
            r = httpx.request(method, url, content=body, headers=headers)
            assert 400 <= r.status_code < 500 and "error" in r.json(), (method, url, body, r.status_code, r.text)
            assert "\n" not in r.headers.get("X-Error-Message", "")
        # control characters sent raw in the request line: answered, not dropped
        head = _raw(base, b"GET /api/models/alice/m\x01x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), head        # ...with a JSON error like any other
        assert b"application/json" in head and json.loads(head.split(b"\r\n\r\n", 1)[1])["error"]
        lfs = httpx.post(f"{base}/alice/m.git/info/lfs/objects/batch", headers=AUTH,
                         json={"operation": "upload", "objects": [1, {"oid": "z", "size": True}]})
        assert lfs.status_code == 200 and [o["error"]["code"] for o in lfs.json()["objects"]] == [422, 422]
    finally:
        for lg in loggers:
            lg.removeHandler(records)
    assert [r.getMessage() for r in records.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert api.model_info("alice/m").id == "alice/m"


def test_body_limits_and_auth_before_body(tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    tokens = {"alice": (ALICE, "write"), "bob": (BOB, "read")}
    with HubServer(tmp_path / "hub", tokens=tokens, max_body_bytes=50_000, max_lfs_bytes=100_000) as hub:
        api = HfApi(endpoint=hub.url, token=ALICE)
        api.create_repo("alice/big")
        api.upload_file(path_or_fileobj=b"small" * 100, path_in_repo="s.txt", repo_id="alice/big")
        with pytest.raises(HfHubHTTPError) as err:  # a 60 kB inline file: commit body over the limit
            api.upload_file(path_or_fileobj=b"t" * 60_000, path_in_repo="t.txt", repo_id="alice/big")
        assert err.value.response.status_code == 413 and "too large" in err.value.response.json()["error"]
        with pytest.raises(Exception, match="larger than this server's limit"):  # LFS object over the limit
            api.upload_file(path_or_fileobj=b"\0" * 200_000, path_in_repo="w.bin", repo_id="alice/big")
        api.upload_file(path_or_fileobj=b"\0" * 90_000, path_in_repo="ok.bin", repo_id="alice/big")

        def chunks():
            for _ in range(100):
                yield b"x" * 1000
        r = httpx.post(f"{hub.url}/api/models/alice/big/commit/main", content=chunks(), headers=AUTH)
        assert r.status_code == 413 and "error" in r.json()

        # auth is checked before a byte of the body is read: the answer comes at once
        commit = "POST /api/models/alice/big/commit/main HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n"
        assert _raw(hub.url, (commit + "\r\n").encode()).startswith(b"HTTP/1.1 401")
        assert _raw(hub.url, (commit + f"Authorization: Bearer {BOB}\r\n\r\n").encode()).startswith(b"HTTP/1.1 403")
        assert _raw(hub.url, (commit + "Authorization: Bearer hf_wrong\r\n\r\n").encode()).startswith(b"HTTP/1.1 401")
        create = "POST /api/repos/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n"
        assert _raw(hub.url, create.encode()).startswith(b"HTTP/1.1 401")
        assert _raw(hub.url, (commit + f"Authorization: Bearer {ALICE}\r\n\r\n").encode()).startswith(b"HTTP/1.1 413")
        assert sorted(api.list_repo_files("alice/big")) == [".gitattributes", "ok.bin", "s.txt"]


def test_deep_json_bodies_and_huge_range_numbers_are_4xx(api, hub):
    api.create_repo("alice/deep")
    api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="a.txt", repo_id="alice/deep")
    m = f"{hub.url}/api/models/alice/deep"
    deep = b"[" * 100_000
    for url, body in ((f"{m}/commit/main", deep), (f"{m}/commit/main", _ndjson() + deep),
                      (f"{hub.url}/api/repos/create", deep), (f"{m}/preupload/main", b'{"files": ' + deep)):
        r = httpx.post(url, content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"], (url, r.status_code, r.text)
    url, huge = f"{hub.url}/alice/deep/resolve/main/a.txt", "9" * 5000
    for spec in (f"bytes={huge}-", f"bytes={huge}-{huge}", f"bytes=3-{huge}0"):
        r = httpx.get(url, headers={"Range": spec})
        want = 206 if spec.startswith("bytes=3-") else 416
        assert r.status_code == want, (spec[:20], r.status_code, r.text)
        assert r.headers["Content-Range"] == ("bytes 3-9/10" if want == 206 else "bytes */10")
    r = httpx.get(url, headers={"Range": f"bytes=-{huge}"})          # the last <huge> bytes: all of them
    assert r.status_code == 206 and r.content == b"0123456789"
    r = httpx.get(url, headers={"Range": "bytes=" + "0" * 5000 + "2-3"})   # leading zeros are still 2
    assert r.status_code == 206 and r.content == b"23"
    assert api.list_repo_files("alice/deep") == [".gitattributes", "a.txt"]
