"""SparkTableStore on a real engine (Sail): the same tables as the deltalake backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from arcuate.backends.deltalake.store import DeltaLakeTableStore
from arcuate.backends.spark.store import SparkTableStore
from arcuate.errors import ConflictError, NotFoundError
from arcuate.format.schema import FORMAT_VERSION, SCHEMA, parse_description
from tests.spark.spark_helpers import canonical, synthetic_batches


def test_spark_table_equals_deltalake_table(spark: Any, tmp_path: Path) -> None:
    dl = DeltaLakeTableStore(str(tmp_path / "dl"))
    sp = SparkTableStore(spark, str(tmp_path / "sp"))
    a = dl.write(("ml", "exp"), synthetic_batches(12, big=10_000, max_rows=5), content="experiment")
    b = sp.write(("ml", "exp"), synthetic_batches(12, big=10_000, max_rows=5), content="experiment")
    assert b.location == str(tmp_path / "sp" / "ml" / "exp")
    assert b.rows == a.rows
    # deltalake reads the Spark-written table: same schema, rows, description marker
    theirs = DeltaTable(b.location)
    assert parse_description(theirs.metadata().description) == (FORMAT_VERSION, "experiment")
    read_by_deltalake = theirs.to_pyarrow_table().cast(SCHEMA)
    assert canonical(read_by_deltalake) == canonical(dl.read(("ml", "exp")))
    assert canonical(sp.read(("ml", "exp"))) == canonical(dl.read(("ml", "exp")))
    assert sp.read(("ml", "exp")).schema.equals(SCHEMA)


def test_large_export_is_staged_then_committed_once(spark: Any, tmp_path: Path) -> None:
    sp = SparkTableStore(spark, str(tmp_path / "wh"), slice_bytes=20_000)
    first = sp.write(("exp",), synthetic_batches(3), content="experiment")
    second = sp.write(("exp",), synthetic_batches(30, big=9_000, max_rows=4), content="experiment")
    assert second.version == first.version + 1  # the whole export is one commit
    dt = DeltaTable(second.location)
    assert dt.history(1)[0]["operation"] in ("WRITE", "CREATE OR REPLACE TABLE AS SELECT")
    assert not (tmp_path / "wh" / "_arcuate_staging").exists()
    dl = DeltaLakeTableStore(str(tmp_path / "dl"))
    dl.write(("exp",), synthetic_batches(30, big=9_000, max_rows=4), content="experiment")
    assert canonical(sp.read(("exp",))) == canonical(dl.read(("exp",)))
    assert len(sp.read(("exp",), version=first.version)) == 3


def test_failure_midway_keeps_the_previous_version(spark: Any, tmp_path: Path) -> None:
    sp = SparkTableStore(spark, str(tmp_path / "wh"), slice_bytes=20_000)
    before = sp.write(("exp",), synthetic_batches(4), content="experiment")

    class Boom(RuntimeError):
        pass

    def failing() -> Any:
        yield from synthetic_batches(20, big=9_000, max_rows=3)
        raise Boom("source went away")

    with pytest.raises(Boom, match="source went away"):
        sp.write(("exp",), failing(), content="experiment")
    assert DeltaTable(before.location).version() == before.version
    assert len(sp.read(("exp",))) == before.rows
    assert not (tmp_path / "wh" / "_arcuate_staging").exists()


def test_mode_error_and_missing_tables(spark: Any, tmp_path: Path) -> None:
    sp = SparkTableStore(spark, str(tmp_path / "wh"))
    with pytest.raises(NotFoundError, match="no Delta table"):
        sp.read(("nope",))
    sp.write(("exp",), synthetic_batches(2), content="experiment")
    with pytest.raises(ConflictError, match="already exists"):
        sp.write(("exp",), synthetic_batches(2), content="experiment", mode="error")
    empty = sp.write(("empty",), iter(()), content="model")
    assert empty.rows == 0 and len(sp.read(("empty",))) == 0
    assert parse_description(DeltaTable(empty.location).metadata().description) == (FORMAT_VERSION, "model")


def test_catalog_tables_with_hostile_names(spark: Any, tmp_path: Path) -> None:
    schema = "arc `db`. x"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{schema.replace('`', '``')}`").collect()
    sp = SparkTableStore(spark, "catalog:")
    name = (schema, "t.`1` 'x'")
    assert sp.location(name) == "`arc ``db``. x`.`t.``1`` 'x'`"
    written = sp.write(name, synthetic_batches(5), content="experiment")
    assert written.rows == len(sp.read(name))
    assert canonical(sp.read(name)) == canonical(
        pa.Table.from_batches(list(synthetic_batches(5)), schema=SCHEMA)
    )
    again = sp.write(name, synthetic_batches(2), content="experiment")
    assert len(sp.read(name)) == again.rows


def test_parallelism_is_the_sessions_shuffle_partitions(spark: Any) -> None:
    from arcuate.backends.spark.compute import parallelism

    assert parallelism(spark) == int(spark.conf.get("spark.sql.shuffle.partitions", "8"))


def test_parallelism_falls_back_to_8_on_a_value_that_is_not_a_number() -> None:
    from types import SimpleNamespace

    from arcuate.backends.spark.compute import parallelism

    odd = SimpleNamespace(conf=SimpleNamespace(get=lambda key, default: "auto"))
    assert parallelism(odd) == 8


def test_a_programming_error_while_looking_for_a_table_is_not_swallowed() -> None:
    from types import SimpleNamespace

    from arcuate.backends.spark.store import SparkTableStore

    def broken(name: str) -> bool:
        raise KeyError("bug")

    spark = SimpleNamespace(catalog=SimpleNamespace(tableExists=broken))
    store = SparkTableStore(spark)  # a catalog table: tableExists is asked first
    with pytest.raises(KeyError, match="bug"):
        store._exists(store._target(("ml", "runs")))
