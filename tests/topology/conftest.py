"""Fixtures of the production-topology tests: the tricky content on PostgreSQL and S3, shared.

Two providers hold the export tests' tricky experiment and registered model
(``tests/export/export_helpers.py``), each built once per session: one in a PostgreSQL database
read directly (``postgresql://``) with its artifacts in S3 (``s3://``), one built through the
PostgreSQL-backed ``mlflow server`` (REST, artifacts proxied to S3). Shares are made with the
provider's own statements through ``arcuate.execute()`` and served by arcuate's server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from arcuate.demo import spark_guard
from tests.export.export_helpers import Tricky
from tests.topology.topology_helpers import Shared, build_provider, share_with_statements

_hosts = "127.0.0.1,localhost"
os.environ["NO_PROXY"] = ",".join(x for x in (os.environ.get("NO_PROXY"), _hosts) if x)
os.environ["no_proxy"] = os.environ["NO_PROXY"]


@pytest.fixture(scope="session")
def pg_provider(postgres: Any, s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Tricky:
    """The tricky content in a PostgreSQL database, artifacts in ``s3://arcuate/pg-provider``."""
    root = tmp_path_factory.mktemp("pg-provider")
    store = postgres.new_store(root)
    return build_provider(store, root, f"s3://{s3.bucket}/pg-provider/tricky")


@pytest.fixture(scope="session")
def server_provider(mlflow_server_pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Tricky:
    """The tricky content built through the PostgreSQL-backed server (artifacts proxied to
    S3); tests that import into that server use other names."""
    root = tmp_path_factory.mktemp("server-provider")
    return build_provider(mlflow_server_pg, root, None, mlflow_server_pg.artifacts)


@pytest.fixture(scope="session")
def pg_share(pg_provider: Tricky, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """The PostgreSQL provider's content exported, shared with ``ann`` and served."""
    from arcuate.backends.sharing.server import serve_in_thread

    root = tmp_path_factory.mktemp("pg-share")
    handle = serve_in_thread(str(root / "shares.yaml"))
    try:
        # the guard only while sharing: held for the session, it would hide Spark Connect
        # from every later test of this process that makes its first Spark session
        with spark_guard():
            shared = share_with_statements(pg_provider.store, root, handle.endpoint)
        yield shared
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def _no_spark_connect() -> Iterator[None]:
    """MLflow probes for a Spark session on REST calls and fluent runs (see spark_guard)."""
    with spark_guard():
        yield
