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
    """Where a server listens (``host``, bound ``port``), under which URL ``prefix``, the
    ``public_url`` a proxy gives it, if any, and whether it serves HTTPS itself (``tls``)."""

    host: str
    port: int
    prefix: str
    public_url: str | None = None
    tls: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def wildcard(self) -> bool:
        return self.host in _WILDCARD

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)

    def url(self, host: str) -> str:
        """This server's endpoint under ``host`` (an IPv6 literal is bracketed)."""
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{self.port}{_path(self.prefix)}"

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
        if scheme != self.scheme and not self.tls:
            why = f"{scheme}: this server speaks plain HTTP; behind a TLS proxy pass --public-url"
            return why, fix
        if scheme != self.scheme:
            return f"{scheme}: this server speaks HTTPS (--tls-cert)", fix
        if port != self.port:
            return f"port {self.port}, not {port}", fix
        if path != _path(self.prefix):
            return f"path {_path(self.prefix) or '/'}, not {path or '/'}", fix
        if not self._host_ok(host):
            if self.loopback:
                return f"it listens on {self.host} only, not on {host}", fix
            return f"host {self.host}, not {host}", fix
        return None

    def clear_text_warning(self) -> str | None:
        """Why serving like this sends bearer tokens in clear over a network, or None: plain
        HTTP on an interface other hosts reach, with no ``--public-url https://`` saying that
        a TLS proxy is in front."""
        if self.tls or self.loopback:
            return None
        if self.public_url and urlsplit(self.public_url).scheme.lower() == "https":
            return None
        where = f"[{self.host}]" if ":" in self.host else self.host or "0.0.0.0"
        return (
            f"serving plain HTTP on {where}, which other machines reach: bearer tokens and "
            "file URLs would cross the network in clear. Serve HTTPS with --tls-cert and "
            "--tls-key, or put a TLS proxy in front and pass --public-url https://..."
        )

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
