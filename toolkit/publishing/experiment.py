"""Publishing inside ``qup run``: the variants as one Hub dataset, each adapter as a Hub model.

The run publishes to ``hub.url``, else ``HF_ENDPOINT`` (with ``HF_TOKEN``), else an embedded Hub
it starts under ``<run_dir>/hub`` with a fresh write token that is never printed or stored.
Repo names: ``<org>/qup-<source>-<model>`` (dataset, one config per variant) and
``<org>/qup-<source>-<model>-<variant>-lora`` (adapters). Tags: see :mod:`toolkit.publishing.publish`.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from ..models import model_info
from .cards import package_version
from .publish import PublishError


@dataclass
class Hub:
    endpoint: str
    token: str | None
    org: str
    private: bool
    embedded: bool


def _target(section) -> tuple[str, str | None]:
    """``(url, token)`` a run publishes to; ``("", None)`` means an embedded Hub."""
    url = section.url or os.environ.get("HF_ENDPOINT", "")
    return url, os.environ.get("HF_TOKEN") if url else None


def check_hub(section) -> None:
    """Fail before any work when the run would publish to a Hub without a token."""
    url, token = _target(section)
    if section.publish and url and not token:
        from ..hub.client import safe_endpoint
        raise PublishError(f"the run publishes to {safe_endpoint(url)} (hub.url or HF_ENDPOINT) but "
                           "HF_TOKEN is not set: set it, or --set hub.publish=false")


@contextlib.contextmanager
def hub_session(section, run_dir: Path):
    """Yield a :class:`Hub` to publish to (``None`` when publishing is off)."""
    if not section.publish:
        yield None
        return
    check_hub(section)
    url, token = _target(section)
    if url:
        yield Hub(url, token, section.org, section.private, embedded=False)
        return
    from ..hub import HubServer
    token = "hf_qup_" + secrets.token_hex(16)
    with HubServer(run_dir / "hub", tokens={section.org: (token, "write")}) as server:
        yield Hub(server.url, token, section.org, section.private, embedded=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def dataset_repo(hub: Hub, cfg) -> str:
    model = model_info(cfg.model).hub_id.split("/")[-1]
    return f"{hub.org}/qup-{_slug(Path(cfg.train_problems.source).name)}-{_slug(model)}"


def publish_variants(hub: Hub, cfg, sample, built: dict[str, str], options: dict,
                     decontamination: dict | None = None) -> dict:
    """Publish the ``built`` variants ({name: dir}) as configs of the run's dataset repo (one
    commit, tagged); ``sample`` is the run's SampleConfig, ``options`` each variant's options,
    ``decontamination`` what :func:`toolkit.decontaminate.check` left out (its count and method)."""
    from .publish import publish_dataset

    info = model_info(cfg.model)
    provenance = {
        "slm": {"model": info.hub_id, "revision": info.revision, "dtype": sample.slm.dtype},
        "engine": sample.slm.engine(),
        "prompt_template": sample.prompt,
        "sampling": {k: getattr(sample, k) for k in ("k", "temperature", "top_p", "top_k",
                                                      "max_new_tokens", "stop", "seed")},
        "verifier": "toolkit.answers (math-verify)",
        "filters": {name: asdict(opts) for name, opts in options.items() if opts is not None},
        **({"oracle": role_identity(cfg.oracle)} if cfg.oracle.enabled else {}),
        "toolkit_version": package_version("qup-toolkit"),
        **({"decontamination": {k: decontamination[k] for k in ("method", "checked", "dropped", "by_benchmark")}}
           if decontamination else {}),
    }
    tp = cfg.train_problems
    source_info = {"dataset": tp.source, "split": tp.split,
                   "slice": f"offset {tp.offset}, limit {tp.limit}"}
    repo = dataset_repo(hub, cfg)
    result = publish_dataset(repo, built, token=hub.token, endpoint=hub.endpoint, private=hub.private,
                             provenance=provenance, source_info=source_info)
    return {"what": f"dataset ({', '.join(built)})", "repo": repo, "revision": result.tag,
            "commit": result.commit_sha, "url": result.url}


def role_identity(role) -> dict:
    """Hub id and revision of a model role (``reference``: the dataset's own solutions)."""
    from ..generation.roles import REFERENCE
    from ..models import ModelError
    if role.model == REFERENCE:
        return {"model": "reference (the dataset's own worked solutions)"}
    try:
        info = model_info(role.model)
        return {"model": info.hub_id, "revision": info.revision, "engine": role.engine()}
    except ModelError:
        return {"model": role.model, "engine": role.engine()}


def publish_trained(hub: Hub, cfg, variant: str, adapter_dir: str, metrics: dict | list[dict]) -> dict:
    """Publish one trained adapter with its model card and held-out evaluation(s)."""
    from .publish import publish_adapter

    repo = f"{dataset_repo(hub, cfg)}-{_slug(variant)}-lora"
    result = publish_adapter(repo, adapter_dir, token=hub.token, endpoint=hub.endpoint,
                             private=hub.private,
                             eval_results=metrics if isinstance(metrics, list) else [metrics])
    return {"what": f"adapter ({variant})", "repo": repo, "revision": result.tag,
            "commit": result.commit_sha, "url": result.url}
