"""``qup space run`` (the Space locally, against a run dir's embedded Hub) and ``qup space deploy``.

``run``: starts the run's Hub (``<run_dir>/hub``, read-only to the app: it holds a write token
nobody knows), optionally ``qup serve`` (the TGI backend, adapters by repo id), then the app.
``deploy``: one commit to a Space repo holding ``spaces/`` (app.py, requirements.txt, README.md)
and the ``toolkit`` package next to it, so the Space runs the same code; the card's ``models:``
and ``datasets:`` name the experiment's repos when given.

Example:
    >>> run("runs/cpu-demo", port=7860)                                        # doctest: +SKIP
    >>> deploy("me/qup-arena", endpoint="https://huggingface.co")             # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from ..errors import QupError

log = logging.getLogger(__name__)
SPACE_DIR = Path(__file__).resolve().parents[2] / "spaces"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE_DATA = (".py", ".txt", ".jinja", ".yaml")


@contextlib.contextmanager
def run_dir_hub(run_dir):
    """A Hub server over ``<run_dir>/hub`` (loopback; anonymous visitors may read, nobody writes)."""
    from ..hub import HubServer
    root = Path(run_dir) / "hub"
    if not (root / "repos").is_dir():
        raise QupError(f"{root}: no Hub here (run `make demo` or `qup run ...` first, or pass --hub-url)")
    with HubServer(root, tokens={"qup-space": ("hf_" + secrets.token_hex(16), "write")}) as server:
        yield server.url


@contextlib.contextmanager
def tgi_for(api, exp):
    """``qup serve`` in this process with the experiment's adapters, named by their repo ids."""
    from ..serve.server import TGIServer
    from .backends import _download, base_model_path
    adapters = {a.repo_id: _download(api, a.repo_id, a.revision) for a in exp.adapters}
    with TGIServer(base_model_path(api, exp.base_model), adapters=adapters, max_batch_size=4) as server:
        yield server.url


def _author(api, env: dict, own_hub: bool, experiment: str) -> str:
    """The namespace the local Space trusts: ``QUP_SPACE_AUTHOR``; on a run dir's own Hub (nobody
    else writes there) the experiment's; else the Space's owner as on the Hub (SPACE_ID, token)."""
    from .discovery import discover, owner, pick
    from .settings import SpaceSettings
    if env.get("QUP_SPACE_AUTHOR"):
        return env["QUP_SPACE_AUTHOR"]
    if own_hub:
        exp = pick(discover(api), experiment)
        return exp.dataset_repo.split("/")[0] if exp else ""
    return owner(SpaceSettings(token=env.get("HF_TOKEN"), space_id=env.get("SPACE_ID", "")), api)


def run(run_dir: str | None = None, hub_url: str | None = None, backend: str = "local",
        host: str = "127.0.0.1", port: int = 7860, experiment: str = "", block: bool = True):
    """Serve the Space locally; returns the Gradio app when ``block`` is False (tests)."""
    from huggingface_hub import HfApi

    from .app import build_demo
    from .discovery import discover, pick
    from .settings import SpaceSettings
    with contextlib.ExitStack() as stack:
        own_hub = None
        if hub_url is None:
            if run_dir is None:
                raise QupError("pass --run-dir (a run with an embedded Hub) or --hub-url")
            hub_url = own_hub = stack.enter_context(run_dir_hub(run_dir))
        env = {**os.environ, "HF_ENDPOINT": hub_url, "QUP_SPACE_BACKEND": backend}
        if experiment:
            env["QUP_SPACE_EXPERIMENT"] = experiment
        api = HfApi(endpoint=hub_url, token=env.get("HF_TOKEN"))
        author = _author(api, env, bool(own_hub), experiment)
        if author:
            env["QUP_SPACE_AUTHOR"] = author
        if backend == "tgi":
            exp = pick(discover(api, author), experiment) if author else None
            if exp is None:
                raise QupError(f"no experiment on {hub_url} to serve")
            env["QUP_SPACE_TGI_URL"] = stack.enter_context(tgi_for(api, exp))
        settings = SpaceSettings.from_env(env)
        demo = build_demo(settings)
        log.info("QUP Space on http://%s:%d (Hub %s, backend %s)", host, port, hub_url, backend)
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=False)
        if not block:
            stack.pop_all()   # the caller closes the app; servers stop with the process
            return demo
    return None


def space_files(space_dir: Path = SPACE_DIR, package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Files a Space repo gets: ``spaces/*`` at its root, the toolkit package (code + data) under ``toolkit/``."""
    files = {}
    for p in sorted(space_dir.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            files[p.relative_to(space_dir).as_posix()] = p
    for p in sorted(package_dir.rglob("*")):
        rel = p.relative_to(package_dir)
        if p.is_file() and p.suffix in PACKAGE_DATA and "__pycache__" not in rel.parts:
            files[f"toolkit/{rel.as_posix()}"] = p
    return files


def card_text(readme: str, models: list[str] | None, datasets: list[str] | None) -> str:
    """The Space card with ``models:`` / ``datasets:`` set to the experiment's repos (when given)."""
    from huggingface_hub import RepoCard
    card = RepoCard(readme)
    if models:
        card.data.models = models
    if datasets:
        card.data.datasets = datasets
    return str(card)


def deploy(repo_id: str, *, endpoint: str | None = None, token: str | None = None, private: bool = False,
           experiment: str = "", space_dir: Path = SPACE_DIR) -> str:
    """Push the Space (one commit) to ``repo_id``; returns the commit URL.

    The card's ``models:``/``datasets:`` list the experiment found on the same Hub (``experiment``
    or the largest), else the folder's README stays as it is.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    from ..hub.client import DEFAULT_ENDPOINT, safe_endpoint, xet_off_for
    from .discovery import discover, pick
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise QupError(f"no Hub token to deploy {repo_id} to {safe_endpoint(endpoint)}: set HF_TOKEN")
    api = HfApi(endpoint=endpoint, token=token)
    files = space_files(space_dir)
    readme = files["README.md"].read_text()
    with xet_off_for(endpoint):
        try:
            exp = pick(discover(api, repo_id.split("/")[0]), experiment)   # the Space's owner's
            if exp is not None:
                readme = card_text(readme, [a.repo_id for a in exp.adapters],
                                   [exp.dataset_repo] + ([exp.results_repo] if exp.results_repo else []))
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            ops = [CommitOperationAdd(path, readme.encode() if path == "README.md" else str(src))
                   for path, src in files.items()]
            info = api.create_commit(repo_id, operations=ops, repo_type="space",
                                     commit_message="qup: deploy the QUP arena Space")
        except Exception as e:   # noqa: BLE001 - one line naming repo and endpoint, never the token
            from ..publishing.cards import scrub_text
            raise QupError(f"cannot deploy Space {repo_id} to {safe_endpoint(endpoint)}: "
                           f"{scrub_text(str(e).splitlines()[0] if str(e) else type(e).__name__, (token,))}") from None
    return info.commit_url
