"""Who owns a lease or a temporary directory, and whether that owner is provably gone.

An owner is a process: its host name, its pid and its start time (so that a pid the system
has given to another process since does not pass for the old owner). A process on this host
can be checked; one on another host cannot, and callers then rely on an expiry instead.

This module imports nothing but the standard library.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (None where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = text.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    """The pid namespace of this process (containers on one host may share a host name)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class Owner:
    """A process: where it runs (host and pid namespace), its pid and when it started."""

    host: str
    pid: int
    start: int | None
    ns: str | None = None

    @classmethod
    def me(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _start_time(pid), _pid_namespace())

    @classmethod
    def from_json(cls, doc: Any) -> Owner | None:
        """An owner read back from JSON; None when it is not one."""
        if not isinstance(doc, dict):
            return None
        host, pid, start, ns = doc.get("host"), doc.get("pid"), doc.get("start"), doc.get("ns")
        if not isinstance(host, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return None
        if start is not None and (not isinstance(start, int) or isinstance(start, bool)):
            return None
        if ns is not None and not isinstance(ns, str):
            return None
        return cls(host, pid, start, ns)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def gone(self) -> bool:
        """Whether this process has provably ended: it ran on this host (in this pid
        namespace), and no process with its pid and start time runs now. A process of another
        host or namespace is never provably gone."""
        if self.host != socket.gethostname() or self.ns != _pid_namespace():
            return False
        if self.pid <= 0:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it exists, as another user
        if self.start is None:
            return False
        now = _start_time(self.pid)
        return now is not None and now != self.start

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"
