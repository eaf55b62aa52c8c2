"""Jobs on a real ``qup hub serve``: a job cannot read what it does not own (other namespaces'
private repos on disk, the Hub's tokens, other jobs' secrets), jobs die with their Hub and are
remembered by the next one, ``--port 0`` and IPv6 give jobs a usable ``HF_ENDPOINT``."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import httpx
import pytest
from huggingface_hub import HfApi

from ..conftest import VENV_BIN
from .test_jobs import IMAGE, _marker, _procs, _wait_for, needs_sandbox

ALICE, CAROL, DAVE = "hf_alice_iso_w_4a1c", "hf_carol_iso_w_9c2e", "hf_dave_env_w_77d1"
SECRET = "TOPSECRET-" + os.urandom(6).hex()
PROBE = r"""
import os, sys
root, hub_pid, tokens_file = sys.argv[1], sys.argv[2], sys.argv[3]
def show(what, path):
    try:
        with open(path, 'rb') as f:
            print('READ', what, path, f.read(4096).replace(b'\0', b' ').decode('utf-8', 'replace'))
    except OSError as e:
        print('DENIED', what, path, type(e).__name__)
for d, _, files in os.walk(root):
    for name in files:
        show('root', os.path.join(d, name))
show('tokens-file', tokens_file)
for pid in [hub_pid, '1'] + [p for p in os.listdir('/proc') if p.isdigit()]:
    show('environ', f'/proc/{pid}/environ')
    show('cmdline', f'/proc/{pid}/cmdline')
pids = sorted(p for p in os.listdir('/proc') if p.isdigit())
print('whoami', os.getuid(), 'root exists:', os.path.exists(root), 'pids:', pids)
print('probe done')
"""


@pytest.fixture(autouse=True)
def _sandbox():
    needs_sandbox()


def _serve(tmp_path, root, *args, env=None, name="serve"):
    """Start ``qup hub serve --port 0``; returns (process, url read from its start line)."""
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([str(VENV_BIN / "qup"), "hub", "serve", "--root", str(root), "--port", "0", *args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    found = []

    def up():
        found[:] = re.findall(r" on (http://\S+),", log.read_text())
        return bool(found) and _reachable(found[0])
    if not _wait_for(up, 60):
        proc.kill()
        pytest.fail("qup hub serve did not come up: " + log.read_text()[-2000:])
    return proc, found[0]


def _reachable(url: str) -> bool:
    try:
        return httpx.get(url + "/api/whoami-v2", timeout=5).status_code in (200, 401)
    except httpx.HTTPError:
        return False


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "hub-tokens.txt"
    path.write_text(f"alice={ALICE}:write\ncarol={CAROL}:write\n")
    return path


def _stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=30)


def _logs(api, job_id, ns):
    return "\n".join(api.fetch_job_logs(job_id=job_id, namespace=ns))


def test_a_job_reads_no_other_namespace_no_hub_token_no_other_job_secret(tmp_path, tokens_file):
    root = tmp_path / "hub"
    proc, url = _serve(tmp_path, root, "--tokens-file", str(tokens_file),
                       env={"QUP_HUB_TOKENS": f"dave={DAVE}:write"})
    try:
        alice, carol = HfApi(endpoint=url, token=ALICE), HfApi(endpoint=url, token=CAROL)
        alice.create_repo("alice/vault", private=True)
        alice.upload_file(path_or_fileobj=SECRET.encode(), path_in_repo="secret.txt", repo_id="alice/vault")
        marker = _marker()
        running = alice.run_job(image=IMAGE, command=["sleep", marker], secrets={"HF_TOKEN": ALICE})
        assert _wait_for(lambda: _procs(marker), 20), "alice's job did not start"
        job = carol.run_job(image=IMAGE, command=[str(VENV_BIN / "python"), "-c", PROBE, str(root.resolve()),
                                                  str(proc.pid), str(tokens_file)], timeout=120)
        done = carol.wait_for_job(job_id=job.id, namespace="carol", timeout=120, poll_interval=0.2)
        text = _logs(carol, job.id, "carol")
        assert done.status.stage == "COMPLETED", (done.status, text[-2000:])
        assert "probe done" in text and "whoami 65534" in text, text[-2000:]
        for secret in (SECRET, ALICE, CAROL, DAVE, "QUP_HUB_TOKENS", "--tokens-file"):
            assert secret not in text, f"carol's job read {secret[:12]}...: {text[-3000:]}"
        assert "READ root" not in text and "READ tokens-file" not in text and "root exists: False" in text
        # its own PID namespace: it sees only itself (bwrap's init, its shell), not the Hub nor alice's job
        assert re.search(r"pids: \['1', '2'(, '\d+')?\]", text), text[-500:]
        assert alice.inspect_job(job_id=running.id, namespace="alice").status.stage == "RUNNING"
        alice.cancel_job(job_id=running.id, namespace="alice")
    finally:
        _stop(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_jobs_die_with_their_hub_and_the_next_hub_remembers_them(tmp_path, tokens_file, sig):
    root = tmp_path / "hub"
    proc, url = _serve(tmp_path, root, "--tokens-file", str(tokens_file))
    alice = HfApi(endpoint=url, token=ALICE)
    marker = _marker()
    job = alice.run_job(image=IMAGE, command=["sh", "-c", f"echo started; setsid sleep {marker} & sleep {marker}"],
                        timeout=3600)
    assert _wait_for(lambda: len(_procs(marker)) == 2, 20), "the job did not start"
    _stop(proc, sig)
    assert _wait_for(lambda: not _procs(marker), 15), f"the job outlived its Hub ({signal.Signals(sig).name})"
    proc, url = _serve(tmp_path, root, "--tokens-file", str(tokens_file), name="again")
    try:
        alice = HfApi(endpoint=url, token=ALICE)
        info = alice.inspect_job(job_id=job.id, namespace="alice")       # not a 404: the table is on disk
        if sig == signal.SIGKILL:
            assert info.status.stage == "ERROR" and "Hub that ran this job stopped" in info.status.message
        else:
            assert info.status.stage == "CANCELED" and "shutting down" in info.status.message
        assert [j.id for j in alice.list_jobs(namespace="alice")] == [job.id]
        alice.cancel_job(job_id=job.id, namespace="alice")                # answered, a no-op
        assert _logs(alice, job.id, "alice") == "started"
    finally:
        _stop(proc)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_port_0_and_ipv6_give_jobs_a_usable_endpoint(tmp_path, tokens_file, host):
    proc, url = _serve(tmp_path, tmp_path / "hub", "--tokens-file", str(tokens_file), "--host", host)
    try:
        assert not url.endswith(":0") and (host != "::1" or url.startswith("http://[::1]:"))
        alice = HfApi(endpoint=url, token=ALICE)
        code = ("import os, json, urllib.request as u; e = os.environ['HF_ENDPOINT']; print('endpoint', e); "
                "r = u.Request(e + '/api/whoami-v2', headers={'authorization': 'Bearer ' + os.environ['HF_TOKEN']});"
                " print('whoami', json.load(u.urlopen(r, timeout=10))['name'])")
        job = alice.run_job(image=IMAGE, command=[str(VENV_BIN / "python"), "-c", code],
                            secrets={"HF_TOKEN": ALICE})
        done = alice.wait_for_job(job_id=job.id, namespace="alice", timeout=60, poll_interval=0.2)
        text = _logs(alice, job.id, "alice")
        assert done.status.stage == "COMPLETED", text
        assert f"endpoint {url}" in text and "whoami alice" in text
    finally:
        _stop(proc)
