"""Which browsers and host names the Hub answers: no cross-site writes, no DNS rebinding.

A web page may make a visitor's browser send requests to a Hub on their machine. Two checks stop
it: a state-changing request (any method but GET/HEAD/OPTIONS) carrying an ``Origin`` (browsers
send one; ``huggingface_hub``, ``datasets`` and the ``hf`` CLI send none) must come from the
Hub's own origin, and the ``Host`` header must name the Hub: an IP address it listens on (any IP
when bound to all interfaces; a loopback IP when bound to loopback), ``localhost`` (when bound to
loopback or all interfaces), the bound host name, or a name given with ``--allowed-host`` (``*``
turns the Host check off, e.g. behind a proxy that checks it). A rebinding page's requests carry
its own host name, which is none of these.

Example:
    >>> host_allowed("127.0.0.1:8080", "127.0.0.1", ())
    True
    >>> host_allowed("evil.example:8080", "127.0.0.1", ())
    False
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import HubError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
WILDCARDS = ("", "0.0.0.0", "::")


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _hostname(host: str) -> str:
    """``host`` of a ``Host`` header or an origin's netloc, without port or brackets, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(header: str, bound: str, allowed) -> bool:
    name = _hostname(header).rstrip(".")
    allowed = {a.lower().rstrip(".") for a in allowed}
    if "*" in allowed or name in allowed:
        return True
    bound = _hostname(bound) if bound.startswith("[") else bound.lower()
    bound_ip, ip = _ip(bound), _ip(name)
    loopback = bound_ip is not None and bound_ip.is_loopback or bound == "localhost"
    if ip is not None:
        return bound in WILDCARDS or (loopback and ip.is_loopback) or ip == bound_ip
    if name == "localhost" or name.endswith(".localhost"):
        return loopback or bound in WILDCARDS
    return bound_ip is None and name == bound


def check(method: str, headers, bound: str, allowed) -> None:
    """403 for a foreign ``Host`` or a cross-site state-changing request (see module docstring)."""
    host = headers.get("host")
    if host is not None and not host_allowed(host, bound, allowed):
        raise HubError(403, f"Forbidden: Host {host[:100]!r} is not an address of this Hub "
                            "(start it with --allowed-host NAME to accept that name)")
    if method in SAFE_METHODS:
        return
    origin, site = headers.get("origin"), headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        raise HubError(403, "Forbidden: cross-site request (Sec-Fetch-Site) refused")
    if origin is not None:
        netloc = urlsplit(origin).netloc if origin != "null" else ""
        if not netloc or host is None or netloc.lower() != host.strip().lower():
            raise HubError(403, f"Forbidden: cross-site request from Origin {origin[:100]!r} refused")
