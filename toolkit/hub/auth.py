"""Tokens of the Hub server: who a request is, which namespaces it may read privately and write.

A token spec is ``NAME=TOKEN:ROLE[:ORG1,ORG2]``: NAME is the user (its own namespace), ROLE is
``read`` or ``write``, ORGs are organisations it also belongs to. Specs come from ``--token``, a
tokens file (one spec a line, ``#`` comments) or the ``QUP_HUB_TOKENS`` environment variable
(specs separated by whitespace). A write token writes only in its namespaces; private repos are
readable only by tokens of their namespace. Tokens never appear in messages or logs.

Example:
    >>> parse_tokens(["alice=hf_x:write:org1,org2"])["alice"]
    ('hf_x', 'write', ('org1', 'org2'))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import HubError
from .names import is_name

ROLES = ("read", "write")
TOKENS_ENV = "QUP_HUB_TOKENS"


@dataclass(frozen=True)
class Identity:
    """The user behind a token."""
    name: str
    role: str
    orgs: tuple[str, ...] = ()

    def member_of(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.orgs


def _spec_error(spec: str, why: str) -> ValueError:
    return ValueError(f"token spec {spec.split('=')[0]}=***: {why} (expected NAME=TOKEN:read|write[:ORG,...])")


def parse_spec(spec: str) -> tuple[str, tuple[str, str, tuple[str, ...]]]:
    """``"alice=hf_x:write:org1"`` -> ("alice", ("hf_x", "write", ("org1",))); ValueError hides the token."""
    name, _, rest = spec.strip().partition("=")
    parts = rest.split(":")
    if len(parts) >= 3 and parts[-2] in ROLES:
        token, role, orgs = ":".join(parts[:-2]), parts[-2], tuple(o for o in parts[-1].split(",") if o)
    else:
        token, role, orgs = ":".join(parts[:-1]), parts[-1], ()
    if role not in ROLES or not token:
        raise _spec_error(spec, "missing token or role")
    if not is_name(name) or not all(is_name(o) for o in orgs):
        raise _spec_error(spec, "NAME and ORGs must be valid namespace names")
    if any(c.isspace() for c in token):
        raise _spec_error(spec, "the token contains whitespace")
    return name, (token, role, orgs)


def parse_tokens(specs: list[str] | None) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Specs -> {name: (token, role, orgs)}; ValueError names the bad spec without its token."""
    return dict(parse_spec(s) for s in specs or [] if s.strip())


def load_tokens(specs: list[str] | None = None, tokens_file: str | os.PathLike | None = None,
                environ: dict | None = None) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Tokens from the command line, a tokens file and ``$QUP_HUB_TOKENS``, merged."""
    out = {}
    env = (os.environ if environ is None else environ).get(TOKENS_ENV, "")
    out.update(parse_tokens(env.split()))
    if tokens_file:
        try:
            lines = Path(tokens_file).read_text().splitlines()
        except OSError as e:
            raise ValueError(f"cannot read tokens file {tokens_file}: {e.strerror}") from None
        out.update(parse_tokens([ln for ln in lines if not ln.lstrip().startswith("#")]))
    out.update(parse_tokens(specs))
    return out


class Auth:
    """Token -> Identity. With no tokens the server is open: any request may read and write."""

    def __init__(self, tokens: dict | None = None):
        self.by_token: dict[str, Identity] = {}
        for name, value in (tokens or {}).items():
            token, role, *orgs = value
            if role not in ROLES:
                raise ValueError(f"token for {name!r}: role must be 'read' or 'write', got {role!r}")
            if token in self.by_token:
                raise ValueError(f"token for {name!r} is also the token of {self.by_token[token].name!r}")
            orgs = orgs[0] if orgs else ()
            self.by_token[token] = Identity(name, role, (orgs,) if isinstance(orgs, str) else tuple(orgs))

    @property
    def open(self) -> bool:
        return not self.by_token

    def identify(self, header: str | None) -> Identity | None:
        """The caller of an ``Authorization: Bearer`` header; None if anonymous; 401 if unknown."""
        token = header.split(" ", 1)[1].strip() if header and " " in header else None
        if self.open:
            return Identity("anonymous", "write") if token else None
        if token is None:
            return None
        if token not in self.by_token:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.by_token[token]
