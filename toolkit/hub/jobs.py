"""HF Jobs on the embedded Hub: each job runs on this machine as a subprocess.

The real Hub runs a job's ``command`` in a container of its ``dockerImage`` on the ``flavor``'s
hardware. Here the image and flavor are recorded, not used: the command runs in a subprocess of
the server's own Python environment, in a fresh work dir (``<root>/jobs/<id>/work``), with
``HF_ENDPOINT`` pointing at this Hub (as a job on huggingface.co talks to huggingface.co) and
``uv``/``uvx`` shims on ``PATH`` that run a ``uv run SCRIPT`` with this Python (the venv stands in
for the image and the script's inline dependencies; see :mod:`toolkit.hub.jobs_image`).

Bounded: at most ``max_running`` jobs run at once (the others wait in ``SCHEDULING``), at most
``max_jobs`` are unfinished, every job is killed at its ``timeoutSeconds``. Stages move like the
real API's: ``SCHEDULING`` → ``RUNNING`` → ``COMPLETED`` | ``ERROR`` | ``CANCELED``. Cancel kills
the job's whole process group. Secrets reach the process as environment variables; they are
never returned by the API, and their values are masked in the logs.

Example::

    runner = JobRunner("/tmp/hub/jobs", endpoint="http://127.0.0.1:8080")
    job = runner.submit("alice", {"command": ["echo", "hi"], "environment": {}, ...})
    runner.wait(job.id, 10); [line for _, line in job.logs]   # ['hi']
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import secrets as _secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HubError

log = logging.getLogger(__name__)
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
MAX_LOG_LINES = 20_000          # lines kept per job (the oldest are dropped beyond)
MAX_LINE_CHARS = 16_384          # one log line is cut beyond this
KILL_GRACE_S = 5.0               # SIGTERM, then SIGKILL after this
PASSTHROUGH_ENV = ("HOME", "LANG", "LC_ALL", "TMPDIR", "QUP_CACHE", "HF_HOME", "TOKENIZERS_PARALLELISM",
                   "OMP_NUM_THREADS")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    id: str
    namespace: str
    owner: str
    spec: dict                                   # validated (routes_jobs.validate_spec)
    secret_values: dict[str, str]                # never returned, never logged
    workdir: Path
    stage: str = "SCHEDULING"
    message: str | None = None
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    logs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=MAX_LOG_LINES))
    log_count: int = 0                           # lines ever logged (a cursor for followers)
    proc: subprocess.Popen | None = None
    cancel_requested: bool = False
    t0: float = field(default_factory=time.monotonic)
    t_start: float | None = None
    t_end: float | None = None

    @property
    def done(self) -> bool:
        return self.stage in TERMINAL

    def info(self) -> dict:
        """The job as the Jobs API returns it (``huggingface_hub.JobInfo`` fields); secrets by name only."""
        s = self.spec
        running = (self.t_end or time.monotonic()) - self.t_start if self.t_start else None
        out = {"id": self.id, "createdAt": self.created_at, "startedAt": self.started_at,
               "finishedAt": self.finished_at, "command": s["command"], "arguments": s["arguments"],
               "environment": s["environment"], "secrets": {k: "***" for k in s["secrets"]},
               "flavor": s["flavor"], "labels": s["labels"] or None, "timeoutSeconds": s["timeoutSeconds"],
               "status": {"stage": self.stage, "message": self.message},
               "durations": {"schedulingSecs": int((self.t_start or time.monotonic()) - self.t0),
                             "runningSecs": None if running is None else int(running),
                             "totalSecs": int((self.t_end or time.monotonic()) - self.t0)},
               "owner": {"id": self.namespace, "name": self.namespace, "type": "user"},
               "initiator": {"type": "user", "id": self.owner, "name": self.owner}}
        out.update({k: s[k] for k in ("dockerImage", "spaceId") if s.get(k)})
        return out


class JobRunner:
    """Runs jobs as subprocesses (see module docstring); thread-safe."""

    def __init__(self, root, endpoint: str = "", max_running: int = 2, max_jobs: int = 16,
                 python: str = sys.executable):
        self.root, self.endpoint = Path(root), endpoint
        self.max_running, self.max_jobs, self.python = max_running, max_jobs, python
        self.jobs: dict[str, Job] = {}
        self.cond = threading.Condition()
        self.closed = False

    # ------------------------------------------------------------------ API
    def submit(self, owner: str, namespace: str, spec: dict, secret_values: dict[str, str]) -> Job:
        with self.cond:
            if self.closed:
                raise HubError(503, "The Hub is shutting down: no new jobs")
            active = sum(not j.done for j in self.jobs.values())
            if active >= self.max_jobs:
                raise HubError(429, f"Too many unfinished jobs on this Hub ({active}, the limit is "
                                    f"{self.max_jobs}): wait for some to finish or cancel them")
            job_id = _secrets.token_hex(12)                      # 24 hex, like the Hub's ids
            job = Job(job_id, namespace, owner, spec, secret_values, self.root / job_id / "work")
            self.jobs[job_id] = job
            self._schedule()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def list(self, namespace: str) -> list[Job]:
        return sorted((j for j in self.jobs.values() if j.namespace == namespace),
                      key=lambda j: j.created_at, reverse=True)

    def cancel(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        with self.cond:
            if job.done:
                return job
            job.cancel_requested = True
            if job.proc is None:                                 # still scheduling: never starts
                self._finish(job, "CANCELED", "Canceled before it started")
                return job
        _kill(job.proc)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.jobs[job_id]
        with self.cond:
            self.cond.wait_for(lambda: job.done, timeout)
        return job

    def close(self) -> None:
        """Cancel every unfinished job (the server is stopping)."""
        with self.cond:
            self.closed = True
            pending = [j for j in self.jobs.values() if not j.done]
        for job in pending:
            self.cancel(job.id)
        for job in pending:
            self.wait(job.id, KILL_GRACE_S + 5)

    # ------------------------------------------------------------------ internals
    def _schedule(self) -> None:
        """Start waiting jobs while fewer than ``max_running`` run (call with the lock held)."""
        running = sum(j.stage == "RUNNING" for j in self.jobs.values())
        for job in sorted(self.jobs.values(), key=lambda j: j.t0):
            if running >= self.max_running:
                break
            if job.stage == "SCHEDULING" and not job.cancel_requested:
                running += 1
                self._start(job)

    def _start(self, job: Job) -> None:
        job.workdir.mkdir(parents=True, exist_ok=True)
        spec = job.spec
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env["PATH"] = os.pathsep.join([str(_shims(self.root, self.python)), str(Path(self.python).parent),
                                       "/usr/local/bin", "/usr/bin", "/bin"])
        env.update(HF_ENDPOINT=self.endpoint, HF_HUB_DISABLE_XET="1", JOB_ID=job.id,
                   PYTHONUNBUFFERED="1")
        env.update(spec["environment"])
        env.update(job.secret_values)
        argv = [*spec["command"], *spec["arguments"]]
        try:
            job.proc = subprocess.Popen(argv, cwd=job.workdir, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)       # its own process group
        except OSError as e:
            self._finish(job, "ERROR", f"cannot start {argv[0]!r}: {e.strerror}")
            return
        job.stage, job.started_at, job.t_start = "RUNNING", now(), time.monotonic()
        self._log(job, "===== Job started =====")
        threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"job-{job.id}").start()

    def _watch(self, job: Job) -> None:
        reader = threading.Thread(target=self._read, args=(job,), daemon=True)
        reader.start()
        timeout = job.spec["timeoutSeconds"]
        try:
            code = job.proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(job.proc)
            code, timed_out = job.proc.wait(), True
        reader.join(timeout=10)
        with self.cond:
            job.exit_code = code
            if job.cancel_requested:
                self._finish(job, "CANCELED", "Canceled by its owner")
            elif timed_out:
                self._finish(job, "ERROR", f"Job timed out after {timeout} s (timeoutSeconds)")
            elif code == 0:
                self._finish(job, "COMPLETED", None)
            else:
                self._finish(job, "ERROR", f"Job failed with exit code: {code}")

    def _read(self, job: Job) -> None:
        for raw in iter(job.proc.stdout.readline, b""):
            self._log(job, raw.decode("utf-8", "replace").rstrip("\r\n")[:MAX_LINE_CHARS])
        job.proc.stdout.close()

    def _log(self, job: Job, line: str) -> None:
        for value in job.secret_values.values():               # a job printing its token
            if len(value) >= 4:
                line = line.replace(value, "***")
        with self.cond:
            job.logs.append((now(), line))
            job.log_count += 1
            self.cond.notify_all()

    def _finish(self, job: Job, stage: str, message: str | None) -> None:
        """Terminal stage (call with the lock held); frees a slot for a waiting job."""
        job.stage, job.message, job.finished_at, job.t_end = stage, message, now(), time.monotonic()
        log.info("job %s (%s): %s%s", job.id, job.namespace, stage, f" ({message})" if message else "")
        self.cond.notify_all()
        if not self.closed:
            self._schedule()


def _kill(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period (in a thread: never blocks)."""
    if proc is None or proc.poll() is not None:
        return

    def kill():
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
    threading.Thread(target=kill, daemon=True).start()


def _shims(root: Path, python: str) -> Path:
    """A dir with ``uv`` and ``uvx`` that run through :mod:`toolkit.hub.jobs_image` with ``python``."""
    d = root / "bin"
    d.mkdir(parents=True, exist_ok=True)
    for tool in ("uv", "uvx"):
        path = d / tool
        text = f'#!/bin/sh\nexec "{python}" -m toolkit.hub.jobs_image {tool} "$@"\n'
        if not path.is_file() or path.read_text() != text:
            tmp = d / f".{tool}.tmp"
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(path)
    return d
