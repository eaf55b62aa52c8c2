"""The embedded Hub's HF Jobs API, driven by huggingface_hub's real jobs client: stages, logs
(SSE), cancel (process group), timeout, bounds, ownership, secrets, hostile specs."""
from __future__ import annotations

import json
import os
import shlex
import sys
import time

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from toolkit.hub import sandbox
from toolkit.hub.jobs_image import translate
from toolkit.hub.server import HubServer

ALICE, CAROL, BOB = "hf_alice_jobs_w", "hf_carol_jobs_w", "hf_bob_jobs_r"
PY = sys.executable
IMAGE = "python:3.12"


def needs_sandbox() -> None:
    """Skip where jobs cannot run: no bubblewrap, or no user namespaces (the Hub refuses jobs there)."""
    why = sandbox.unavailable()
    if why:
        pytest.skip(f"jobs cannot run here: {why}")


@pytest.fixture
def jobs_hub(tmp_path, monkeypatch):
    needs_sandbox()
    monkeypatch.setenv("HF_HUB_DISABLE_EXPERIMENTAL_WARNING", "1")
    with HubServer(tmp_path / "hub", tokens={"alice": (ALICE, "write", ("lab",)), "carol": (CAROL, "write"),
                                             "bob": (BOB, "read")}) as server:
        yield server


def client(hub, token=ALICE) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def wait(api, job_id, ns="alice", timeout=60):
    return api.wait_for_job(job_id, namespace=ns, timeout=timeout, poll_interval=0.2)


def test_job_runs_with_env_and_masked_secret(jobs_hub):
    api = client(jobs_hub)
    job = api.run_job(image=IMAGE, command=py(
        "import os; print('env', os.environ['GREETING']); print('secret', os.environ['MY_SECRET']);"
        "print('endpoint', os.environ['HF_ENDPOINT'])"), env={"GREETING": "hello"},
        secrets={"MY_SECRET": "s3cr3t-value"}, flavor="a10g-small", timeout="5m")
    assert job.status.stage in ("SCHEDULING", "RUNNING") and job.owner.name == "alice"
    done = wait(api, job.id)
    assert done.status.stage == "COMPLETED", done.status
    assert done.flavor == "a10g-small" and done.secrets == {"MY_SECRET": "***"}
    lines = list(api.fetch_job_logs(job_id=job.id, namespace="alice"))
    assert lines == ["env hello", "secret ***", f"endpoint {jobs_hub.url}"]
    # the secret's value appears in no API answer
    raw = httpx.get(f"{jobs_hub.url}/api/jobs/alice", headers={"authorization": f"Bearer {ALICE}"}).text
    assert "s3cr3t-value" not in raw and "GREETING" in raw


def test_failed_job_is_error_with_exit_code(jobs_hub):
    api = client(jobs_hub)
    job = api.run_job(image=IMAGE, command=py("import sys; print('bye'); sys.exit(3)"))
    done = wait(api, job.id)
    assert done.status.stage == "ERROR" and "exit code: 3" in done.status.message
    assert list(api.fetch_job_logs(job_id=job.id, namespace="alice")) == ["bye"]


def test_logs_follow_stream_until_the_job_ends(jobs_hub):
    api = client(jobs_hub)
    job = api.run_job(image=IMAGE, command=py(
        "import time\nfor i in range(4):\n    print('line', i, flush=True); time.sleep(0.4)"))
    t0 = time.monotonic()
    lines = list(api.fetch_job_logs(job_id=job.id, namespace="alice", follow=True))
    assert lines == [f"line {i}" for i in range(4)]
    assert api.inspect_job(job_id=job.id, namespace="alice").status.stage == "COMPLETED"
    assert time.monotonic() - t0 < 30
    assert list(api.fetch_job_logs(job_id=job.id, namespace="alice", tail=2)) == ["line 2", "line 3"]


def test_cancel_kills_the_process_group(jobs_hub):
    api = client(jobs_hub)
    marker = _marker()
    # the job starts a grandchild and sleeps: cancel must kill both
    job = api.run_job(image=IMAGE, command=["sh", "-c", f"sleep {marker} & echo started; wait"])
    assert _wait_for(lambda: _procs(marker), 20), "the job's child never started"
    assert api.inspect_job(job_id=job.id, namespace="alice").status.stage == "RUNNING"
    api.cancel_job(job_id=job.id, namespace="alice")
    done = wait(api, job.id, timeout=30)
    assert done.status.stage == "CANCELED"
    assert _wait_for(lambda: not _procs(marker), 10), "the job's child survived the cancel"


def _marker() -> str:
    """A unique ``sleep`` duration: finds a job's processes from outside its PID namespace."""
    return f"{1000 + int.from_bytes(os.urandom(3), 'big') % 900_000}.{os.getpid() % 97}"


def _procs(marker: str) -> list[int]:
    """Live processes running ``sleep MARKER``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[1:2] == [marker.encode()] and argv[0].endswith(b"sleep") and _alive(int(pid)):
            out.append(int(pid))
    return out


def _wait_for(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:        # a zombie is dead
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_timeout_stops_the_job(jobs_hub):
    api = client(jobs_hub)
    job = api.run_job(image=IMAGE, command=py("import time; print('x', flush=True); time.sleep(60)"), timeout=1)
    done = wait(api, job.id, timeout=30)
    assert done.status.stage == "ERROR" and "timed out after 1 s" in done.status.message


def test_bounded_running_and_unfinished_jobs(jobs_hub):
    api = client(jobs_hub)
    jobs_hub.app.jobs.max_running, jobs_hub.app.jobs.max_jobs = 1, 2
    first = api.run_job(image=IMAGE, command=py("import time; time.sleep(60)"))
    second = api.run_job(image=IMAGE, command=py("print('second ran')"))
    time.sleep(0.5)
    assert api.inspect_job(job_id=second.id, namespace="alice").status.stage == "SCHEDULING"
    with pytest.raises(HfHubHTTPError) as e:      # a third unfinished job is refused
        api.run_job(image=IMAGE, command=py("pass"))
    assert e.value.response.status_code == 429
    api.cancel_job(job_id=first.id, namespace="alice")
    assert wait(api, second.id).status.stage == "COMPLETED"      # the slot went to the waiting job
    assert list(api.fetch_job_logs(job_id=second.id, namespace="alice")) == ["second ran"]
    stages = {j.id: j.status.stage for j in api.list_jobs(namespace="alice")}
    assert stages == {first.id: "CANCELED", second.id: "COMPLETED"}
    assert [j.id for j in api.list_jobs(namespace="alice", status="CANCELED")] == [first.id]


def test_jobs_belong_to_their_namespace(jobs_hub):
    alice, carol, bob = client(jobs_hub), client(jobs_hub, CAROL), client(jobs_hub, BOB)
    job = alice.run_job(image=IMAGE, command=py("import time; time.sleep(30)"), labels={"team": "x"})
    org_job = alice.run_job(image=IMAGE, command=py("pass"), namespace="lab")      # alice's org
    for api, ns, code in ((carol, "alice", 403), (bob, "bob", 403), (carol, "lab", 403)):
        with pytest.raises(HfHubHTTPError) as e:      # write elsewhere, or with a read token
            api.run_job(image=IMAGE, command=py("pass"), namespace=ns)
        assert e.value.response.status_code == code
    with pytest.raises(HfHubHTTPError) as e:
        carol.inspect_job(job_id=job.id, namespace="alice")
    assert e.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as e:
        carol.cancel_job(job_id=job.id, namespace="alice")
    assert e.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as e:       # her own namespace does not hold alice's job
        carol.inspect_job(job_id=job.id, namespace="carol")
    assert e.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as e:
        list(carol.fetch_job_logs(job_id=job.id, namespace="alice"))
    assert e.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as e:
        list(carol.list_jobs(namespace="alice"))
    assert e.value.response.status_code == 403
    anon = httpx.post(f"{jobs_hub.url}/api/jobs/alice", json={"command": ["true"], "dockerImage": IMAGE})
    assert anon.status_code == 401
    assert list(carol.list_jobs(namespace="carol")) == []
    assert alice.inspect_job(job_id=job.id, namespace="alice").status.stage == "RUNNING"
    assert [j.id for j in alice.list_jobs(namespace="alice", labels={"team": "x"})] == [job.id]
    assert wait(alice, org_job.id, ns="lab").status.stage == "COMPLETED"
    alice.cancel_job(job_id=job.id, namespace="alice")
    assert wait(alice, job.id).status.stage == "CANCELED"


def _post(hub, body, ns="alice", token=ALICE, **kw):
    return httpx.post(f"{hub.url}/api/jobs/{ns}", headers={"authorization": f"Bearer {token}"}, timeout=30,
                      **({"content": body} if isinstance(body, (bytes, str)) else {"json": body}), **kw)


GOOD = {"command": ["true"], "arguments": [], "environment": {}, "flavor": "cpu-basic", "dockerImage": IMAGE}


@pytest.mark.parametrize("change, status, words", [
    ({"timeoutSeconds": 0}, 400, "timeoutSeconds"),
    ({"timeoutSeconds": -5}, 400, "timeoutSeconds"),
    ({"timeoutSeconds": "abc"}, 400, "timeoutSeconds"),
    ({"timeoutSeconds": True}, 400, "timeoutSeconds"),
    ({"timeoutSeconds": 10 ** 12}, 400, "timeoutSeconds"),
    ({"flavor": "h100-free"}, 400, "flavor"),
    ({"command": "rm -rf /"}, 400, "'command' must be a list"),
    ({"command": []}, 400, "command"),
    ({"command": ["echo", "a\x00b"]}, 400, "NUL"),
    ({"command": ["x" * 70_000]}, 400, "longer than"),
    ({"environment": {"A=B": "x"}}, 400, "environment variable name"),
    ({"environment": {"A": {"nested": 1}}}, 400, "env 'A'"),
    ({"secrets": {"T": ["list"]}}, 400, "secret 'T'"),
    ({"labels": {"k": "v w"}}, 400, "labels"),
    ({"volumes": [{"type": "bucket", "source": "a/b", "mountPath": "/data"}]}, 400, "volumes"),
    ({"ssh": {"enabled": True}}, 400, "SSH"),
    ({"attempts": 3}, 400, "attempts"),
    ({"dockerImage": None}, 400, "dockerImage"),
    ({"surprise": 1}, 400, "unknown field"),
])
def test_hostile_specs_are_refused(jobs_hub, change, status, words):
    r = _post(jobs_hub, {**GOOD, **change})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert jobs_hub.app.jobs.jobs == {}            # nothing ran


def test_hostile_requests(jobs_hub):
    assert _post(jobs_hub, b"x" * (2 * 1024 ** 2)).status_code == 413            # huge payload
    assert _post(jobs_hub, b"{not json").status_code == 400
    assert _post(jobs_hub, b"[1, 2]").status_code == 400
    for ns in ("a--b", "..", "x" * 200, "al ice"):
        assert _post(jobs_hub, GOOD, ns=ns).status_code in (400, 404), ns
    h = {"authorization": f"Bearer {ALICE}"}
    for path in ("alice/not-a-job", "alice/" + "0" * 24, "alice/../../etc/passwd", "alice/" + "0" * 24 + "/logs"):
        assert httpx.get(f"{jobs_hub.url}/api/jobs/{path}", headers=h).status_code in (400, 404), path
    assert httpx.get(f"{jobs_hub.url}/api/jobs/alice/{'0' * 24}/logs?tail=-1", headers=h).status_code == 404
    assert jobs_hub.app.jobs.jobs == {}


def test_uv_image_shim_runs_a_pep723_script(jobs_hub):
    script = ("# /// script\n# dependencies = ['pyyaml']\n# ///\nimport sys, yaml\n"
              "print(yaml.safe_dump({'args': sys.argv[1:]}).strip())\n")
    api = client(jobs_hub)           # the job writes its script in its own work dir, then runs it
    job = api.run_job(image="ghcr.io/astral-sh/uv:python3.12-bookworm", command=[
        "sh", "-c", f"printf %s {shlex.quote(script)} > job.py && exec uv run --with pyyaml job.py --a 1"])
    assert wait(api, job.id).status.stage == "COMPLETED"
    assert list(api.fetch_job_logs(job_id=job.id, namespace="alice")) == ["args:", "- --a", "- '1'"]
    assert translate(["uv", "run", "--python", "3.12", "python", "-c", "x"], "/v/bin/python") == \
        ["/v/bin/python", "-c", "x"]
    with pytest.raises(SystemExit, match="only `uv run`"):
        translate(["uv", "pip", "install", "x"], PY)


def test_hardware_list_and_json_errors(jobs_hub):
    names = [h.name for h in client(jobs_hub).list_jobs_hardware()]
    assert {"cpu-basic", "a10g-small", "a100-large", "h200"} <= set(names)
    r = httpx.get(f"{jobs_hub.url}/api/jobs/alice/{'1' * 24}", headers={"authorization": f"Bearer {ALICE}"})
    assert r.status_code == 404 and json.loads(r.text)["error"].startswith("Job not found")
