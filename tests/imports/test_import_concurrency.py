"""Two imports of one share into one target at the same time end like one import.

Imports of one target are serialised by a lease kept among the target's own tags (see
``arcuate/backends/mlflow/lease.py``): the second waits, then finds everything in place.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from arcuate.backends.mlflow.lease import ExperimentTags, Lease
from arcuate.engine.imports import import_experiment, import_model
from arcuate.errors import ConflictError
from arcuate.owners import Owner
from tests.conftest import make_store
from tests.export.export_helpers import Tricky
from tests.imports.concurrency_helpers import both_at_once, concurrent_imports_equal_one
from tests.imports.import_helpers import (
    Share,
    batches_of,
    recipient_context,
    run_row,
    store_state,
    version_row,
)


def test_two_imports_at_once_into_sqlite(
    provider: Tricky, share: Share, recipient_store: Any, mlflow_template: Path, workdir: Path
) -> None:
    reference = make_store(mlflow_template, workdir / "reference")
    concurrent_imports_equal_one(recipient_store, share, reference)


# -- the lease itself ----------------------------------------------------------------------------
def lease_tag(owner: dict[str, Any], *, expires_in: float, ticket: int = 1) -> str:
    now = time.time()
    doc = {"owner": owner, "ticket": ticket, "choosing": False, "expires": now + expires_in}
    return json.dumps({**doc, "since": now - 30})


def test_a_crashed_or_expired_holder_does_not_block(recipient_store: Any) -> None:
    """A lease tag of a process of this host that has ended, or one whose expiry has passed
    (a holder on another host that stopped renewing), is ignored and removed."""
    client = recipient_store.client()
    eid = client.create_experiment("e")
    me = Owner.me().to_json()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    crashed = {**me, "pid": int(dead.stdout), "start": None}
    client.set_experiment_tag(eid, "arcuate.lock.crashed", lease_tag(crashed, expires_in=100))
    elsewhere = {**me, "host": "another-host"}
    client.set_experiment_tag(eid, "arcuate.lock.expired", lease_tag(elsewhere, expires_in=-1))
    client.set_experiment_tag(eid, "arcuate.lock.garbage", "not json")
    started = time.monotonic()
    result = import_experiment(batches_of([run_row()]), "e", recipient_context(recipient_store))
    assert result.summary["added"] == 1 and "waited" not in result.summary
    assert time.monotonic() - started < 60  # no waiting for a lease (the bound is 600 s)
    assert not [k for k in client.get_experiment(eid).tags if k.startswith("arcuate.lock.")]


def test_a_live_holder_makes_the_import_wait_then_fail_clearly(
    recipient_store: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another import holds the model (a live process: this one, by another lease): the
    import says it waits, waits ARCUATE_LOCK_WAIT seconds, then fails and writes nothing."""
    monkeypatch.setenv("ARCUATE_LOCK_WAIT", "1")
    client = recipient_store.client()
    client.create_registered_model("m")
    holder = lease_tag(Owner.me().to_json(), expires_in=100)
    client.set_registered_model_tag("m", "arcuate.lock.holder", holder)
    before = store_state(recipient_store)
    ctx = recipient_context(recipient_store)
    with pytest.raises(ConflictError) as info:
        import_model(batches_of([version_row(1)]), "m", ctx)
    text = str(info.value)
    assert "another import into registered model 'm' is running" in text
    assert f"process {os.getpid()} on {socket.gethostname()}" in text
    assert "ARCUATE_LOCK_WAIT" in text
    assert "waiting for another import into registered model 'm'" in capsys.readouterr().err
    assert store_state(recipient_store) == before
    assert client.get_registered_model("m").tags == {"arcuate.lock.holder": holder}


def test_the_lease_excludes_under_contention(recipient_store: Any) -> None:
    """Six contenders for one experiment's lease: never two holders at once, all served."""
    client = recipient_store.client()
    eid = client.create_experiment("e")
    inside: list[int] = []
    most = [0]
    served: list[int] = []
    guard = threading.Lock()

    def contend(i: int) -> None:
        lease = Lease(ExperimentTags(client, eid, "e"))
        lease.acquire()
        try:
            with guard:
                inside.append(i)
                most[0] = max(most[0], len(inside))
            time.sleep(0.05)
            with guard:
                inside.remove(i)
                served.append(i)
        finally:
            lease.release()

    results = both_at_once([lambda i=i: contend(i) for i in range(6)])
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert most[0] == 1 and sorted(served) == list(range(6))
    assert not [k for k in client.get_experiment(eid).tags if k.startswith("arcuate.lock.")]


def test_a_lease_that_is_not_renewed_or_taken_away_is_lost(recipient_store: Any) -> None:
    """A holder whose tag another contender removed (it took it for expired), or that could
    not renew in time, refuses to go on."""
    client = recipient_store.client()
    eid = client.create_experiment("e")
    taken = Lease(ExperimentTags(client, eid, "e"), renew=0.1)
    taken.acquire()
    client.delete_experiment_tag(eid, taken.key)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            taken.check()
        except ConflictError as exc:
            assert "its tag was removed" in str(exc)
            break
        time.sleep(0.1)
    else:
        pytest.fail("the removed tag was not noticed")
    taken.release()
    stalled = Lease(ExperimentTags(client, eid, "e"), ttl=0.5, renew=60)
    stalled.acquire()
    time.sleep(0.6)
    with pytest.raises(ConflictError, match="lost its lease on experiment 'e'"):
        stalled.check()
    stalled.release()
    assert not [k for k in client.get_experiment(eid).tags if k.startswith("arcuate.lock.")]
