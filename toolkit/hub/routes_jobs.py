"""``/api/jobs/...`` routes: the HF Jobs API that ``huggingface_hub`` calls, served by :mod:`.jobs`.

Routes (shapes of ``huggingface_hub`` 1.x/2.x, ``hf_api.py`` and ``_jobs_api.py``):

- ``POST /api/jobs/{namespace}`` (``run_job``, ``run_uv_job``): body = the job spec; → the job
- ``GET /api/jobs/{namespace}`` (``list_jobs``; ``?stage=`` and ``?label=k=v`` filters)
- ``GET /api/jobs/{namespace}/{id}`` (``inspect_job``, ``wait_for_job``)
- ``GET /api/jobs/{namespace}/{id}/logs`` (``fetch_job_logs``): server-sent events,
  ``data: {"data": LINE, "timestamp": ISO}``; follows the job until it ends (``?tail=N``)
- ``POST /api/jobs/{namespace}/{id}/cancel`` (``cancel_job``)
- ``GET /api/jobs/hardware`` (``list_jobs_hardware``)

The Jobs API needs tokens: an open Hub (no tokens) runs no jobs and answers 403. A job is visible
only to tokens of its namespace (404 otherwise, like a private repo); creating and cancelling need
a write token of that namespace. Every field of the spec is checked before anything runs; what the
embedded Hub cannot honour (volumes, ports, SSH, networks) is a 400, not silently ignored. Log
followers are streamed by the event loop (no request thread is held) and capped (429).
"""
from __future__ import annotations

import io
import json
import re
import time

import anyio
import anyio.from_thread
from starlette.responses import JSONResponse, Response, StreamingResponse

from .errors import HubError
from .jobs import JobRunner
from .jobstore import split, tail_offset
from .names import is_name

MAX_SPEC_BYTES = 1024 ** 2            # a job spec is small; a bigger body is hostile
MAX_TIMEOUT_S = 7 * 24 * 3600         # what the embedded Hub accepts as timeoutSeconds
DEFAULT_TIMEOUT_S = 30 * 60           # the real Hub's default
MAX_ITEMS, MAX_ARG_CHARS, MAX_ARGV_CHARS = 256, 65_536, 262_144
FLAVORS = ("cpu-basic", "cpu-upgrade", "cpu-performance", "cpu-xl", "t4-small", "t4-medium", "l4x1", "l4x4",
           "l40sx1", "l40sx4", "l40sx8", "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4",
           "a100-large", "a100x4", "a100x8", "h200", "h200x2", "h200x4", "h200x8", "rtx-pro-6000",
           "rtx-pro-6000x2", "rtx-pro-6000x4", "rtx-pro-6000x8")
KNOWN = {"command", "arguments", "environment", "secrets", "flavor", "timeoutSeconds", "labels",
         "dockerImage", "spaceId", "attempts"}
UNSUPPORTED = {"volumes": "volumes (buckets, mounted repos)", "expose": "exposed ports", "ssh": "SSH",
               "network": "network groups", "resourceGroupId": "resource groups"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LABEL = re.compile(r"[A-Za-z0-9._-]{1,100}")
_JOB_ID = re.compile(r"[0-9a-f]{24}")
_NUL = re.compile(r"[\x00\ud800-\udfff]")


def _strings(value, what: str, limit: int = MAX_ARG_CHARS) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS * 16 or not all(isinstance(v, str) for v in value):
        raise HubError(400, f"Invalid job spec: '{what}' must be a list of strings")
    if any(len(v) > limit or _NUL.search(v) for v in value):
        raise HubError(400, f"Invalid job spec: an item of '{what}' is longer than {limit} characters "
                            "or holds a NUL character")
    return value


def _env(value, what: str) -> dict[str, str]:
    """A ``{NAME: value}`` mapping of environment variables (numbers and booleans become strings)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ITEMS:
        raise HubError(400, f"Invalid job spec: '{what}' must be an object of at most {MAX_ITEMS} variables")
    out = {}
    for name, v in value.items():
        if not _ENV_NAME.fullmatch(name):
            raise HubError(400, f"Invalid job spec: {what} name {name[:80]!r} is not a valid environment "
                                "variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)) or len(str(v)) > MAX_ARG_CHARS or _NUL.search(str(v)):
            raise HubError(400, f"Invalid job spec: {what} {name!r} must be a string without NUL characters")
        out[name] = str(v)
    return out


def validate_spec(data: dict) -> tuple[dict, dict[str, str]]:
    """(the stored spec, the secret values) of a ``POST /api/jobs/{ns}`` body; 400 naming the field."""
    bad = sorted(set(data) & set(UNSUPPORTED))
    if bad:
        raise HubError(400, f"The embedded Hub runs jobs as local subprocesses and does not support "
                            f"{', '.join(UNSUPPORTED[b] for b in bad)}")
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise HubError(400, f"Invalid job spec: unknown field(s) {[u[:40] for u in unknown[:5]]}")
    command = _strings(data.get("command"), "command")
    if not command or not command[0]:
        raise HubError(400, "Invalid job spec: 'command' must name a program")
    arguments = _strings(data.get("arguments") or [], "arguments")
    if sum(map(len, command + arguments)) > MAX_ARGV_CHARS:
        raise HubError(400, f"Invalid job spec: command + arguments exceed {MAX_ARGV_CHARS} characters")
    image, space = data.get("dockerImage"), data.get("spaceId")
    if not (isinstance(image, str) and image) and not (isinstance(space, str) and space):
        raise HubError(400, "Invalid job spec: give 'dockerImage' or 'spaceId'")
    for name, v in (("dockerImage", image), ("spaceId", space)):
        if v is not None and (not isinstance(v, str) or len(v) > 512 or _NUL.search(v)):
            raise HubError(400, f"Invalid job spec: '{name}' must be a string of at most 512 characters")
    flavor = data.get("flavor") or "cpu-basic"
    if flavor not in FLAVORS:
        raise HubError(400, f"Invalid job spec: unknown flavor {str(flavor)[:40]!r}; one of {', '.join(FLAVORS)}")
    timeout = data.get("timeoutSeconds", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_S:
        raise HubError(400, f"Invalid job spec: 'timeoutSeconds' must be an integer from 1 to {MAX_TIMEOUT_S}, "
                            f"got {str(timeout)[:40]!r}")
    attempts = data.get("attempts", 1)
    if attempts != 1:
        raise HubError(400, "The embedded Hub runs each job once: 'attempts' must be 1")
    labels = data.get("labels") or {}
    if not isinstance(labels, dict) or len(labels) > 32 or not all(
            isinstance(k, str) and isinstance(v, str) and _LABEL.fullmatch(k) and (v == "" or _LABEL.fullmatch(v))
            for k, v in labels.items()):
        raise HubError(400, "Invalid job spec: 'labels' must map at most 32 keys to values of "
                            "[A-Za-z0-9._-] (1-100 characters)")
    secrets = _env(data.get("secrets"), "secret")
    spec = {"command": command, "arguments": arguments, "environment": _env(data.get("environment"), "env"),
            "secrets": sorted(secrets), "flavor": flavor, "timeoutSeconds": timeout, "labels": labels,
            "dockerImage": image, "spaceId": space}
    return spec, secrets


def runner(ctx) -> JobRunner:
    return ctx.app.jobs


def _read_spec(ctx) -> dict:
    length = ctx.request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_SPEC_BYTES:
        raise HubError(413, f"Job spec too large: the limit is {MAX_SPEC_BYTES} bytes")
    body = anyio.from_thread.run(ctx.app.read_body, ctx.request, MAX_SPEC_BYTES)
    try:
        data = json.loads(body or b"{}")
    except ValueError as e:
        raise HubError(400, f"Request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise HubError(400, "Request body must be a JSON object (the job spec)")
    return data


def _visible_job(ctx, namespace: str, job_id: str):
    """The job if this request may see it; 404 otherwise (unknown, other namespace, not a member)."""
    job = runner(ctx).get(job_id) if _JOB_ID.fullmatch(job_id) else None
    if job is None or job.namespace != namespace or not ctx.may_see(namespace):
        raise HubError(404, f"Job not found: {job_id[:40]!r} in namespace {namespace[:96]!r}")
    return job


def handle(ctx) -> Response:
    seg, m = ctx.segments[2:], ctx.method
    if seg == ["hardware"] and m == "GET":
        return JSONResponse(hardware())
    if ctx.app.auth.open:
        raise HubError(403, "The Jobs API needs tokens: this Hub is open (started without tokens), so it runs "
                            "no jobs; start it with --tokens-file and use a write token")
    if not seg or not is_name(seg[0]):
        raise HubError(400, f"Invalid namespace {(seg or [''])[0][:96]!r}")
    ns = seg[0]
    if len(seg) == 1 and m == "POST":
        ctx.need_write(f"running a job under {ns!r}", ns)        # before the body is read
        why = runner(ctx).refusal({i.name for i in ctx.app.auth.by_token.values()})
        if why:
            raise HubError(503, why)
        spec, secrets = validate_spec(_read_spec(ctx))
        job = runner(ctx).submit(ctx.user or "anonymous", ns, spec, secrets)
        return JSONResponse(job.info())
    if len(seg) == 1 and m == "GET":
        if not ctx.may_see(ns):
            raise HubError(401 if ctx.identity is None else 403,
                           f"Listing the jobs of {ns!r} needs a token of that namespace")
        stages = {s.upper() for s in ctx.query.get("stage", [])}
        labels = [tuple(x.split("=", 1)) for x in ctx.query.get("label", []) if "=" in x]
        jobs = [j for j in runner(ctx).list(ns) if (not stages or j.stage in stages)
                and all(j.spec["labels"].get(k) == v for k, v in labels)]
        return JSONResponse([j.info() for j in jobs])
    if len(seg) == 2 and m == "GET":
        return JSONResponse(_visible_job(ctx, ns, seg[1]).info())
    if len(seg) == 3 and seg[2] == "logs" and m == "GET":
        return logs(ctx, _visible_job(ctx, ns, seg[1]))
    if len(seg) == 3 and seg[2] == "cancel" and m == "POST":
        job = _visible_job(ctx, ns, seg[1])
        ctx.need_write(f"cancelling job {job.id}", ns)
        runner(ctx).cancel(job.id)
        return JSONResponse({})
    raise HubError(404, f"Not found: {m} /{'/'.join(ctx.segments)[:200]}")


class _Followed(StreamingResponse):
    """A log stream that gives its follower slot back however it ends (done, disconnect, error)."""

    def __init__(self, events, release):
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.release = release

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def logs(ctx, job) -> Response:
    """Server-sent events of the job's log lines: history (or its last ``tail``), then new lines
    until the job ends; a ``: keep-alive`` comment every 15 s of silence. Read from the log file
    by the event loop, a block at a time: a follower holds no thread and little memory."""
    tail = ctx.q("tail")
    if tail and not (tail.isdigit() and int(tail) <= 10 ** 7):
        raise HubError(400, f"Invalid tail {tail[:20]!r}: expected a non-negative integer")
    jobs = runner(ctx)
    offset = tail_offset(job.log_path, int(tail)) if tail and int(tail) else 0
    try:
        f = open(job.log_path, "rb")
    except OSError:
        f = io.BytesIO()                                 # a job of an older Hub without a log
    try:
        jobs.follow(job.namespace)
    except HubError:
        f.close()
        raise

    async def events():
        quiet = time.monotonic()
        with f:
            f.seek(offset)
            pending = b""
            while True:
                done = job.done                          # read before the file: no line is missed
                block = f.read(65_536)
                if block:
                    *lines, pending = (pending + block).split(b"\n")
                    for raw in lines:
                        yield _event(*split(raw))
                    quiet = time.monotonic()
                    await anyio.sleep(0)
                    continue
                if done:
                    return
                if time.monotonic() - quiet > 15:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"
                await anyio.sleep(0.2)
    return _Followed(events(), lambda: jobs.unfollow(job.namespace))


def _event(ts: str, line: str) -> str:
    return "data: " + json.dumps({"data": line, "timestamp": ts}) + "\n\n"


def hardware() -> list[dict]:
    """The flavors (``list_jobs_hardware``); no prices: the embedded Hub bills nothing."""
    return [{"name": f, "prettyName": f, "cpu": "local", "ram": "local", "ephemeralStorage": "local",
             "accelerator": None, "unitCostMicroUSD": 0, "unitCostUSD": 0.0, "unitLabel": "minute"}
            for f in FLAVORS]
