"""The one error type of the Hub server: an HTTP status, the Hub's ``X-Error-Code`` and a message.

Example:
    >>> repo_not_found("alice/x").status
    404
"""
from __future__ import annotations

from ..errors import QupError


class HubError(QupError, ValueError):
    """An error answered to the client: HTTP ``status``, Hub ``code`` (X-Error-Code) and message."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.extra = extra or {}  # more JSON fields of the error body (e.g. the repo "url" on 409)


def repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")

