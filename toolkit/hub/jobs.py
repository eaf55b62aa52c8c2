"""HF Jobs on the embedded Hub: each job runs on this machine, in a sandbox (:mod:`.sandbox`).

The real Hub runs a job's ``command`` in a container of its ``dockerImage`` on the ``flavor``'s
hardware. Here the image and flavor are recorded, not used: the command runs with the server's
own Python environment (read-only) in a fresh work dir outside ``--root`` (removed when the job
ends, as a job's disk is ephemeral), with ``HF_ENDPOINT`` pointing at this Hub and ``uv``/``uvx``
shims on ``PATH`` that run a ``uv run SCRIPT`` with this Python (see :mod:`.jobs_image`).

Bounded: at most ``max_running`` jobs run at once and ``max_running_per_ns`` of one namespace (the
others wait in ``SCHEDULING``); at most ``max_jobs`` are unfinished, ``max_jobs_per_ns`` of one
namespace (then 429); every job is killed at its ``timeoutSeconds``. Stages move like the real
API's: ``SCHEDULING`` → ``RUNNING`` → ``COMPLETED`` | ``ERROR`` | ``CANCELED``. Cancel, timeout and
the Hub's shutdown SIGTERM every process of the job, then SIGKILL them. Secrets reach the process
as environment variables; they are never stored or returned, and masked in the logs. The job
table and logs live on disk (:mod:`.jobstore`); a restarted Hub kills what a previous one left
running and marks those jobs ``ERROR``.

Example::

    runner = JobRunner("/tmp/hub/jobs", endpoint="http://127.0.0.1:8080")
    job = runner.submit("alice", "alice", {"command": ["echo", "hi"], ...}, {})
    runner.wait(job.id, 10).stage   # 'COMPLETED'
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets as _secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import sandbox
from .errors import HubError
from .jobstore import JobStore, now, pump, stamp

log = logging.getLogger(__name__)
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
KILL_GRACE_S = 5.0               # SIGTERM, then SIGKILL after this
MAX_FINISHED_IN_MEMORY = 64      # older finished jobs are read back from disk when asked for
MAX_KEPT_PER_NS = 200            # finished jobs kept on disk per namespace (the oldest are deleted)
PASSTHROUGH_ENV = ("LANG", "LC_ALL", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS")
HOST_ENV = ("HOME", "TMPDIR", "QUP_CACHE", "HF_HOME")        # passed only to unsandboxed jobs
RECORD = ("id", "namespace", "owner", "spec", "stage", "message", "created_at", "started_at", "finished_at",
          "exit_code", "pid", "pid_start", "t0", "t_start", "t_end")


@dataclass
class Job:
    id: str
    namespace: str
    owner: str
    spec: dict                                   # validated (routes_jobs.validate_spec)
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)   # never stored, never logged
    workdir: Path | None = None
    log_path: Path | None = None
    stage: str = "SCHEDULING"
    message: str | None = None
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    log_count: int = 0                           # lines logged by this Hub process (followers poll it)
    proc: subprocess.Popen | None = None
    pid: int | None = None                       # the outer process (bwrap) and its start time
    pid_start: int | None = None
    cancel_requested: bool = False
    t0: float = field(default_factory=time.time)
    t_start: float | None = None
    t_end: float | None = None

    @property
    def done(self) -> bool:
        return self.stage in TERMINAL

    def record(self) -> dict:
        return {k: getattr(self, k) for k in RECORD}

    def info(self) -> dict:
        """The job as the Jobs API returns it (``huggingface_hub.JobInfo`` fields); secrets by name only."""
        s, end = self.spec, self.t_end or time.time()
        running = end - self.t_start if self.t_start else None
        out = {"id": self.id, "createdAt": self.created_at, "startedAt": self.started_at,
               "finishedAt": self.finished_at, "command": s["command"], "arguments": s["arguments"],
               "environment": s["environment"], "secrets": {k: "***" for k in s["secrets"]},
               "flavor": s["flavor"], "labels": s["labels"] or None, "timeoutSeconds": s["timeoutSeconds"],
               "status": {"stage": self.stage, "message": self.message},
               "durations": {"schedulingSecs": int((self.t_start or end) - self.t0),
                             "runningSecs": None if running is None else int(running),
                             "totalSecs": int(end - self.t0)},
               "owner": {"id": self.namespace, "name": self.namespace, "type": "user"},
               "initiator": {"type": "user", "id": self.owner, "name": self.owner}}
        out.update({k: s[k] for k in ("dockerImage", "spaceId") if s.get(k)})
        return out


class JobRunner:
    """Runs jobs (see module docstring); thread-safe. ``root`` holds the job table (``<--root>/jobs``);
    ``work_dir`` the jobs' work dirs (default: a dir in the system temp dir, never under ``--root``)."""

    def __init__(self, root, endpoint: str = "", max_running: int = 2, max_jobs: int = 32,
                 python: str = sys.executable, mode: str = "sandbox", work_dir=None, data_paths=None):
        if mode not in sandbox.MODES:
            raise ValueError(f"jobs mode must be one of {', '.join(sandbox.MODES)}, got {mode!r}")
        self.root, self.endpoint, self.mode = Path(root).resolve(), endpoint, mode
        self.max_running, self.max_jobs, self.python = max_running, max_jobs, python
        self.max_running_per_ns, self.max_jobs_per_ns = max(1, max_running - 1), 8
        self.max_followers, self.max_followers_per_ns = 64, 8
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        self.work = Path(work_dir or Path(tempfile.gettempdir()) / f"qup-hub-jobs-{digest}").resolve()
        if self.work == self.root.parent or self.root.parent in self.work.parents:
            raise ValueError(f"the jobs' work dir {self.work} must be outside the Hub's --root")
        self.data_paths = sandbox.default_data_paths() if data_paths is None else [Path(p) for p in data_paths]
        self.store = JobStore(self.root)
        self.jobs: dict[str, Job] = {}                            # unfinished + the latest finished
        self.index: dict[str, tuple[str, float]] = {}             # every stored job: (namespace, t0)
        self.followers: dict[str, int] = {}                       # log followers per namespace
        self.cond = threading.Condition()
        self.closed = False
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="job-launcher")   # see _start
        self._recover()

    # ------------------------------------------------------------------ API
    def refusal(self, users: set[str]) -> str | None:
        """Why this Hub cannot run jobs now (one line), or None; ``users``: the token names."""
        if self.mode == "off":
            return "The Jobs API is off on this Hub (started with --jobs off)"
        if self.mode == "sandbox" and (why := sandbox.unavailable()):
            return f"The Jobs API is off on this Hub: jobs run only in a sandbox and {why}"
        if self.mode == "unsafe-shared" and len(users) > 1:
            return ("The Jobs API is off on this Hub: --jobs unsafe-shared runs jobs unisolated (they could "
                    f"read every namespace), so only on a Hub whose tokens belong to one user, not {len(users)}")
        return None

    def submit(self, owner: str, namespace: str, spec: dict, secret_values: dict[str, str]) -> Job:
        with self.cond:
            if self.closed:
                raise HubError(503, "The Hub is shutting down: no new jobs")
            active = [j for j in self.jobs.values() if not j.done]
            mine = sum(j.namespace == namespace for j in active)
            if mine >= self.max_jobs_per_ns:
                raise HubError(429, f"Too many unfinished jobs in namespace {namespace!r} ({mine}, the limit "
                                    f"is {self.max_jobs_per_ns}): wait for some to finish or cancel them")
            if len(active) >= self.max_jobs:
                raise HubError(429, f"Too many unfinished jobs on this Hub ({len(active)}, the limit is "
                                    f"{self.max_jobs}): retry later")
            job_id = _secrets.token_hex(12)                      # 24 hex, like the Hub's ids
            job = Job(job_id, namespace, owner, spec, secret_values, self.work / job_id,
                      self.store.log_path(job_id))
            self.jobs[job_id] = job
            self.index[job_id] = (namespace, job.t0)
            self.store.save(job.record())
            job.log_path.touch()
            self._schedule()
        return job

    def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None and job_id in self.index and (record := self.store.load(job_id)):
            job = self._from_record(record)
        return job

    def list(self, namespace: str) -> list[Job]:
        ids = sorted((i for i, (ns, _) in self.index.items() if ns == namespace),
                     key=lambda i: self.index[i][1], reverse=True)
        return [j for j in map(self.get, ids) if j is not None]

    def cancel(self, job_id: str, message: str = "Canceled by its owner") -> Job:
        with self.cond:
            job = self.jobs.get(job_id)
            if job is None or job.done:
                return job or self.get(job_id)
            job.cancel_requested, job.message = True, message
            if job.proc is None:                                 # still scheduling: never starts
                self._finish(job, "CANCELED", f"{message} before it started")
        return job                                               # _watch stops it

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.jobs.get(job_id) or self.get(job_id)
        with self.cond:
            self.cond.wait_for(lambda: job.done, timeout)
        return job

    def close(self) -> None:
        """Cancel every unfinished job (the server is stopping); wait for them to end."""
        with self.cond:
            self.closed = True
            pending = [j for j in self.jobs.values() if not j.done]
        for job in pending:
            self.cancel(job.id, "Canceled: the Hub is shutting down")
        for job in pending:
            self.wait(job.id, KILL_GRACE_S + 5)
        self._launcher.shutdown(wait=False)
        if self.work.is_dir() and all(p.name == "bin" for p in self.work.iterdir()):
            shutil.rmtree(self.work, ignore_errors=True)         # only the shims were left

    def follow(self, namespace: str) -> None:
        """Count one log follower (429 beyond the limits); :meth:`unfollow` when it ends."""
        with self.cond:
            mine, total = self.followers.get(namespace, 0), sum(self.followers.values())
            if mine >= self.max_followers_per_ns or total >= self.max_followers:
                raise HubError(429, f"Too many log followers ({mine} in namespace {namespace!r}, {total} on "
                                    f"this Hub; limits {self.max_followers_per_ns} and {self.max_followers})")
            self.followers[namespace] = mine + 1

    def unfollow(self, namespace: str) -> None:
        with self.cond:
            self.followers[namespace] -= 1

    # ------------------------------------------------------------------ internals
    def _from_record(self, record: dict) -> Job:
        job = Job(**{k: record.get(k) for k in RECORD if k not in ("id", "namespace", "owner", "spec")},
                  id=record["id"], namespace=record["namespace"], owner=record["owner"], spec=record["spec"])
        job.log_path = self.store.log_path(job.id)
        return job

    def _recover(self) -> None:
        """Load the job table; kill and fail the jobs a previous Hub process left unfinished."""
        for record in self.store.load_all():
            try:
                job = self._from_record(record)
            except (KeyError, TypeError):
                continue
            self.index[job.id] = (job.namespace, job.t0 or 0.0)
            if not job.done:
                killed = job.pid is not None and sandbox.reap(job.pid, job.pid_start)
                shutil.rmtree(self.work / job.id, ignore_errors=True)
                job.stage, job.finished_at, job.t_end = "ERROR", now(), time.time()
                job.message = ("Interrupted: the Hub that ran this job stopped"
                               + (" (its processes were killed on restart)" if killed else ""))
                self.store.save(job.record())
                log.info("job %s (%s): %s", job.id, job.namespace, job.message)
        self._prune()

    def _schedule(self) -> None:
        """Start waiting jobs while slots are free, Hub-wide and per namespace (call with the lock held)."""
        running: dict[str, int] = {}
        for j in self.jobs.values():
            if j.stage == "RUNNING":
                running[j.namespace] = running.get(j.namespace, 0) + 1
        for job in sorted(self.jobs.values(), key=lambda j: j.t0):
            if sum(running.values()) >= self.max_running:
                break
            if (job.stage == "SCHEDULING" and not job.cancel_requested
                    and running.get(job.namespace, 0) < self.max_running_per_ns):
                running[job.namespace] = running.get(job.namespace, 0) + 1
                self._start(job)

    def _env(self, job: Job) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        if self.mode == "sandbox":
            from ..weights import cache_dir
            env.update(HOME=str(job.workdir), TMPDIR="/tmp", QUP_CACHE=str(cache_dir()))
        else:
            env.update({k: os.environ[k] for k in HOST_ENV if k in os.environ})
        env["PATH"] = os.pathsep.join([str(self.work / "bin"), str(Path(self.python).parent),
                                       "/usr/local/bin", "/usr/bin", "/bin"])
        env.update(HF_ENDPOINT=self.endpoint, HF_HUB_DISABLE_XET="1", JOB_ID=job.id, PYTHONUNBUFFERED="1")
        env.update(job.spec["environment"])
        env.update(job.secret_values)
        return env

    def _start(self, job: Job) -> None:
        """Start the job's process (call with the lock held). Processes are started from one
        long-lived thread: the kernel's parent-death signal (bwrap --die-with-parent, setpriv
        --pdeathsig) fires when the *thread* that started them ends, so not a request's thread."""
        self.work.mkdir(mode=0o700, parents=True, exist_ok=True)
        _shims(self.work, self.python)
        job.workdir.mkdir(mode=0o700)
        argv = [*job.spec["command"], *job.spec["arguments"]]
        if self.mode == "sandbox":
            ro = sorted({*sandbox.toolchain(), *self.data_paths, self.work / "bin"})
            full = sandbox.wrap(argv, job.workdir, ro, hidden=[self.root.parent])
        else:
            full = sandbox.unisolated(argv)
        try:
            job.proc = self._launcher.submit(
                subprocess.Popen, full, cwd=job.workdir, env=self._env(job), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True).result()
        except OSError as e:
            shutil.rmtree(job.workdir, ignore_errors=True)
            self._finish(job, "ERROR", f"cannot start {argv[0]!r}: {e.strerror}")
            return
        job.pid, job.pid_start = job.proc.pid, sandbox.start_time(job.proc.pid)
        job.stage, job.started_at, job.t_start = "RUNNING", now(), time.time()
        self.store.save(job.record())
        self._log(job, "===== Job started =====")
        threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"job-{job.id}").start()

    def _watch(self, job: Job) -> None:
        """Wait for the job; on cancel or timeout SIGTERM it, SIGKILL after ``KILL_GRACE_S``. Every
        signal is sent before the outer process is reaped, so its pid cannot have been reused."""
        reader = threading.Thread(target=self._read, args=(job,), daemon=True)
        reader.start()
        timeout = job.spec["timeoutSeconds"]
        end, term_at, timed_out = time.monotonic() + timeout, None, False
        while not _exited(job.pid):
            t = time.monotonic()
            if term_at is None and (job.cancel_requested or t >= end):
                timed_out, term_at = not job.cancel_requested, t
                sandbox.signal_job(job.pid, signal.SIGTERM)
            elif term_at is not None and t - term_at > KILL_GRACE_S:
                sandbox.signal_job(job.pid, signal.SIGKILL)
            time.sleep(0.1)
        sandbox.signal_job(job.pid, signal.SIGKILL)          # what the job left behind (`cmd &`)
        code = job.proc.wait()
        reader.join(timeout=10)
        shutil.rmtree(job.workdir, ignore_errors=True)
        with self.cond:
            job.exit_code = code
            if job.cancel_requested:
                self._finish(job, "CANCELED", job.message)
            elif timed_out:
                self._finish(job, "ERROR", f"Job timed out after {timeout} s (timeoutSeconds)")
            elif code == 0:
                self._finish(job, "COMPLETED", None)
            else:
                self._finish(job, "ERROR", f"Job failed with exit code: {code}")

    def _mask(self, job: Job, line: str) -> str:
        for value in job.secret_values.values():               # a job printing its token
            if len(value) >= 4:
                line = line.replace(value, "***")
        return line

    def _read(self, job: Job) -> None:
        try:
            pump(job.proc.stdout, job.log_path, lambda line: self._mask(job, line), lambda n: self._notify(job, n))
        finally:
            job.proc.stdout.close()

    def _notify(self, job: Job, n: int) -> None:
        with self.cond:
            job.log_count += n
            self.cond.notify_all()

    def _log(self, job: Job, line: str) -> None:
        with open(job.log_path, "ab") as f:
            f.write(stamp(line))
        self._notify(job, 1)

    def _finish(self, job: Job, stage: str, message: str | None) -> None:
        """Terminal stage (call with the lock held): stored; frees a slot for a waiting job."""
        job.stage, job.message, job.finished_at, job.t_end = stage, message, now(), time.time()
        job.secret_values, job.proc = {}, None
        self.store.save(job.record())
        log.info("job %s (%s): %s%s", job.id, job.namespace, stage, f" ({message})" if message else "")
        self.cond.notify_all()
        finished = sorted((j for j in self.jobs.values() if j.done), key=lambda j: j.t_end or 0)
        for old in finished[:-MAX_FINISHED_IN_MEMORY]:
            del self.jobs[old.id]                              # still on disk (get() reads it back)
        self._prune(job.namespace)
        if not self.closed:
            self._schedule()

    def _prune(self, namespace: str | None = None) -> None:
        """Delete the oldest finished jobs of a namespace beyond ``MAX_KEPT_PER_NS`` (disk and index)."""
        for ns in [namespace] if namespace else {ns for ns, _ in self.index.values()}:
            ids = sorted((i for i, (n, _) in self.index.items() if n == ns and
                          not (i in self.jobs and not self.jobs[i].done)), key=lambda i: self.index[i][1])
            for job_id in ids[:-MAX_KEPT_PER_NS]:
                self.jobs.pop(job_id, None)
                del self.index[job_id]
                self.store.delete(job_id)


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has ended, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _shims(work: Path, python: str) -> Path:
    """A dir with ``uv`` and ``uvx`` that run through :mod:`toolkit.hub.jobs_image` with ``python``."""
    d = work / "bin"
    d.mkdir(mode=0o755, exist_ok=True)
    for tool in ("uv", "uvx"):
        path = d / tool
        text = f'#!/bin/sh\nexec "{python}" -m toolkit.hub.jobs_image {tool} "$@"\n'
        if not path.is_file() or path.read_text() != text:
            tmp = d / f".{tool}.tmp"
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(path)
    return d
