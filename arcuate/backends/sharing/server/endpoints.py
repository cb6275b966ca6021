"""The URLs recipients use to reach a server, and whether a profile's endpoint is one of them.

``arcuate serve`` prints these URLs and checks every recipient's profile against them: a
profile written for another port, path or host (or for a proxy the server is not told about)
would send that recipient's requests elsewhere, and nothing else would say so.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

_WILDCARD = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Listening:
    """Where a server listens (``host``, bound ``port``), under which URL ``prefix``, and the
    ``public_url`` a proxy gives it, if any."""

    host: str
    port: int
    prefix: str
    public_url: str | None = None

    @property
    def wildcard(self) -> bool:
        return self.host in _WILDCARD

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)

    def url(self, host: str) -> str:
        """This server's endpoint under ``host`` (an IPv6 literal is bracketed)."""
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}{_path(self.prefix)}"

    def recipient_urls(self) -> list[str]:
        """The endpoints to put in profiles, best first."""
        if self.public_url:
            return [self.public_url.rstrip("/")]
        if not self.wildcard:
            return [self.url(self.host)]
        names = [socket.gethostname(), _primary_address()]
        return [self.url(n) for n in dict.fromkeys(n for n in names if n)]

    def scope(self) -> str:
        """Who can connect, in words."""
        if self.wildcard:
            return "every interface"
        return "this machine only" if self.loopback else "this address only"

    def mismatch(self, endpoint: str) -> tuple[str, str] | None:
        """Why a profile naming ``endpoint`` would not reach this server, and the endpoint it
        should name instead; None when it reaches it (as far as can be told from here)."""
        try:
            scheme, host, port, path = _parts(endpoint)
        except ValueError:
            return "it is not an http(s) URL", self.recipient_urls()[0]
        if self.public_url:
            if (scheme, host, port, path) == _parts(self.public_url):
                return None
            return "", self.public_url.rstrip("/")
        fix = self.url(host if self._host_ok(host) else self._shown_host())
        if scheme != "http":
            why = f"{scheme}: this server speaks plain HTTP; behind a TLS proxy pass --public-url"
            return why, fix
        if port != self.port:
            return f"port {self.port}, not {port}", fix
        if path != _path(self.prefix):
            return f"path {_path(self.prefix) or '/'}, not {path or '/'}", fix
        if not self._host_ok(host):
            if self.loopback:
                return f"it listens on {self.host} only, not on {host}", fix
            return f"host {self.host}, not {host}", fix
        return None

    def _host_ok(self, host: str) -> bool:
        if self.wildcard:
            return True
        if self.loopback:
            return _is_loopback(host)
        # A name may resolve to this address; only another address literal is known wrong.
        return not _is_ip(host) or ipaddress.ip_address(host) == ipaddress.ip_address(self.host)

    def _shown_host(self) -> str:
        if self.wildcard:
            return socket.gethostname()
        return self.host


def _path(prefix: str) -> str:
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def _parts(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) with defaults filled in, for comparing endpoints."""
    split = urlsplit(url.strip())
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not split.hostname:
        raise ValueError(url)
    port = split.port or _DEFAULT_PORTS[scheme]
    return scheme, split.hostname.lower(), port, split.path.rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


def _primary_address() -> str | None:
    """The address this machine uses to reach other hosts (no packet is sent), if any."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a route lookup, nothing sent
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if _is_loopback(address) or address == "0.0.0.0" else address
