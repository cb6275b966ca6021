"""REFUSE PICKLE with AS SPARK: a model table holding a pickle is refused before any write; an
experiment import refuses the policy up front (its Spark tasks write runs independently)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.backends.sharing.server import serve_in_thread, write_profile
from arcuate.errors import ConfigurationError, ShareDataError
from tests.imports.import_helpers import batches_of, file_entry, run_row, store_state, version_row

PICKLED = pickle.dumps({"weights": [1.0]}, protocol=4)  # data only: never loaded


@pytest.fixture
def profile(tmp_path: Path) -> Iterator[Path]:
    """A profile reading a model table (version 2 holds a pickle) and an experiment table."""
    store = DeltaLakeTableStore(str(tmp_path / "warehouse"))
    mlmodel = file_entry("MLmodel", b"flavors: {}\n", owner="model")
    model = [
        version_row(1, files=[mlmodel]),
        version_row(2, files=[mlmodel, file_entry("m.pkl", PICKLED, owner="model")]),
    ]
    runs = [run_row(files=[file_entry("model/model.pkl", PICKLED)])]
    catalog = LocalShareCatalog(tmp_path / "shares.yaml")
    for name, rows, content in (("model", model, "model"), ("runs", runs, "experiment")):
        location = store.write(("p", name), batches_of(rows), content=content).location
        catalog.add_table("ml", "default", name, location)
    _record, token = catalog.create_recipient("ann")
    catalog.grant("ml", "ann")
    assert token is not None
    handle = serve_in_thread(str(tmp_path / "shares.yaml"))
    try:
        yield write_profile(tmp_path / "ann.share", handle.endpoint, token)
    finally:
        handle.stop()


def _run(statement: str, store: Any, spark: Any) -> Any:
    return arcuate.execute(
        statement,
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        progress=False,
        spark=spark,
    )


def test_as_spark_model_import_refuses_a_pickle_before_any_write(
    spark: Any, recipient_store: Any, profile: Path
) -> None:
    before = store_state(recipient_store)
    with pytest.raises(ShareDataError) as err:
        _run(f"CREATE MODEL m AS SPARK '{profile}#ml.default.model' REFUSE PICKLE",
             recipient_store, spark)  # fmt: skip
    assert err.value.code == "ARC610"
    assert "version 2 holds model/m.pkl, a pickle file" in str(err.value)
    assert store_state(recipient_store) == before


def test_as_spark_experiment_import_with_the_policy_is_refused_up_front(
    spark: Any, recipient_store: Any, profile: Path
) -> None:
    before = store_state(recipient_store)
    with pytest.raises(ConfigurationError, match=r"not supported for AS SPARK.*import AS PANDAS"):
        _run(f"CREATE EXPERIMENT e AS SPARK '{profile}#ml.default.runs' REFUSE PICKLE",
             recipient_store, spark)  # fmt: skip
    assert store_state(recipient_store) == before
