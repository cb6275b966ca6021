"""AS SPARK from the magics: the notebook's ``spark`` variable is the session (issue 11 item 9)."""

from __future__ import annotations

from typing import Any

from tests.spark.spark_helpers import SparkShare


def test_magics_use_the_notebooks_spark_session(
    spark: Any, spark_share: SparkShare, recipient_store: Any
) -> None:
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()  # a shell can be started once per process
    assert shell is not None
    shell.run_line_magic("load_ext", "arcuate")
    shell.user_ns["spark"] = spark  # as a Databricks notebook defines it
    uri = recipient_store.tracking_uri
    coord = spark_share.coordinate("by_deltalake")
    try:
        res = shell.run_cell(
            f"%%arcuate --tracking-uri {uri} --no-progress\n"
            f"CREATE EXPERIMENT landed AS SPARK '{coord}'",
            store_history=False,
        )
        assert res.success, res.error_in_exec
        (imported,) = res.result
        assert imported.summary["added"] == 7 and imported.summary["partitions"] >= 1
        shell.user_ns["session"] = shell.user_ns.pop("spark")
        res = shell.run_cell(
            f"%%arcuate_import_experiment --tracking-uri {uri} --spark session --no-progress\n"
            f"CREATE EXPERIMENT again AS SPARK '{coord}'",
            store_history=False,
        )
        assert res.success, res.error_in_exec
        assert res.result[0].summary["added"] == 7
    finally:
        shell.user_ns.pop("spark", None)
        shell.user_ns.pop("session", None)
