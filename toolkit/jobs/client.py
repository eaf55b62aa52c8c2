"""``qup jobs submit|status|logs|cancel`` over ``huggingface_hub``'s jobs API.

Example::

    from toolkit.jobs.client import submit
    from toolkit.jobs.spec import JobConfig
    job = submit("smoke", JobConfig(flavor="cpu-upgrade"))        # uploads code/, runs the job
    for line in logs(job.id, follow=True): print(line)
"""
from __future__ import annotations

import os
from pathlib import Path

from .spec import (SCRIPT, JobConfig, JobError, build_spec, files_to_upload, hf_commands, redacted,
                   state_repo)



def api(hub_url: str = "", token: str | None = None):
    from huggingface_hub import HfApi
    return HfApi(endpoint=hub_url or None, token=token or os.environ.get("HF_TOKEN") or None)


def namespace_of(cfg: JobConfig, client) -> str:
    if cfg.namespace:
        return cfg.namespace
    try:
        return client.whoami()["name"]
    except Exception as e:   # no token, bad token, unreachable Hub: the user fixes it
        raise JobError(f"cannot tell your namespace ({type(e).__name__}): pass --namespace or set HF_TOKEN") from None


def code_files(target: str, args: list[str]) -> dict[str, Path]:
    """What the job runs: ``{path under code/: local file}`` (toolkit package, job script, inputs)."""
    import toolkit
    pkg = Path(toolkit.__file__).resolve().parent
    if not SCRIPT.is_file():
        raise JobError(f"job script {SCRIPT} not found: the toolkit install is incomplete; reinstall it")
    out = {}
    for dirpath, dirs, names in os.walk(pkg, followlinks=True):    # templates/ is a symlink
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            p = Path(dirpath) / name
            if not name.endswith(".pyc"):
                out[f"toolkit/{p.relative_to(pkg).as_posix()}"] = p
    out.update(files_to_upload(target, args))
    return out


def upload_code(client, repo: str, files: dict[str, Path]) -> str:
    """One commit that makes the repo's ``code/`` exactly ``files``; returns its sha."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    client.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
    old = {f for f in client.list_repo_files(repo, repo_type="dataset") if f.startswith("code/")}
    ops = [CommitOperationAdd(f"code/{k}", str(v)) for k, v in files.items()]
    ops += [CommitOperationDelete(f) for f in sorted(old - {f"code/{k}" for k in files})]
    info = client.create_commit(repo, ops, repo_type="dataset", commit_message="qup jobs submit: code")
    return info.oid


def submit(target: str, cfg: JobConfig, sets: list[str] | None = None, args: list[str] | None = None,
           dry_run: bool = False) -> dict:
    """Submit ``target`` (a recipe, or a stage with its ``args``) as a job; ``dry_run`` only builds
    the spec. Returns ``{"spec": <secrets redacted>, "job": {...}}``."""
    client = api(cfg.hub_url)
    namespace = namespace_of(cfg, client)
    spec = build_spec(target, cfg, sets, args, namespace=namespace)
    shown = redacted(spec)
    repo = state_repo(target, cfg, namespace)
    if dry_run:   # what `submit` would send, and the same with the hf CLI
        return {"dry_run": True, "spec": shown, "state_repo": repo,
                "hf_commands": hf_commands(spec, repo, files_to_upload(target, args or []))}
    upload_code(client, repo, code_files(target, args or []))
    from huggingface_hub.errors import HfHubHTTPError
    try:
        job = client.run_job(**spec)
    except HfHubHTTPError as e:
        raise JobError(f"the Jobs API refused the job: {_reason(e)}") from None
    return {"spec": shown, "job": job_summary(job), "state_repo": repo}


def job_summary(job) -> dict:
    return {"id": job.id, "stage": str(getattr(job.status.stage, "value", job.status.stage)),
            "message": job.status.message, "flavor": job.flavor, "url": job.url,
            "created_at": str(job.created_at) if job.created_at else None,
            "finished_at": str(job.finished_at) if job.finished_at else None}


def _reason(e) -> str:
    msg = getattr(getattr(e, "response", None), "headers", {}).get("X-Error-Message") or str(e).splitlines()[0]
    return msg[:300]


def _call(fn, what: str):
    from huggingface_hub.errors import HfHubHTTPError
    try:
        return fn()
    except HfHubHTTPError as e:
        raise JobError(f"{what}: {_reason(e)}") from None


def status(job_id: str | None, cfg: JobConfig) -> list[dict]:
    """One job (``job_id``) or every job of the namespace, newest first."""
    client = api(cfg.hub_url)
    ns = namespace_of(cfg, client)
    if job_id:
        return [job_summary(_call(lambda: client.inspect_job(job_id=job_id, namespace=ns), f"job {job_id}"))]
    return [job_summary(j) for j in _call(lambda: list(client.list_jobs(namespace=ns)), f"jobs of {ns}")]


def logs(job_id: str, cfg: JobConfig, follow: bool = False, tail: int | None = None):
    """The job's log lines (``follow``: until it ends)."""
    client = api(cfg.hub_url)
    ns = namespace_of(cfg, client)
    from huggingface_hub.errors import HfHubHTTPError
    try:
        yield from client.fetch_job_logs(job_id=job_id, namespace=ns, follow=follow, tail=tail)
    except HfHubHTTPError as e:
        raise JobError(f"logs of job {job_id}: {_reason(e)}") from None


def cancel(job_id: str, cfg: JobConfig) -> dict:
    client = api(cfg.hub_url)
    ns = namespace_of(cfg, client)
    _call(lambda: client.cancel_job(job_id=job_id, namespace=ns), f"cancel job {job_id}")
    return job_summary(_call(lambda: client.inspect_job(job_id=job_id, namespace=ns), f"job {job_id}"))
