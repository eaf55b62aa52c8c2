"""Validation of everything a client names: repo ids, paths in a repo, refs, revisions, LFS oids.

Rules follow the Hub (huggingface_hub's ``validate_repo_id``) and git (``check-ref-format``,
fsck's path rules). Every check uses ``fullmatch``: a ``$`` would accept a trailing newline.

Example:
    >>> check_path("data/train.parquet")
    'data/train.parquet'
    >>> check_repo_id("model", "alice/SmolLM2-1.7B")
    ('alice', 'SmolLM2-1.7B')
"""
from __future__ import annotations

import re

from dulwich.refs import check_ref_format

from .errors import HubError

REPO_TYPES = ("model", "dataset", "space")
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_OID_RE = re.compile(r"[0-9a-f]{64}")
SHA_RE = re.compile(r"[0-9a-f]{40}")
_BAD_TEXT_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # control chars, lone surrogates (not UTF-8)
_BAD_MESSAGE_RE = re.compile(r"[\x00\ud800-\udfff]")
MAX_PATH_BYTES = 4096


def is_name(name: object) -> bool:
    """A valid namespace or repo name: 1-96 of ``[A-Za-z0-9._-]``, no ``--``/``..``, no ``.git`` end."""
    return (isinstance(name, str) and _NAME_RE.fullmatch(name) is not None and "--" not in name
            and ".." not in name and not name.endswith(".git"))


def check_repo_id(repo_type: str, repo_id: str) -> tuple[str, str]:
    """(namespace, name) of a valid ``namespace/name``; 400 otherwise."""
    if repo_type not in REPO_TYPES:
        raise HubError(400, f"Invalid repo type {repo_type!r}: expected one of {REPO_TYPES}")
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(is_name(p) for p in parts):
        raise HubError(400, f"Invalid repo id {repo_id!r}: expected 'namespace/name' (letters, digits, "
                            "'-', '_', '.'; no '--' or '..'; at most 96 characters)")
    return parts[0], parts[1]


def check_path(path: object, folder: bool = False) -> str:
    """A file path inside a repo as git and the Hub accept it; ``folder`` allows one trailing '/'."""
    if not isinstance(path, str):
        raise HubError(400, f"Invalid path in repo: expected a string, got {type(path).__name__}")
    p = path[:-1] if folder and path.endswith("/") else path
    parts = p.split("/")
    if (not p or _BAD_TEXT_RE.search(p) or len(p.encode()) > MAX_PATH_BYTES
            or any(s in ("", ".", "..") or s.lower() == ".git" for s in parts)):
        raise HubError(400, f"Invalid path in repo: {path!r} (no empty, '.', '..' or '.git' segments, "
                            "no leading '/', no control characters)")
    return p


def check_ref_name(ref: str) -> str:
    """A full ref (``refs/heads/x``) that git accepts; 400 otherwise."""
    if not isinstance(ref, str) or not ref.startswith("refs/") or _BAD_TEXT_RE.search(ref) \
            or not check_ref_format(ref.encode()):
        raise HubError(400, f"Invalid reference name {ref.split('/', 2)[-1]!r}")
    return ref


def check_revision(revision: str) -> str:
    """A branch, tag, full ref or commit sha to look up: 404 RevisionNotFound when malformed."""
    full = revision if revision.startswith("refs/") else f"refs/heads/{revision}"
    if SHA_RE.fullmatch(revision) or (not _BAD_TEXT_RE.search(revision) and check_ref_format(full.encode())):
        return revision
    raise HubError(404, f"Invalid rev id: {revision!r}", "RevisionNotFound")


def check_text(text: object, what: str) -> str:
    """Free text stored in git (commit titles, messages): a string without NUL or lone surrogates."""
    if not isinstance(text, str) or _BAD_MESSAGE_RE.search(text):
        raise HubError(400, f"Invalid {what}: expected UTF-8 text without NUL characters")
    return text


def check_oid(oid: object) -> str:
    """An LFS oid: 64 lowercase hex (sha256)."""
    if not isinstance(oid, str) or not _OID_RE.fullmatch(oid):
        raise HubError(400, f"Invalid LFS oid {str(oid)[:80]!r}: expected 64 lowercase hex (sha256)")
    return oid


def is_oid(oid: object) -> bool:
    return isinstance(oid, str) and _OID_RE.fullmatch(oid) is not None
