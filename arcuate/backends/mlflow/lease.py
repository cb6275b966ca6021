"""One import at a time per target: a lease kept among the target's own tags.

Two imports of one share into one experiment (or registered model) at the same time would
each find the runs missing and each create them. MLflow's API has no compare-and-set, and a
marker object created by name would stay behind (a deleted experiment keeps its name for
ever). What MLflow has is tags: each write is atomic, and one read returns all tags of an
object as one consistent snapshot, on a sqlite store and through a tracking server alike.
That is all Lamport's bakery algorithm needs:

1. a contender writes its own tag ``arcuate.lock.<random id>`` saying "choosing";
2. reads every lock tag, and takes as its ticket 1 + the highest ticket it sees;
3. writes its tag again, with that ticket;
4. waits while another contender is still choosing or holds a smaller (ticket, id). Then it
   holds the lease, until it deletes its tag.

Each tag also names its owner (:class:`arcuate.owners.Owner`) and an expiry, renewed while
the lease is awaited or held. A tag whose owner is provably gone (a process of this host that
no longer runs) or whose expiry has passed does not count, and whoever sees it deletes it: a
crashed import holds up the next one only until then. A holder that could not renew in time
has lost the lease; :meth:`Lease.check` then refuses to go on.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeGuard

from arcuate.backends.mlflow.connect import spark_guard
from arcuate.backends.mlflow.tags import LOCK_PREFIX
from arcuate.errors import ConflictError
from arcuate.owners import Owner

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Seconds a lease tag stays valid without being renewed.
TTL: Final = 120.0
#: Seconds between renewals.
RENEW: Final = 20.0
#: Seconds an import waits for another one before it gives up, unless configured.
WAIT: Final = 600.0
#: Seconds an import waits for another import of the same target (read when a sink is built).
LOCK_WAIT_ENV: Final = "ARCUATE_LOCK_WAIT"
_POLL_FIRST: Final = 0.1
_POLL_MAX: Final = 1.0


class TagStore(Protocol):
    """The tags of one experiment or registered model (``what`` names it in messages)."""

    what: str

    def read(self) -> dict[str, str]: ...
    def write(self, key: str, value: str) -> None: ...
    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class _Entry:
    """One contender's tag, read back."""

    key: str
    owner: Owner | None
    ticket: int
    choosing: bool
    expires: float
    since: float

    def live(self, now: float) -> bool:
        if self.owner is None or self.expires <= now or self.owner.gone():
            return False
        return self.choosing or self.ticket > 0

    @classmethod
    def parse(cls, key: str, value: str) -> _Entry:
        """A tag's entry; a tag that is not one of ours reads as a dead entry."""
        try:
            doc: Any = json.loads(value)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return cls(key, None, 0, False, 0.0, 0.0)
        ticket, choosing = doc.get("ticket"), doc.get("choosing")
        expires, since = doc.get("expires"), doc.get("since")
        if not (_int(ticket) and isinstance(choosing, bool) and _num(expires) and _num(since)):
            return cls(key, None, 0, False, 0.0, 0.0)
        owner = Owner.from_json(doc.get("owner"))
        return cls(key, owner, ticket, choosing, float(expires), float(since))


def _int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


class Lease:
    """The import lease on one target (see the module's docstring).

    ``wait``: seconds :meth:`acquire` waits for other holders before it gives up;
    ``on_wait``: told once, in words, when it has to wait.
    """

    def __init__(
        self,
        tags: TagStore,
        *,
        wait: float = WAIT,
        ttl: float = TTL,
        renew: float = RENEW,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.tags = tags
        self.key = LOCK_PREFIX + uuid.uuid4().hex
        self.owner = Owner.me()
        self.wait = wait
        self.ttl = ttl
        self.renew = renew
        self.on_wait = on_wait
        self.ticket = 0
        #: seconds spent waiting for other imports
        self.waited = 0.0
        self._choosing = True
        self._since = time.time()
        self._renewed = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back -----------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lease, waiting for earlier holders (bakery steps 1-4).

        Raises:
            ConflictError: another import held it for longer than ``wait`` seconds.
        """
        started = time.monotonic()
        try:
            self._put(choosing=True)
            self.ticket = 1 + max((e.ticket for e in self._others()), default=0)
            self._put(choosing=False)
            self._wait_turn(started)
        except BaseException:
            self.release()
            raise
        self._thread = threading.Thread(target=self._renewing, name="arcuate-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete this lease's tag (a tag left behind expires anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        # gone already, or the store is away: a tag left behind expires
        with contextlib.suppress(Exception):
            self.tags.delete(self.key)

    def check(self) -> None:
        """Raise if the lease was lost (not renewed in time, or its tag removed by another).

        Raises:
            ConflictError: the lease is lost; another import may be writing now.
        """
        if self._lost is None and time.time() - self._renewed > self.ttl:
            self._lost = f"it was not renewed for {self.ttl:.0f} s"
        if self._lost is not None:
            raise ConflictError(
                f"this import lost its lease on {self.tags.what} ({self._lost}): another "
                "import may have started, so this one stops before it creates or deletes more",
                hint="run the statement again: it finishes what was written",
            )

    # -- the bakery ------------------------------------------------------------------------------
    def _put(self, *, choosing: bool | None = None) -> None:
        """Write this contender's tag (its state, a fresh expiry)."""
        if choosing is not None:
            self._choosing = choosing
        now = time.time()
        doc = {
            "owner": self.owner.to_json(),
            "ticket": self.ticket,
            "choosing": self._choosing,
            "expires": now + self.ttl,
            "since": self._since,
        }
        self.tags.write(self.key, json.dumps(doc, separators=(",", ":")))
        self._renewed = now

    def _others(self) -> list[_Entry]:
        """The other live contenders; dead tags are deleted on the way."""
        now = time.time()
        out = []
        for key, value in self.tags.read().items():
            if not key.startswith(LOCK_PREFIX) or key == self.key:
                continue
            entry = _Entry.parse(key, value)
            if entry.live(now):
                out.append(entry)
            else:  # another contender may have deleted it first
                with contextlib.suppress(Exception):
                    self.tags.delete(key)
        return out

    def _wait_turn(self, started: float) -> None:
        delay = _POLL_FIRST
        told = False
        while True:
            mine = (self.ticket, self.key)
            ahead = [e for e in self._others() if e.choosing or (e.ticket, e.key) < mine]
            if not ahead:
                self.waited = time.monotonic() - started
                return
            first = min(ahead, key=lambda e: e.since)
            waited = time.monotonic() - started
            if waited >= self.wait:
                raise ConflictError(
                    f"another import into {self.tags.what} is running ({first.owner}, "
                    f"since {_clock(first.since)}); waited {waited:.0f} s for it",
                    hint="run the statement again once it has finished, or set "
                    "ARCUATE_LOCK_WAIT to the seconds to wait",
                )
            if not told and self.on_wait is not None:
                self.on_wait(
                    f"waiting for another import into {self.tags.what} ({first.owner}, since "
                    f"{_clock(first.since)}), for at most {self.wait:.0f} s"
                )
                told = True
            if time.time() - self._renewed > self.renew:
                self._put()
            time.sleep(min(delay, max(0.0, self.wait - waited)))
            delay = min(delay * 2, _POLL_MAX)

    def _renewing(self) -> None:
        """The holder's thread: renew the tag every ``renew`` seconds until released."""
        while not self._stop.wait(self.renew):
            if time.time() - self._renewed > 0.9 * self.ttl:
                # too late: another contender may count this tag as expired already
                self._lost = f"it was not renewed for {time.time() - self._renewed:.0f} s"
                return
            try:
                if self.key not in self.tags.read():
                    self._lost = "its tag was removed"
                    return
                self._put()
            except Exception:  # the store is away: try again next time
                continue


def tell(text: str) -> None:
    """A note for the user that is not a result (waiting for a lease): on stderr, like
    progress."""
    print(f"arcuate: {text}", file=sys.stderr, flush=True)


class ExperimentTags:
    """The tags of one experiment, as the :class:`TagStore` of its lease."""

    def __init__(self, client: MlflowClient, experiment_id: str, name: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.what = f"experiment {name!r}"

    def read(self) -> dict[str, str]:
        with spark_guard():
            return dict(self.client.get_experiment(self.experiment_id).tags or {})

    def write(self, key: str, value: str) -> None:
        with spark_guard():
            self.client.set_experiment_tag(self.experiment_id, key, value)

    def delete(self, key: str) -> None:
        with spark_guard():
            self.client.delete_experiment_tag(self.experiment_id, key)


class ModelTags:
    """The tags of one registered model, as the :class:`TagStore` of its lease."""

    def __init__(self, client: MlflowClient, name: str) -> None:
        self.client = client
        self.name = name
        self.what = f"registered model {name!r}"

    def read(self) -> dict[str, str]:
        with spark_guard():
            return dict(self.client.get_registered_model(self.name).tags or {})

    def write(self, key: str, value: str) -> None:
        with spark_guard():
            self.client.set_registered_model_tag(self.name, key, value)

    def delete(self, key: str) -> None:
        with spark_guard():
            self.client.delete_registered_model_tag(self.name, key)
