"""The real delta_sharing 1.4 client reads our server, and sees what deltalake sees."""

from __future__ import annotations

import datetime
from typing import Any

import delta_sharing
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.server.conftest import Sharing


def rows(frame: pd.DataFrame | pa.Table, schema: pa.Schema | None = None) -> list[Any]:
    """Rows in a canonical order, as plain Python values (bytes, datetimes, dicts)."""
    table = (
        frame
        if isinstance(frame, pa.Table)
        else pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    )
    return sorted(table.to_pylist(), key=repr)


def direct(sharing: Sharing, table: str, version: int | None = None) -> pa.Table:
    return DeltaTable(sharing.location(table), version=version).to_pyarrow_table()


def test_listings(sharing: Sharing) -> None:
    client = delta_sharing.SharingClient(str(sharing.profiles["alice"]))
    assert [s.name for s in client.list_shares()] == ["models"]
    (share,) = client.list_shares()
    assert [s.name for s in client.list_schemas(share)] == ["mlflow"]
    schema = client.list_schemas(share)[0]
    names = ["experiment", "simple", "parts", "nocdf"]
    assert [t.name for t in client.list_tables(schema)] == names
    assert [(t.share, t.schema, t.name) for t in client.list_all_tables()] == [
        ("models", "mlflow", n) for n in names
    ]


def test_pagination_follows_tokens(sharing: Sharing) -> None:
    from delta_sharing.protocol import DeltaSharingProfile, Schema, Share
    from delta_sharing.rest_client import DataSharingRestClient

    rest = DataSharingRestClient(DeltaSharingProfile.read_from_file(str(sharing.profiles["alice"])))
    seen, token = [], None
    while True:
        page = rest.list_tables(Schema("mlflow", "models"), max_results=1, page_token=token)
        seen += [t.name for t in page.tables]
        assert len(page.tables) <= 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ["experiment", "simple", "parts", "nocdf"]
    page = rest.list_all_tables(Share("models"), max_results=3)
    assert len(page.tables) == 3 and page.next_page_token
    rest2 = rest.list_all_tables(Share("models"), max_results=3, page_token=page.next_page_token)
    assert [t.name for t in rest2.tables] == ["nocdf"] and not rest2.next_page_token


def test_experiment_table_with_binary_files_equals_deltalake(sharing: Sharing) -> None:
    from arcuate.format.schema import SCHEMA

    expected = rows(direct(sharing, "experiment"))
    got = delta_sharing.load_as_pandas(sharing.url("experiment"))
    assert rows(got, SCHEMA) == expected
    kernel = delta_sharing.load_as_pandas(sharing.url("experiment"), use_delta_format=True)
    assert rows(kernel, SCHEMA) == expected
    blobs = [f["data"] for r in expected if r["files"] for f in r["files"] if f["data"]]
    assert any(b"\x00" in b for b in blobs)  # binary content really went through


def test_limit_and_time_travel(sharing: Sharing) -> None:
    url = sharing.url("simple")
    schema = direct(sharing, "simple").schema
    assert len(delta_sharing.load_as_pandas(url, limit=2)) == 2
    assert len(delta_sharing.load_as_pandas(url, limit=0)) == 0
    for version in (0, 1, 2):
        got = delta_sharing.load_as_pandas(url, version=version)
        assert rows(got, schema) == rows(direct(sharing, "simple", version)), version
        kernel = delta_sharing.load_as_pandas(url, version=version, use_delta_format=True)
        assert rows(kernel, schema) == rows(direct(sharing, "simple", version)), version
    old = delta_sharing.load_as_pandas(sharing.url("experiment"), version=0)
    assert {t.to_pydatetime() for t in old["exported_at"] if t is not pd.NaT} >= {
        datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    }


def test_time_travel_by_timestamp(sharing: Sharing) -> None:
    history = {
        h["version"]: h["timestamp"] for h in DeltaTable(sharing.location("simple")).history()
    }
    at = datetime.datetime.fromtimestamp(history[1] / 1000, datetime.UTC).isoformat()
    got = delta_sharing.load_as_pandas(sharing.url("simple"), timestamp=at)
    schema = direct(sharing, "simple").schema
    assert rows(got, schema) == rows(direct(sharing, "simple", 1))


def test_table_version(sharing: Sharing) -> None:
    dt = DeltaTable(sharing.location("simple"))
    assert delta_sharing.get_table_version(sharing.url("simple")) == dt.version() == 2
    history = {h["version"]: h["timestamp"] for h in dt.history()}
    early = "2000-01-01T00:00:00Z"
    assert delta_sharing.get_table_version(sharing.url("simple"), starting_timestamp=early) == 0
    at = datetime.datetime.fromtimestamp(history[1] / 1000, datetime.UTC).isoformat()
    assert delta_sharing.get_table_version(sharing.url("simple"), starting_timestamp=at) == 1


def test_metadata_and_protocol(sharing: Sharing) -> None:
    url = sharing.url("experiment")
    meta = delta_sharing.get_table_metadata(url)
    dt = DeltaTable(sharing.location("experiment"))
    assert meta.id == dt.metadata().id
    assert meta.description and '"arcuate"' in meta.description
    assert meta.partition_columns == []
    assert meta.configuration == {"enableChangeDataFeed": "true"}
    assert delta_sharing.get_table_protocol(url).min_reader_version == 1


@pytest.mark.parametrize("delta_format", [False, True])
def test_changes_of_a_cdf_table(sharing: Sharing, delta_format: bool) -> None:
    got = delta_sharing.load_table_changes_as_pandas(
        sharing.url("simple"), starting_version=0, use_delta_format=delta_format
    )
    cdf = pa.table(DeltaTable(sharing.location("simple")).load_cdf(starting_version=0).read_all())
    keep = ["id", "name", "payload", "at", "_change_type", "_commit_version"]
    expected = sorted((tuple(r[k] for k in keep) for r in cdf.select(keep).to_pylist()), key=repr)
    got_rows = sorted(
        (
            tuple(r[k] for k in keep)
            for r in pa.Table.from_pandas(got[keep], preserve_index=False)
            .cast(cdf.select(keep).schema)
            .to_pylist()
        ),
        key=repr,
    )
    assert got_rows == expected
    assert {r[-2] for r in got_rows} == {"insert", "delete"}
    bounded = delta_sharing.load_table_changes_as_pandas(
        sharing.url("simple"), starting_version=1, ending_version=1, use_delta_format=delta_format
    )
    assert list(bounded["id"]) == [4]


def test_changes_of_the_experiment_table(sharing: Sharing) -> None:
    got = delta_sharing.load_table_changes_as_pandas(sharing.url("experiment"), starting_version=1)
    counts = got.groupby("_change_type").size().to_dict()
    n = len(direct(sharing, "experiment"))
    assert counts == {"insert": n, "delete": n}  # generation 1 replaced generation 0


def test_partitioned_table_with_awkward_values(sharing: Sharing) -> None:
    def plain(frame: pd.DataFrame) -> list[tuple[Any, int]]:
        pairs = ((None if pd.isna(k) else k, int(v)) for k, v in frame.itertuples(index=False))
        return sorted(pairs, key=repr)

    expected = sorted(((r["k"], r["v"]) for r in direct(sharing, "parts").to_pylist()), key=repr)
    assert plain(delta_sharing.load_as_pandas(sharing.url("parts"))) == expected
    kernel = delta_sharing.load_as_pandas(sharing.url("parts"), use_delta_format=True)
    assert plain(kernel) == expected


def test_catalog_changes_apply_without_restart(sharing: Sharing, tmp_path: Any) -> None:
    from deltalake import write_deltalake

    profile, _ = sharing.new_recipient("carol", "models")
    client = delta_sharing.SharingClient(str(profile))
    before = [t.name for t in client.list_all_tables()]
    location = str(sharing.warehouse / "late" / "fresh")
    write_deltalake(location, pa.table({"x": [1, 2, 3]}))
    sharing.catalog.add_table("models", "late", "fresh", location)
    try:
        after = [t.name for t in client.list_all_tables()]
        assert after == [*before, "fresh"]
        got = delta_sharing.load_as_pandas(f"{profile}#models.late.fresh")
        assert sorted(got["x"]) == [1, 2, 3]
    finally:
        sharing.catalog.remove_table("models", "late", "fresh")
    assert [t.name for t in client.list_all_tables()] == before
