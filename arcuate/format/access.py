"""The rules of a recipient's access policy, in one place: IP access lists, request-rate
limits, and the bounds of the access-log statements.

The planner rejects a policy that breaks them at the statement's span, before anything runs;
the local share catalog checks them again for callers that skip the planner (the Python API)
and for hand edits of the catalog file; the server reads the checked form. Standard library
only, so the planner can import it and stay pure.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Entries of one recipient's IP access list (Databricks allows 100 per recipient).
MAX_ACCESS_LIST: Final = 100
#: Seconds in each unit a rate limit may be given per.
RATE_UNITS: Final = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
#: The largest number of requests a rate limit may allow per unit.
MAX_RATE_REQUESTS: Final = 1_000_000
#: The most rows ``SHOW ACCESS LOG`` returns, and how many without a ``LIMIT``.
MAX_LOG_ROWS: Final = 1_000_000
DEFAULT_LOG_ROWS: Final = 1000
#: IPv4 addresses mapped into IPv6 (``::ffff:10.1.2.3``): a dual-stack socket reports IPv4
#: clients this way, and they must match the IPv4 ranges of a list.
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def network(text: str) -> Network:
    """One entry of an IP access list: an address (``10.1.2.3``, a /32 or /128) or a CIDR range
    (``10.0.0.0/8``, ``2001:db8::/32``); an IPv4-mapped IPv6 range becomes its IPv4 range.

    Raises:
        ValueError: what is wrong with the entry, in words for an error message.
    """
    shown = repr(text) if len(text) <= 60 else repr(text[:57] + "...")
    if text != text.strip() or "%" in text or not text:
        raise ValueError(f"{shown} is not an IP address or CIDR range")
    try:
        found = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"{shown} is not an IP address or CIDR range such as '10.0.0.0/8' or "
                "'2001:db8::/32'"
            ) from None
        raise ValueError(
            f"{shown} has bits set after the prefix length: did you mean '{loose}'?"
        ) from None
    if isinstance(found, ipaddress.IPv6Network) and found.subnet_of(_MAPPED):
        mapped = found.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{found.prefixlen - 96}")
    return found


def access_list(entries: Sequence[str]) -> list[str]:
    """A checked IP access list in canonical text (``10.0.0.0/8``), duplicates dropped.

    Raises:
        ValueError: the list is empty or too long, or names an entry that is not an address or
            range (the first such entry, in words).
    """
    if not entries:
        raise ValueError("an IP access list needs at least one address or CIDR range")
    if len(entries) > MAX_ACCESS_LIST:
        raise ValueError(
            f"an IP access list holds at most {MAX_ACCESS_LIST} entries, got {len(entries)}"
        )
    return list(dict.fromkeys(str(network(e)) for e in entries))


def address(text: str) -> Address | None:
    """A client address as access lists compare it (IPv4-mapped IPv6 as IPv4, no zone id), or
    None when it is not an IP address (a Unix socket, a garbled forwarded header)."""
    try:
        found = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def allowed(client: Address | None, networks: Sequence[Network]) -> bool:
    """Whether ``client`` is inside one of ``networks`` (an unknown client never is)."""
    if client is None:
        return False
    return any(client.version == n.version and client in n for n in networks)


def rate_limit(requests: int, per_seconds: int) -> None:
    """Check a rate limit of ``requests`` per ``per_seconds``.

    Raises:
        ValueError: the number of requests is out of range, or the period is not a unit.
    """
    if type(requests) is not int or not 1 <= requests <= MAX_RATE_REQUESTS:
        raise ValueError(
            f"a rate limit allows 1 to {MAX_RATE_REQUESTS:,} requests per unit, got {requests!r}"
        )
    if per_seconds not in RATE_UNITS.values():
        units = ", ".join(f"{s} ({u})" for u, s in RATE_UNITS.items())
        raise ValueError(f"a rate limit is per {units} seconds, got {per_seconds!r}")


def rate_text(requests: int, per_seconds: int) -> str:
    """``100 requests per minute``: how a rate limit is shown."""
    unit = next(u for u, s in RATE_UNITS.items() if s == per_seconds).lower()
    return f"{requests} request{'' if requests == 1 else 's'} per {unit}"


def log_rows(limit: int | None) -> int:
    """How many rows ``SHOW ACCESS LOG`` returns for ``LIMIT limit`` (None: the default).

    Raises:
        ValueError: the limit is out of range.
    """
    if limit is None:
        return DEFAULT_LOG_ROWS
    if not 1 <= limit <= MAX_LOG_ROWS:
        raise ValueError(f"LIMIT must be 1 to {MAX_LOG_ROWS:,}, got {limit}")
    return limit


def moment(text: str) -> datetime.datetime:
    """A ``SINCE`` timestamp: ISO-8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``), UTC unless it
    names an offset.

    Raises:
        ValueError: it is not such a timestamp.
    """
    try:
        found = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        shown = repr(text) if len(text) <= 60 else repr(text[:57] + "...")
        raise ValueError(
            f"{shown} is not an ISO-8601 timestamp such as '2026-01-31' or "
            "'2026-01-31T12:00:00Z'"
        ) from None
    if found.tzinfo is None:
        found = found.replace(tzinfo=datetime.UTC)
    return found.astimezone(datetime.UTC)
