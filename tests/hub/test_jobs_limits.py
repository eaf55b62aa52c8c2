"""The Jobs API's limits, over real HTTP with real jobs: an open Hub runs none and browsers cannot
write cross-site or through a foreign Host; a job leaves no process behind; per-namespace limits;
bounded log lines, logs and memory; log followers hold no request thread."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from toolkit.hub import jobs as jobs_mod, jobstore, sandbox
from toolkit.hub.server import HubServer

from .test_jobs import ALICE, CAROL, IMAGE, _marker, _procs, _wait_for, client, jobs_hub, py, wait  # noqa: F401

AUTH = {"authorization": f"Bearer {ALICE}"}
SPEC = {"command": ["true"], "dockerImage": IMAGE}


@pytest.fixture
def token_hub(tmp_path):
    """A Hub with tokens (alice, carol, bob) that runs no job: these tests need no sandbox."""
    with HubServer(tmp_path / "hub", tokens={"alice": (ALICE, "write"), "carol": (CAROL, "write"),
                                             "bob": ("hf_bob_r_limits", "read")}) as server:
        yield server


def test_an_open_hub_runs_no_jobs(tmp_path):
    with HubServer(tmp_path / "hub") as hub:                # no tokens: anyone may read and write repos
        for headers in ({}, {"authorization": "Bearer anything"}):
            r = httpx.post(f"{hub.url}/api/jobs/anonymous", json=SPEC, headers=headers)
            assert r.status_code == 403 and "needs tokens" in r.json()["error"], r.text
        assert hub.app.jobs.jobs == {}
        HfApi(endpoint=hub.url).create_repo("someone/repo")   # the rest of an open Hub still works


def test_cross_site_writes_and_foreign_hosts_are_refused(token_hub):
    jobs_hub = token_hub
    url, port = jobs_hub.url, jobs_hub.port
    # a page on evil.example posting text/plain (no preflight) to the Jobs API, with or without a token
    for headers in ({"origin": "http://evil.example", "content-type": "text/plain"},
                    {**AUTH, "origin": "http://evil.example"}, {**AUTH, "origin": "null"},
                    {**AUTH, "sec-fetch-site": "cross-site"}):
        r = httpx.post(f"{url}/api/jobs/alice", content=b'{"command": ["true"], "dockerImage": "x"}', headers=headers)
        assert r.status_code == 403 and "cross-site" in r.json()["error"], (headers, r.text)
    r = httpx.post(f"{url}/api/repos/create", json={"name": "x"}, headers={**AUTH, "origin": "http://evil.example"})
    assert r.status_code == 403                              # every state-changing route, not only jobs
    assert jobs_hub.app.jobs.jobs == {}
    # DNS rebinding: a name resolving to 127.0.0.1 reaches the socket with its own Host
    r = httpx.get(f"{url}/api/models", headers={"host": f"rebind.evil.example:{port}"})
    assert r.status_code == 403 and "--allowed-host" in r.json()["error"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert httpx.get(f"{url}/api/models", headers={"host": host}).status_code == 200, host
    same = httpx.post(f"{url}/api/repos/create", json={"name": "same"}, headers={**AUTH, "origin": url})
    assert same.status_code == 200, same.text               # the Hub's own origin may write
    client(jobs_hub).create_repo("alice/plain")             # huggingface_hub: no Origin, Host = its URL


def test_allowed_host_names_a_public_name(tmp_path):
    with HubServer(tmp_path / "hub", allowed_hosts=["hub.example.org"]) as hub:
        assert httpx.get(f"{hub.url}/api/models", headers={"host": "hub.example.org"}).status_code == 200
        assert httpx.get(f"{hub.url}/api/models", headers={"host": "other.example.org"}).status_code == 403


def test_jobs_refused_with_a_reason_when_no_sandbox_can_be_had(token_hub, monkeypatch):
    jobs_hub = token_hub
    monkeypatch.setattr(sandbox, "unavailable", lambda: "bubblewrap (bwrap) is not installed: install it")
    r = httpx.post(f"{jobs_hub.url}/api/jobs/alice", json=SPEC, headers=AUTH)
    assert r.status_code == 503 and "only in a sandbox and bubblewrap (bwrap) is not installed" in r.json()["error"]
    jobs_hub.app.jobs.mode = "unsafe-shared"                 # the operator's choice: refused with two users
    r = httpx.post(f"{jobs_hub.url}/api/jobs/alice", json=SPEC, headers=AUTH)
    assert r.status_code == 503 and "one user, not 3" in r.json()["error"]
    assert jobs_hub.app.jobs.jobs == {}


def test_unsafe_shared_runs_jobs_for_a_single_user(tmp_path):
    with HubServer(tmp_path / "hub", tokens={"alice": (ALICE, "write", ("lab",))}, jobs="unsafe-shared") as hub:
        api = client(hub)
        job = api.run_job(image=IMAGE, command=py("print('unisolated')"))
        assert wait(api, job.id).status.stage == "COMPLETED"
        assert list(api.fetch_job_logs(job_id=job.id, namespace="alice")) == ["unisolated"]


@pytest.mark.parametrize("ending", ["end", "cancel", "timeout"])
def test_no_process_of_a_job_survives_it(jobs_hub, ending):
    api, bg, fg = client(jobs_hub), _marker(), _marker()
    last = {"end": "echo done", "cancel": f"sleep {fg}", "timeout": f"exec sleep {fg}"}[ending]
    job = api.run_job(image=IMAGE, command=["sh", "-c", f"setsid sleep {bg} & sleep {bg} & {last}"],
                      timeout=3 if ending == "timeout" else 600)
    if ending == "cancel":
        assert _wait_for(lambda: len(_procs(bg)) == 2 and _procs(fg), 20)
        api.cancel_job(job_id=job.id, namespace="alice")
    stage = wait(api, job.id, timeout=60).status.stage
    assert stage == {"end": "COMPLETED", "cancel": "CANCELED", "timeout": "ERROR"}[ending]
    assert _wait_for(lambda: not _procs(bg) and not _procs(fg), 10), f"a background process survived ({ending})"


def test_limits_are_per_namespace(jobs_hub):
    alice, carol = client(jobs_hub), client(jobs_hub, CAROL)
    runner = jobs_hub.app.jobs
    long = [alice.run_job(image=IMAGE, command=py("import time; time.sleep(600)"))
            for _ in range(runner.max_jobs_per_ns)]
    with pytest.raises(HfHubHTTPError) as e:
        alice.run_job(image=IMAGE, command=py("pass"))
    assert e.value.response.status_code == 429 and "in namespace 'alice'" in str(e.value)
    # carol is neither refused nor kept waiting by alice's queue: one of the two slots is not alice's
    job = carol.run_job(image=IMAGE, command=py("print('carol ran')"))
    assert wait(carol, job.id, ns="carol", timeout=30).status.stage == "COMPLETED"
    assert sum(alice.inspect_job(job_id=j.id, namespace="alice").status.stage == "RUNNING" for j in long) == 1
    for j in long:
        alice.cancel_job(job_id=j.id, namespace="alice")


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_a_huge_line_is_cut_and_the_hub_memory_stays_flat(jobs_hub):
    api, peak, stop = client(jobs_hub), [_rss()], threading.Event()
    before = peak[0]

    def sample():
        while not stop.is_set():
            peak.append(_rss())
            time.sleep(0.01)
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    job = api.run_job(image=IMAGE, command=py(
        "import sys; sys.stdout.write('x' * (200 * 1024 ** 2) + '\\n'); print('after')"))
    try:
        assert wait(api, job.id, timeout=120).status.stage == "COMPLETED"
    finally:
        stop.set()
        watcher.join()
    lines = list(api.fetch_job_logs(job_id=job.id, namespace="alice"))
    assert lines[-1] == "after" and lines[0].endswith(jobstore.LINE_CUT) and len(lines[0]) < 20_000
    grew = (max(peak) - before) / 1024 ** 2
    print(f"hub RSS grew by {grew:.1f} MiB for a 200 MiB line")
    assert grew < 64, f"the Hub's RSS grew by {grew:.0f} MiB"


def test_logs_and_finished_jobs_are_bounded(jobs_hub, monkeypatch):
    monkeypatch.setattr(jobstore, "MAX_LOG_BYTES", 20_000)
    monkeypatch.setattr(jobs_mod, "MAX_FINISHED_IN_MEMORY", 2)
    api = client(jobs_hub)
    ids = [api.run_job(image=IMAGE, command=py(f"for i in range(2000): print({n}, 'x' * 60, i)")).id
           for n in range(4)]
    for job_id in ids:
        assert wait(api, job_id).status.stage == "COMPLETED"
    runner = jobs_hub.app.jobs
    # finished jobs kept in memory: 2 (the others are read back from disk); a job of an earlier test
    # on this Hub may still be winding down, and unfinished jobs are always held; read under the
    # runner's lock, as a job finishing right now is done a moment before its _finish evicts the oldest
    with runner.cond:
        assert len([j for j in runner.jobs.values() if j.done]) <= 2
        assert not set(ids[:2]) & set(runner.jobs)
    assert {j.id for j in api.list_jobs(namespace="alice")} == set(ids)
    lines = list(api.fetch_job_logs(job_id=ids[0], namespace="alice"))
    assert lines[0].startswith("0 xxx") and lines[-1].startswith("[log truncated by the Hub")
    assert runner.store.log_path(ids[0]).stat().st_size <= 20_200


def _follower(hub, job_id, token=ALICE):
    """An open SSE stream of the job's logs (headers received); close() ends it."""
    c = httpx.Client(timeout=10)
    stream = c.stream("GET", f"{hub.url}/api/jobs/alice/{job_id}/logs", headers={"authorization": f"Bearer {token}"})
    return c, stream, stream.__enter__()


def test_log_followers_hold_no_request_thread_and_are_capped(jobs_hub):
    alice, carol, runner = client(jobs_hub), client(jobs_hub, CAROL), jobs_hub.app.jobs
    job = alice.run_job(image=IMAGE, command=py("import time; print('up', flush=True); time.sleep(600)"))
    runner.max_followers = runner.max_followers_per_ns = 100
    followers = [_follower(jobs_hub, job.id) for _ in range(45)]
    try:
        assert all(r.status_code == 200 for *_, r in followers)
        t0 = time.monotonic()
        list(carol.list_models())                            # another user, another route
        took = time.monotonic() - t0
        print(f"GET /api/models with 45 followers: {took * 1000:.0f} ms")
        assert took < 2, f"GET /api/models took {took:.1f} s with 45 log followers"
        runner.max_followers_per_ns = 45                     # alice's 46th is refused ...
        c, stream, r = _follower(jobs_hub, job.id)
        assert r.status_code == 429 and "log followers" in r.read().decode()
        stream.__exit__(None, None, None)
        c.close()
        for c, stream, _ in followers[:5]:                   # ... until some of hers disconnect
            stream.__exit__(None, None, None)
            c.close()
        del followers[:5]
        assert _wait_for(lambda: runner.followers["alice"] == 40, 10), runner.followers
        followers.append(_follower(jobs_hub, job.id))
        assert followers[-1][2].status_code == 200
    finally:
        for c, stream, _ in followers:
            stream.__exit__(None, None, None)
            c.close()
        alice.cancel_job(job_id=job.id, namespace="alice")
