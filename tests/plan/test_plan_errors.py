"""What the configured backends cannot do is refused at plan time, at the statement's span,
before any statement of a script runs (golden fixtures in ``tests/fixtures/plan_errors.arcsql``).
The planner learns it from the backends' plug-in records, as plain data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import arcuate
from arcuate.engine.context import capabilities
from arcuate.errors import PlanError
from arcuate.plan.planner import plan
from arcuate.syntax.parser import parse

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _cases() -> list[tuple[str, int, int, dict[str, str], str, str]]:
    text = (FIXTURES / "plan_errors.arcsql").read_text(encoding="utf-8")
    found = re.findall(r"^-- (ARC\d+) (\d+):(\d+) \{(.*?)\} (.*)\n(.*)$", text, flags=re.M)
    return [
        (code, int(line), int(col), dict(kv.split("=") for kv in opts.split()), msg, src)
        for code, line, col, opts, msg, src in found
    ]


def test_there_are_fixtures_for_every_code() -> None:
    assert {c[0] for c in _cases()} == {"ARC203", "ARC204", "ARC205", "ARC206", "ARC207"} | {
        "ARC208",  # issue 16: REDACT … HASH without a provider key
        "ARC209",  # issue 16: REDACT on a prompt
        "ARC211",  # issue 16: REDACT with INCLUDING
    }


@pytest.mark.parametrize(("code", "line", "col", "settings", "message", "source"), _cases())
def test_backend_limits_are_plan_errors(
    code: str, line: int, col: int, settings: dict[str, str], message: str, source: str
) -> None:
    caps = capabilities(arcuate.resolve_settings(**settings))
    with pytest.raises(PlanError) as info:
        plan(parse(source), caps, text=source)
    err = info.value
    assert (err.code, err.line, err.col, err.message) == (code, line, col, message)
    rendered = str(err).splitlines()
    assert rendered[0] == f"<string>:{line}:{col}: {message} [{code}]"
    assert rendered[1] == f"  {source}"
    if code == "ARC204":
        assert rendered[-1] == (
            "  hint: manage recipients and grants in Databricks, or use share_catalog='local' "
            "with arcuate serve"
        )


def test_a_unity_catalog_statement_on_line_3_runs_nothing(tmp_path: Path) -> None:
    script = (
        "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT e;\n"
        "GRANT SELECT ON SHARE ml TO RECIPIENT acme;\n"
        "CREATE RECIPIENT acme"
    )
    with pytest.raises(PlanError) as info:
        # the session is never used: planning fails before the first statement runs
        arcuate.execute(
            script,
            share_catalog="unity",
            spark=object(),
            warehouse=str(tmp_path / "wh"),
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
    assert (info.value.code, info.value.line) == ("ARC204", 2)  # the first one it cannot run
    assert info.value.results is None or list(info.value.results) == []
    assert list(tmp_path.iterdir()) == []


def test_a_table_name_on_line_3_the_store_cannot_hold_runs_nothing(tmp_path: Path) -> None:
    script = (
        "CREATE RECIPIENT acme;\n"
        "SHOW SHARES;\n"
        "CREATE SHARE ml WITH TABLE tablé FROM EXPERIMENT e"
    )
    with pytest.raises(PlanError) as info:
        arcuate.execute(
            script, warehouse=str(tmp_path / "wh"), tracking_uri=f"sqlite:///{tmp_path / 'db'}"
        )
    assert (info.value.code, info.value.line, info.value.col) == ("ARC203", 3, 28)
    assert list(tmp_path.iterdir()) == []


def test_spark_catalog_tables_take_any_name_but_path_tables_do_not() -> None:
    stmt = parse("CREATE SHARE ml WITH TABLE `my catalog`.ml.tablé FROM EXPERIMENT e")
    catalog = capabilities(arcuate.resolve_settings(spark=object(), warehouse="catalog:"))
    assert plan(stmt, catalog).steps[1].describe().startswith("write Delta table my catalog.ml")
    paths = capabilities(arcuate.resolve_settings(spark=object(), warehouse="/data/wh"))
    with pytest.raises(PlanError, match="cannot name a table of the spark table store"):
        plan(stmt, paths)
