"""Batches of one experiment written at once (Spark tasks, concurrent imports) share the
experiment's ``.arcuate-pending`` folder: one batch removing the folder as it empties must
never make another batch's marking fail (a Spark import failed with ``[Errno 17] File
exists: .../.arcuate-pending`` when a task's commit emptied the folder under another's)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from arcuate.backends.mlflow.bulk import PENDING, BulkRunWriter, _unmark


def test_concurrent_batches_mark_and_unmark_without_failing(
    mlflow_store: Any, workdir: Path
) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(mlflow_store.tracking_uri, str(workdir / "mlruns"))
    location = workdir / "artifacts"
    location.mkdir()
    writers = [
        BulkRunWriter(store, mlflow_store.tracking_uri, mlflow_store.registry_uri)
        for _ in range(4)
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(len(writers))

    def batches(writer: BulkRunWriter) -> None:
        start.wait()
        try:
            for _ in range(300):
                ids = [uuid.uuid4().hex for _ in range(2)]
                marks = writer._mark(str(location), ids)
                assert [Path(m).name for m in marks] == ids
                _unmark(marks)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=batches, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not (location / PENDING).exists()  # the last batch out removes the folder
    store.engine.dispose()
