"""``qup jobs submit``: build a job spec, upload the code to the run-state repo, run the job.

The job is a plain ``huggingface_hub`` job (``HfApi.run_job``) on the ``uv`` image: it downloads
``code/`` of the run-state repo with ``hf download`` and runs the PEP 723 script
``toolkit/jobs/qup_job.py`` (package data: a wheel install submits jobs too) with ``uv run``
(which installs the script's pinned dependencies). Secrets
are named (``--secret HF_TOKEN``): their values are read from this machine's environment (or the
saved login for ``HF_TOKEN``) at submission, sent only in the API request, and shown as ``***``
in ``--dry-run`` and everywhere else.

Example:
    >>> cfg = JobConfig(flavor="a10g-small", namespace="alice")
    >>> spec = build_spec("smoke", cfg, environ={"HF_TOKEN": "hf_x"})
    >>> spec["flavor"], spec["secrets"], redacted(spec)["secrets"]
    ('a10g-small', {'HF_TOKEN': 'hf_x'}, {'HF_TOKEN': '***'})
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError

DEFAULT_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"   # huggingface_hub's DEFAULT_UV_IMAGE
HUB_PIN = "huggingface_hub>=1.0"                              # as setup.cfg
SCRIPT = Path(__file__).resolve().with_name("qup_job.py")        # shipped in the package
SCRIPT_IN_CODE = "toolkit/jobs/qup_job.py"                       # its path under the job's code/
STAGE_COMMANDS = ("sample", "verify", "score", "select", "train", "evaluate")
WORKDIR = "qup-job"                      # in the job's working directory: code/ and run/
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIMEOUT = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


class JobError(ConfigError):
    """A bad job option (flavor, timeout, secret, namespace) or a failed submission."""


@dataclass
class JobConfig:
    """How and where a job runs (``qup jobs submit --flavor ... --timeout ...``)."""
    flavor: str = field(default="cpu-basic", metadata={"help": "HF Jobs hardware, e.g. a10g-small, l40sx1, a100-large, h200"})
    timeout: str = field(default="2h", metadata={"help": "max duration: seconds or 90m, 6h, 1d"})
    image: str = field(default=DEFAULT_IMAGE, metadata={"help": "Docker image with uv"})
    secrets: list[str] = field(default_factory=list, metadata={
        "help": "NAME of a secret env var, its value read from your env (HF_TOKEN is always passed)"})
    env: list[str] = field(default_factory=list, metadata={"help": "KEY=VALUE environment variable"})
    namespace: str = field(default="", metadata={"help": "user or org running the job (default: whoami)"})
    state_repo: str = field(default="", metadata={"help": "run-state dataset repo (default: NS/qup-run-TARGET)"})
    hub_url: str = field(default="", metadata={"help": "Hub endpoint (default: HF_ENDPOINT or huggingface.co)"})
    name: str = field(default="", metadata={"help": "job name label (default: qup-TARGET)"})
    network_group: str = field(default="", metadata={
        "help": "join this HF Jobs network group (reach TGI/vLLM jobs of the group by alias)"})

    def __post_init__(self):
        flavors = hub_flavors()
        if self.flavor not in flavors:
            raise JobError(f"--flavor {self.flavor!r} is not an HF Jobs flavor; one of {', '.join(flavors)}")
        timeout_seconds(self.timeout)
        for s in self.secrets:
            if not _ENV_NAME.fullmatch(s):
                raise JobError(f"--secret {s[:40]!r}: give the NAME of an environment variable, "
                               "never its value (e.g. --secret HF_TOKEN)")
        for item in self.env:
            key, eq, _ = item.partition("=")
            if not eq or not _ENV_NAME.fullmatch(key):
                raise JobError(f"--env expects KEY=VALUE, got {item[:40]!r}")
            if key in ("HF_TOKEN", *self.secrets):
                raise JobError(f"--env {key}: {key} is a secret; pass it with --secret {key} only")
        if self.network_group and not re.fullmatch(r"[a-z0-9-]{1,46}", self.network_group):
            raise JobError(f"--network-group {self.network_group[:60]!r}: lowercase letters, digits, '-' (<= 46)")


def timeout_seconds(timeout: str | int) -> int:
    """``"90m"`` → 5400; JobError unless a positive duration of at most 7 days."""
    m = _TIMEOUT.fullmatch(str(timeout).strip())
    seconds = float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]] if m else 0
    if not 1 <= seconds <= 7 * 86400:
        raise JobError(f"--timeout {str(timeout)[:20]!r}: expected a duration from 1s to 7d (e.g. 3600, 90m, 6h)")
    return int(seconds)


def hub_flavors() -> list[str]:
    """The Hub's Jobs hardware flavors, as ``huggingface_hub`` knows them (``JobHardware``,
    kept in sync with the Hub's API by huggingface_hub)."""
    from huggingface_hub import JobHardware
    return [h.value for h in JobHardware]


def stages() -> tuple[str, ...]:
    """The stage commands a job runs (``qup STAGE ...``): the stages and one command per
    registered variant built from another (``qup rft``, ``qup oracle_refine``, ...)."""
    from .. import variants as V
    return (*STAGE_COMMANDS, *(v.name for v in V.REGISTRY.values() if v.name != "self" and not v.scored))


def target_kind(target: str) -> str:
    """``stage`` for a qup stage command, else ``recipe`` (a packaged name or a YAML path)."""
    return "stage" if target in stages() else "recipe"


def files_to_upload(target: str, args: list[str]) -> dict[str, Path]:
    """Local files the job needs besides the toolkit: ``{repo path under code/: local path}``
    (a recipe YAML, files named in a stage's arguments such as ``--config x.yaml``)."""
    out = {}
    for item in [target, *args]:
        p = Path(item)
        if item.endswith((".yaml", ".yml", ".json", ".jsonl", ".parquet")) and p.is_file():
            out[f"files/{p.name}"] = p
    return out


def job_args(target: str, cfg: JobConfig, sets: list[str], args: list[str], namespace: str) -> list[str]:
    """The arguments of the job script (local files become ``code:files/NAME``)."""
    local = {str(p): f"code:{k}" for k, p in files_to_upload(target, args).items()}
    out = ["--state-repo", state_repo(target, cfg, namespace), "--workdir", WORKDIR]
    if target_kind(target) == "stage":
        return [*out, "stage", target, *[local.get(a, a) for a in args]]
    if not any(s.startswith("hub.org=") for s in sets):
        sets = [f"hub.org={namespace}", *sets]
    return [*out, "recipe", local.get(target, target), *[x for s in sets for x in ("--set", s)]]


def _short(target: str) -> str:
    """``smoke`` → ``smoke``; ``my/recipes/big.yaml`` → ``big``."""
    return Path(target).stem if target.endswith((".yaml", ".yml")) else target


def state_repo(target: str, cfg: JobConfig, namespace: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", _short(target))
    return cfg.state_repo or f"{namespace}/qup-run-{name.strip('-.')[:80]}"


def build_spec(target: str, cfg: JobConfig, sets: list[str] | None = None, args: list[str] | None = None,
               environ: dict | None = None, namespace: str | None = None) -> dict:
    """The job as ``HfApi.run_job`` keyword arguments (secret values included: see :func:`redacted`)."""
    from ..hub.names import is_name
    environ = os.environ if environ is None else environ
    namespace = namespace or cfg.namespace
    if not is_name(namespace):
        raise JobError(f"namespace {namespace[:100]!r} is not a valid user or organisation name")
    repo = state_repo(target, cfg, namespace)
    if len(repo.split("/")) != 2 or not all(is_name(p) for p in repo.split("/")):
        raise JobError(f"--state-repo {repo[:100]!r}: expected NAMESPACE/NAME")
    secrets = {}
    for name in dict.fromkeys(["HF_TOKEN", *cfg.secrets]):   # the job reads and writes the Hub
        value = environ.get(name) or (_saved_token() if name == "HF_TOKEN" else None)
        if not value:
            raise JobError(f"secret {name} is not set in your environment: export {name}=... (its value "
                           "is sent to the Jobs API only, never printed)")
        secrets[name] = value
    fetch = shlex.join(["uvx", "--from", HUB_PIN, "hf", "download", repo, "--repo-type", "dataset",
                        "--include", "code/*", "--local-dir", WORKDIR])
    run = shlex.join(["uv", "run", f"{WORKDIR}/code/{SCRIPT_IN_CODE}",
                      *job_args(target, cfg, sets or [], args or [], namespace)])
    env = {"PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           **dict(item.split("=", 1) for item in cfg.env)}
    spec = {"image": cfg.image, "command": ["bash", "-c", f"set -euo pipefail; {fetch}; {run}"],
            "env": env, "secrets": secrets, "flavor": cfg.flavor, "timeout": timeout_seconds(cfg.timeout),
            "name": cfg.name or re.sub(r"[^A-Za-z0-9_-]", "-", f"qup-{_short(target)}")[:90],
            "labels": {"qup": target_kind(target)}, "namespace": namespace}
    if cfg.network_group:
        spec["network_group"] = cfg.network_group
    return spec


def hf_commands(spec: dict, repo: str, extra: dict[str, Path]) -> list[str]:
    """The same submission with the ``hf`` CLI: upload the installed ``toolkit/`` to ``code/``, then
    ``hf jobs run`` (secrets by name: ``--secrets HF_TOKEN`` reads the value from the env)."""
    upload = ["hf", "upload", repo, str(SCRIPT.parents[2]), "code", "--repo-type", "dataset", "--private",
              "--include", "toolkit/**", "--exclude", "**/__pycache__/**"]
    out = [shlex.join(upload)]
    out += [shlex.join(["hf", "upload", repo, str(p), f"code/{k}", "--repo-type", "dataset"])
            for k, p in extra.items()]
    run = ["hf", "jobs", "run", "--detach", "--namespace", spec["namespace"], "--flavor", spec["flavor"],
           "--timeout", str(spec["timeout"]), "--name", spec["name"]]
    run += ["--network-group", spec["network_group"]] if spec.get("network_group") else []
    run += [x for k in spec["secrets"] for x in ("--secrets", k)]
    run += [x for k, v in spec["env"].items() for x in ("-e", f"{k}={v}")]
    run += [x for k, v in spec["labels"].items() for x in ("--label", f"{k}={v}")]
    out.append(shlex.join([*run, spec["image"], *spec["command"]]))
    return out


def redacted(spec: dict) -> dict:
    """``spec`` with every secret value replaced by ``***`` (what ``--dry-run`` prints)."""
    return {**spec, "secrets": {k: "***" for k in spec["secrets"]}}


def _saved_token() -> str | None:
    from huggingface_hub import get_token
    return get_token()
