"""Publish trace datasets and LoRA adapters to the Hub (huggingface.co or a compatible server).

**Endpoint and token**: explicit ``endpoint=``/``token=`` arguments, else ``HF_ENDPOINT`` /
``HF_TOKEN`` from the environment (endpoint default ``https://huggingface.co``). For any other
endpoint Xet uploads are switched off for the duration of the call (plain LFS). Failures
(no token, 401, 403, 404, unreachable) raise :class:`PublishError` naming repo and endpoint only.

**One atomic commit per publish**, then a tag. Tag scheme: ``v{N}`` with N = 1 + the largest
existing ``v<int>`` tag of the repo (unique, sorts numerically; ``tag=`` overrides). Each repo
holds ``qup_manifest.json`` (sha256 of every file, per-variant stats, provenance); a publish
whose files would all hash the same as the manifest's makes no commit and returns the existing
commit and tag (``created_commit=False``). Unchanged files are not re-uploaded.

**Datasets**: one repo per experiment; each variant is a config with data files
``<variant>/train-0000i-of-0000n.parquet`` (deterministic bytes) listed in the card's YAML
``configs:``, so ``load_dataset(repo, "rft", revision="v2")`` works. Variants already in the
repo and not being republished are kept (files, stats and card entry).

**Adapters**: ``adapter_dir`` holds ``adapter_config.json`` + ``adapter_model.safetensors`` (plus
tokenizer files, uploaded when present) and ``qup_train.json`` written by ``train``. Read from it:
``base_model`` (Hub id, required), ``base_model_revision``, ``dataset_repo``, ``dataset_revision``,
``dataset_config`` (strings, optional), ``config`` and ``metrics`` (dicts, optional); other keys are
kept in the uploaded (scrubbed) copy. Without it, ``base_model_name_or_path`` of the adapter config
must be a Hub id. A local ``base_model_name_or_path`` is rewritten to ``base_model``.

Example:
    >>> r = publish_dataset("me/qup-svamp-smollm2-135m", {"rft": "runs/x/rft"})  # doctest: +SKIP
    >>> r.tag, r.commit_sha[:7]                                                 # doctest: +SKIP
    ('v1', '3f2a9c1')
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import QupError
from ..hub.client import DEFAULT_ENDPOINT, safe_endpoint, xet_off_for
from ..models import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from ..stats import trace_stats
from . import cards

log = logging.getLogger(__name__)
MANIFEST = "qup_manifest.json"
TRAIN_INFO = "qup_train.json"
SHARD_BYTES = 256 << 20
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
EXTRA_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "chat_template.jinja")
REQUIRED_COLUMNS = ("problem_id", "completion", "correct")
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_TAG_RE = re.compile(r"^v(\d+)$")


class PublishError(QupError, ValueError):
    """Publishing failed for a reason the user can fix (input, token, permissions, repo)."""


@dataclass
class PublishResult:
    repo_id: str
    commit_sha: str
    tag: str
    url: str
    created_commit: bool


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Hub:
    api: object
    repo_id: str
    repo_type: str
    endpoint: str
    token: str

    @property
    def where(self) -> str:
        return f"{self.repo_type} repo {self.repo_id} at {safe_endpoint(self.endpoint)}"

    @property
    def url(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"{safe_endpoint(self.endpoint)}/{prefix}{self.repo_id}"


def _connect(repo_id: str, repo_type: str, token: str | None, endpoint: str | None) -> _Hub:
    from huggingface_hub import HfApi
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    if not _REPO_RE.match(repo_id or ""):
        raise PublishError(f"repo id must look like ORG/NAME, got {repo_id!r}")
    token = token or os.environ.get("HF_TOKEN")
    where = f"{repo_type} repo {repo_id} at {safe_endpoint(endpoint)}"
    if not token:
        raise PublishError(f"no Hub token to publish {where}: pass token= or set HF_TOKEN")
    return _Hub(HfApi(endpoint=endpoint, token=token), repo_id, repo_type, endpoint, token)


_HINTS = {401: "authentication failed (token missing, invalid or expired)",
          403: "forbidden (the token has no write access to this repo)",
          404: "not found (repo, revision or API route)",
          409: "conflict (the repo changed meanwhile, or the tag exists)"}


@contextmanager
def _session(hub: _Hub):
    """Xet off for non-huggingface.co endpoints; Hub/network errors → :class:`PublishError`."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError
    try:
        with xet_off_for(hub.endpoint):
            yield
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        detail = cards.scrub_text((e.server_message or "").strip().splitlines()[0][:200]
                                  if e.server_message else "", (hub.token,))
        hint = _HINTS.get(status, "request failed")
        raise PublishError(f"cannot publish {hub.where}: HTTP {status} {hint}"
                           + (f": {detail}" if detail else "")) from e
    except (httpx2.TransportError, ConnectionError) as e:
        raise PublishError(f"cannot reach {hub.where}: {type(e).__name__}") from e


def _state(hub: _Hub) -> tuple[str | None, dict[str, str], str | None]:
    """``(head sha of main, {tag: sha}, raw manifest text or None)`` of the repo."""
    from huggingface_hub.errors import EntryNotFoundError
    refs = hub.api.list_repo_refs(hub.repo_id, repo_type=hub.repo_type)
    head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
    tags = {t.name: t.target_commit for t in refs.tags}
    manifest = None
    if head:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = hub.api.hf_hub_download(hub.repo_id, MANIFEST, repo_type=hub.repo_type,
                                               revision=head, cache_dir=tmp)
                manifest = Path(path).read_text()
            except EntryNotFoundError:
                pass
    return head, tags, manifest


def _next_tag(tags: dict[str, str]) -> str:
    numbers = [int(m.group(1)) for t in tags if (m := _TAG_RE.match(t))]
    return f"v{max(numbers, default=0) + 1}"


def _dump(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _publish(hub: _Hub, private: bool, tag: str | None, message: str,
             build: Callable[[str, dict], tuple[dict[str, bytes], dict]]) -> PublishResult:
    """Shared flow: state → build files for a tag → skip if unchanged → commit → tag.

    ``build(tag, old_manifest)`` returns ``(files to upload by path, new manifest)``; the manifest's
    ``files`` lists sha256 of every file the repo will hold besides the manifest itself.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import RepositoryNotFoundError
    if tag is not None and not _NAME_RE.match(tag):
        raise PublishError(f"invalid tag {tag!r} for {hub.where}")
    with _session(hub):
        try:
            hub.api.repo_info(hub.repo_id, repo_type=hub.repo_type)
        except RepositoryNotFoundError:
            hub.api.create_repo(hub.repo_id, repo_type=hub.repo_type, private=private, exist_ok=True)
        head, tags, old_raw = _state(hub)
        old = json.loads(old_raw) if old_raw else {}
        head_tags = sorted((t for t, sha in tags.items() if sha == head),
                           key=lambda t: (bool(_TAG_RE.match(t)), int(t[1:]) if _TAG_RE.match(t) else 0))
        candidate = tag or (head_tags[-1] if head_tags else None)
        if head and old_raw and candidate and tags.get(candidate, head) == head:
            files, manifest = build(candidate, old)
            if _dump(manifest).decode() == old_raw:
                if candidate not in tags:
                    hub.api.create_tag(hub.repo_id, tag=candidate, revision=head, repo_type=hub.repo_type)
                log.info("%s: unchanged, at %s (%s)", hub.where, candidate, head[:7])
                return PublishResult(hub.repo_id, head, candidate, hub.url, False)
        new_tag = tag or _next_tag(tags)
        if new_tag in tags:
            raise PublishError(f"tag {new_tag} already exists in {hub.where} at another commit")
        files, manifest = build(new_tag, old)
        files[MANIFEST] = _dump(manifest)
        old_files = old.get("files", {})
        ops = [CommitOperationAdd(path, data) for path, data in sorted(files.items())
               if path in (MANIFEST, "README.md") or old_files.get(path) != sha256(data)]
        ops += [CommitOperationDelete(path) for path in sorted(old_files)
                if path not in manifest["files"]]
        for op in ops:
            if isinstance(op, CommitOperationAdd):
                log.info("upload %s (%d bytes)", op.path_in_repo, len(files[op.path_in_repo]))
            else:
                log.info("delete %s", op.path_in_repo)
        info = hub.api.create_commit(hub.repo_id, operations=ops, commit_message=message,
                                     repo_type=hub.repo_type, parent_commit=head)
        hub.api.create_tag(hub.repo_id, tag=new_tag, revision=info.oid, repo_type=hub.repo_type)
        log.info("%s: committed %s, tagged %s", hub.where, info.oid[:7], new_tag)
        return PublishResult(hub.repo_id, info.oid, new_tag, hub.url, True)


# ----------------------------------------------------------------------------- datasets
def _load_variant(name: str, data):
    from datasets import Dataset

    from ..io import load
    if not _NAME_RE.match(name) or name == "default":
        raise PublishError(f"invalid variant name {name!r} (letters, digits, _ . -; not 'default')")
    if not isinstance(data, Dataset):
        if not Path(data).exists():
            raise PublishError(f"variant {name}: dataset dir {data} not found")
        try:
            data = load(data)  # a stage output dir, a save_to_disk dir, parquet or jsonl
        except Exception as e:  # datasets raises several types for a bad dir
            raise PublishError(f"variant {name}: cannot load {data}: {e}") from e
        if not isinstance(data, Dataset):
            raise PublishError(f"variant {name}: {data} is a DatasetDict, expected one Dataset")
    missing = [c for c in REQUIRED_COLUMNS if c not in data.column_names]
    if missing:
        raise PublishError(f"variant {name}: missing column(s) {missing} (see toolkit.schema.TRACE)")
    return data


def _check_no_token(name: str, table, token: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    needle = token.encode()
    for col, typ in zip(table.column_names, table.schema.types):
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            # Fast pre-check on each chunk's raw value bytes (~6x faster than match_substring);
            # it can only over-report (a hit across two values or outside a slice), never miss.
            data = [c.buffers()[2] for c in table[col].chunks]
            if not any(b is not None and needle in b.to_pybytes() for b in data):
                continue
            if pc.any(pc.match_substring(table[col], token)).as_py():
                raise PublishError(f"variant {name}: column {col!r} contains the Hub token; not publishing")


def _encode_variant(name: str, ds) -> tuple[dict[str, bytes], dict]:
    """Parquet shards (deterministic) and stats of one variant."""
    n = max(1, math.ceil(ds._estimate_nbytes() / SHARD_BYTES))
    files = {}
    for i in range(n):
        buf = io.BytesIO()
        ds.shard(n, i, contiguous=True).to_parquet(buf)
        files[f"{name}/train-{i:05d}-of-{n:05d}.parquet"] = buf.getvalue()
    from ..diagnostics.tables import variant_table
    stats = trace_stats(ds)
    if "reward_kind" in ds.column_names:   # scored: per-diagnostic means with 95% intervals
        stats["diagnostics_ci"] = variant_table({name: ds})[name]
    return files, stats


def publish_dataset(repo_id: str, variants: dict, *, token: str | None = None,
                    endpoint: str | None = None, private: bool = False,
                    provenance: dict | None = None, source_info: dict | None = None,
                    tag: str | None = None) -> PublishResult:
    """Publish trace ``variants`` ({config name: Dataset or save_to_disk dir}) as configs of one repo.

    ``provenance`` (merged over the repo's previous one) may hold ``slm``/``oracle``
    (``{"model", "revision"}``), ``engine``, ``verifier``, ``filters`` and anything else;
    ``source_info`` holds ``dataset`` (Hub id), ``revision``, ``config``, ``license``, ``pretty_name``.
    Both are scrubbed of tokens and private URLs before they reach the card.
    """
    if not variants:
        raise PublishError(f"nothing to publish to {repo_id}: no variants given")
    hub = _connect(repo_id, "dataset", token, endpoint)
    encoded = {}
    for name, data in sorted(variants.items()):
        ds = _load_variant(name, data)
        _check_no_token(name, ds.with_format("arrow")[:], hub.token)
        files, stats = _encode_variant(name, ds)
        encoded[name] = files, stats
        log.info("variant %s: %d rows, %d parquet bytes in %d file(s)", name, len(ds),
                 sum(map(len, files.values())), len(files))

    def build(tag_name: str, old: dict):
        kept = {k: v for k, v in old.get("variants", {}).items() if k not in encoded}
        entries, upload = dict(kept), {}
        for name, (files, stats) in encoded.items():
            upload.update(files)
            entries[name] = {"files": {p: sha256(b) for p, b in files.items()},
                             "rows": stats["rows"], "bytes": sum(map(len, files.values())),
                             "stats": stats}
        prov = cards.scrub({**old.get("provenance", {}), **(provenance or {})}, (hub.token,))
        src = cards.scrub(source_info if source_info is not None else old.get("source_info", {}),
                          (hub.token,))
        readme = cards.render_dataset_card(
            repo_id, tag_name, {k: v["stats"] for k, v in entries.items()}, prov, src,
            {k: f"{k}/train-*.parquet" for k in entries})
        upload["README.md"] = cards.scrub_text(readme, (hub.token,)).encode()
        all_files = {p: s for e in entries.values() for p, s in e["files"].items()}
        all_files["README.md"] = sha256(upload["README.md"])
        manifest = {"format": 1, "kind": "qup-dataset", "files": dict(sorted(all_files.items())),
                    "variants": entries, "provenance": prov, "source_info": src}
        return upload, manifest

    names = ", ".join(sorted(encoded))
    return _publish(hub, private, tag, f"qup: publish variants {names}", build)


# ----------------------------------------------------------------------------- adapters
def _is_hub_id(name: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$", name or "")) \
        and not Path(name).exists()


def read_train_info(adapter_dir: Path) -> dict:
    """``qup_train.json`` of ``adapter_dir`` (or a minimal one from a Hub-id base model)."""
    for name in ADAPTER_FILES:
        if not (adapter_dir / name).is_file():
            raise PublishError(f"adapter dir {adapter_dir} has no {name}")
    cfg = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    path = adapter_dir / TRAIN_INFO
    if path.is_file():
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise PublishError(f"{path}: invalid JSON ({e})") from e
    else:
        info = {"base_model": cfg.get("base_model_name_or_path") or ""}
    base = info.get("base_model")
    if not isinstance(base, str) or not _is_hub_id(base):
        raise PublishError(f"{path}: field 'base_model' must be the base model's Hub id, got {base!r}"
                           " (a local path cannot be named on the Hub)")
    for key in ("base_model_revision", "dataset_repo", "dataset_revision", "dataset_config"):
        if info.get(key) is not None and not isinstance(info[key], str):
            raise PublishError(f"{path}: field {key!r} must be a string, got {info[key]!r}")
    for key in ("config", "metrics"):
        if not isinstance(info.setdefault(key, {}), dict):
            raise PublishError(f"{path}: field {key!r} must be an object")
    return info


def _check_eval(results: list[dict]) -> list[dict]:
    """Validate eval dicts; an ``evaluate`` metrics.json (``source`` path) is named by its folder."""
    keep = ("dataset", "dataset_id", "split", "revision", "accuracy", "correct", "total", "metric", "scores",
            "protocol", "protocol_id")
    out = []
    for i, r in enumerate(results):
        if isinstance(r, dict) and "dataset" not in r and r.get("source"):
            r = {**r, "dataset": Path(str(r["source"]).rstrip("/")).name}
        if not isinstance(r, dict) or not r.get("dataset") or \
                not isinstance(r.get("accuracy"), (int, float)):
            raise PublishError(f"eval_results[{i}] needs 'dataset' and a numeric 'accuracy', got {r!r}")
        out.append({k: r[k] for k in keep if r.get(k) is not None})
    return out


def publish_adapter(repo_id: str, adapter_dir, *, token: str | None = None,
                    endpoint: str | None = None, private: bool = False,
                    eval_results: list[dict] | None = None, tag: str | None = None) -> PublishResult:
    """Publish a PEFT adapter dir as a model repo loadable with ``PeftModel.from_pretrained``.

    ``eval_results``: dicts like ``{"dataset": "svamp", "split": "test", "accuracy": 0.12,
    "correct": 6, "total": 50}`` (optional ``dataset_id``: Hub id, ``revision``).
    """
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise PublishError(f"adapter dir {adapter_dir} not found")
    hub = _connect(repo_id, "model", token, endpoint)
    info = cards.scrub(read_train_info(adapter_dir), (hub.token,))
    results = cards.scrub(_check_eval(list(eval_results or [])), (hub.token,))
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    if config.get("base_model_name_or_path") != info["base_model"]:
        log.info("adapter_config.json: base_model_name_or_path %r -> %r",
                 config.get("base_model_name_or_path"), info["base_model"])
        config["base_model_name_or_path"] = info["base_model"]
    files = {ADAPTER_CONFIG: _dump(config), TRAIN_INFO: _dump(info),
             ADAPTER_WEIGHTS: (adapter_dir / ADAPTER_WEIGHTS).read_bytes()}
    for name in EXTRA_FILES:
        if (adapter_dir / name).is_file():
            files[name] = (adapter_dir / name).read_bytes()

    def build(tag_name: str, old: dict):
        readme = cards.render_model_card(repo_id, tag_name, info, results)
        upload = {**files, **cards.eval_results_files(results),
                  "README.md": cards.scrub_text(readme, (hub.token,)).encode()}
        manifest = {"format": 1, "kind": "qup-adapter",
                    "files": {p: sha256(b) for p, b in sorted(upload.items())}}
        return upload, manifest

    return _publish(hub, private, tag, f"qup: publish adapter of {info['base_model']}", build)
