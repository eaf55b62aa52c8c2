"""Security review findings on access: namespaces and orgs, per-repo LFS objects, tokens file/env, cardData."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from toolkit.hub import HubServer

from ..conftest import VENV_BIN
from .test_server import _ok, _wait

A, B, C = "hf_alice_w", "hf_bob_w", "hf_carol_r"


@pytest.fixture
def two_writers(tmp_path, monkeypatch):
    """alice and bob, both with write tokens."""
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with HubServer(tmp_path / "hub", tokens={"alice": (A, "write"), "bob": (B, "write")}) as server:
        yield server


def _status(fn, *args, **kwargs) -> int:
    with pytest.raises(HfHubHTTPError) as err:
        fn(*args, **kwargs)
    return err.value.response.status_code


def _ndjson(*ops, summary="c") -> bytes:
    lines = [{"key": "header", "value": {"summary": summary}}, *ops]
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def test_writes_only_in_own_namespace(two_writers):
    alice, bob = HfApi(endpoint=two_writers.url, token=A), HfApi(endpoint=two_writers.url, token=B)
    alice.create_repo("alice/pub")
    alice.create_repo("alice/priv", private=True)
    before = [c.commit_id for c in alice.list_repo_commits("alice/pub")]

    with pytest.raises(HfHubHTTPError, match='rights to create a model under the namespace "alice"') as err:
        bob.create_repo("alice/new")
    assert err.value.response.status_code == 403
    for call in (lambda: bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/pub"),
                 lambda: bob.create_commit("alice/pub", operations=[CommitOperationAdd("x.txt", b"x")],
                                           commit_message="pr", create_pr=True),
                 lambda: bob.create_tag("alice/pub", tag="v1"),
                 lambda: bob.create_branch("alice/pub", branch="dev"),
                 lambda: bob.update_repo_settings("alice/pub", private=True),
                 lambda: bob.delete_repo("alice/pub")):
        assert _status(call) == 403
    lfs = httpx.post(f"{two_writers.url}/alice/pub.git/info/lfs/objects/batch",
                     headers={"Authorization": f"Bearer {B}"},
                     json={"operation": "upload", "objects": [{"oid": "0" * 64, "size": 1}]})
    assert lfs.status_code == 403 and "namespace" in lfs.json()["error"]
    assert [c.commit_id for c in alice.list_repo_commits("alice/pub")] == before
    assert alice.model_info("alice/pub").private is False and alice.list_repo_refs("alice/pub").tags == []

    # private repos: only tokens of their namespace see them; others get RepoNotFound, even to write
    with pytest.raises(RepositoryNotFoundError):
        bob.model_info("alice/priv")
    with pytest.raises(RepositoryNotFoundError):
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/priv")
    assert [m.id for m in bob.list_models(author="alice")] == ["alice/pub"]
    bob.create_repo("bob/own")  # a write token still writes in its own namespace
    assert _status(alice.upload_file, path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="bob/own") == 403


def test_org_members_read_and_write_org_repos(tmp_path):
    tokens = {"alice": (A, "write", ["acme"]), "bob": (B, "write"), "carol": (C, "read", ["acme"])}
    with HubServer(tmp_path / "hub", tokens=tokens) as hub:
        alice, bob, carol = (HfApi(endpoint=hub.url, token=t) for t in (A, B, C))
        assert [o["name"] for o in alice.whoami()["orgs"]] == ["acme"]
        alice.create_repo("acme/team", private=True, repo_type="dataset")
        alice.upload_file(path_or_fileobj=b"team", path_in_repo="t.txt", repo_id="acme/team",
                          repo_type="dataset")
        assert carol.dataset_info("acme/team").private is True  # carol's org, read token
        assert [d.id for d in carol.list_datasets(author="acme")] == ["acme/team"]
        assert [d.id for d in bob.list_datasets(author="acme")] == []
        with pytest.raises(RepositoryNotFoundError):
            bob.dataset_info("acme/team")
        with pytest.raises(HfHubHTTPError, match="read-only"):
            carol.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="acme/team",
                              repo_type="dataset")
        assert _status(bob.create_repo, "acme/other") == 403


def test_lfs_objects_belong_to_their_repo(two_writers):
    """Knowing a private file's sha256 gives nothing: no commit, no download, no existence oracle."""
    alice, bob = HfApi(endpoint=two_writers.url, token=A), HfApi(endpoint=two_writers.url, token=B)
    secret = b"private weights " * 1000
    oid, size = hashlib.sha256(secret).hexdigest(), len(secret)
    alice.create_repo("alice/vault", private=True)
    alice.upload_file(path_or_fileobj=secret, path_in_repo="w.bin", repo_id="alice/vault")
    bob.create_repo("bob/steal")
    auth = {"Authorization": f"Bearer {B}"}
    op = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": size}}
    r = httpx.post(f"{two_writers.url}/api/models/bob/steal/commit/main", content=_ndjson(op), headers=auth)
    assert r.status_code == 422 and "was not uploaded" in r.json()["error"]
    # a plain file shaped like the pointer is just text in bob's repo
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()
    bob.upload_file(path_or_fileobj=pointer, path_in_repo="p.txt", repo_id="bob/steal")
    got = httpx.get(f"{two_writers.url}/bob/steal/resolve/main/p.txt", headers=auth)
    assert got.content == pointer and "X-Linked-Etag" not in got.headers
    assert {f.path: f.lfs for f in bob.list_repo_tree("bob/steal")}["p.txt"] is None
    batch = httpx.post(f"{two_writers.url}/bob/steal.git/info/lfs/objects/batch", headers=auth,
                       json={"operation": "upload", "objects": [{"oid": oid, "size": size}]}).json()
    assert "upload" in batch["objects"][0]["actions"]  # must prove possession by uploading
    verify = httpx.post(f"{two_writers.url}/bob/steal.git/info/lfs/objects/verify", headers=auth,
                        json={"oid": oid, "size": size})
    assert verify.status_code == 404
    # alice's own repo still serves it; a real upload by bob works too
    assert httpx.get(f"{two_writers.url}/alice/vault/resolve/main/w.bin",
                     headers={"Authorization": f"Bearer {A}"}).content == secret
    bob.upload_file(path_or_fileobj=secret, path_in_repo="mine.bin", repo_id="bob/steal")
    assert httpx.get(f"{two_writers.url}/bob/steal/resolve/main/mine.bin").content == secret


def test_tokens_file_and_env_keep_tokens_out_of_argv_and_logs(tmp_path, free_port):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# qup hub tokens\nalice={A}:write:acme\n\ncarol={C}:read\n")
    env = {**os.environ, "QUP_HUB_TOKENS": f"bob={B}:write"}
    cmd = [str(VENV_BIN / "qup"), "hub", "serve", "--root", str(tmp_path / "r"), "--port", str(free_port),
           "--tokens-file", str(tokens_file)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{free_port}"
        assert _wait(lambda: _ok(url + "/api/whoami-v2"), timeout=30), "qup hub serve did not come up"
        who = {t: httpx.get(url + "/api/whoami-v2", headers={"Authorization": f"Bearer {t}"}).json()
               for t in (A, B, C)}
        assert [who[t]["name"] for t in (A, B, C)] == ["alice", "bob", "carol"]
        assert who[A]["orgs"][0]["name"] == "acme" and who[C]["auth"]["accessToken"]["role"] == "read"
        api = HfApi(endpoint=url, token=A)
        api.create_repo("acme/x")
        httpx.get(url + "/api/whoami-v2", headers={"Authorization": "Bearer hf_not_a_token"})
    finally:
        proc.terminate()
        logs = proc.communicate(timeout=10)[0]
    assert "3 token(s)" in logs and not any(t in logs for t in (A, B, C, "hf_not_a_token"))
    bad = subprocess.run(cmd[:-2] + ["--token", "x=hf_leak_me:admin"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "hf_leak_me" not in bad.stdout + bad.stderr


def test_repo_info_has_card_data(api):
    card = "---\nlicense: mit\ntags:\n- math\nconfigs:\n- config_name: rft\n  data_files: rft/*.parquet\n---\n# Demo\n"
    for repo_type in ("model", "dataset"):
        api.create_repo("alice/carded", repo_type=repo_type)
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id="alice/carded",
                        repo_type=repo_type)
        info = api.model_info("alice/carded") if repo_type == "model" else api.dataset_info("alice/carded")
        assert info.card_data is not None and info.card_data["license"] == "mit"
        assert info.card_data["tags"] == ["math"]
    api.create_repo("alice/plain")
    assert api.model_info("alice/plain").card_data is None
