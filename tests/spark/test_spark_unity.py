"""Unity Catalog shares: the SQL text (hostile names), error handling, the real engine's refusal.

Unity Catalog cannot run here, so the Databricks side is a small fake session that records each
``spark.sql`` call and raises pyspark's own Spark Connect exception, with Databricks' error
class, when a table is already shared. Everything else (quoting, parsing) is the real code.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pyspark.errors.exceptions.connect import AnalysisException

from arcuate.backends.spark.store import split_name
from arcuate.backends.spark.unity import UnityShareCatalog, is_already_shared, unity_sql
from arcuate.errors import BackendError, ConflictError

HOSTILE = [
    "plain",
    "with space",
    "dot.ted",
    "back`tick",
    "``",
    "x`; DROP TABLE t; --",
    "quote'single",
    'quote"double',
    "semi;colon",
    "ünï ✓",
    "`",
    "a``.b",
]

_IDENT = r"`(?:[^`]|``)+`"


def _parts(sql_name: str) -> tuple[str, ...]:
    return split_name(sql_name)


@pytest.mark.parametrize("name", HOSTILE)
def test_sql_quotes_every_identifier(name: str) -> None:
    create, alter = unity_sql(name, (name, name, name), shared_as=(name, name))
    q = "`" + name.replace("`", "``") + "`"
    assert create == f"CREATE SHARE IF NOT EXISTS {q}"
    assert alter == f"ALTER SHARE {q} ADD TABLE {q}.{q}.{q} AS {q}.{q}"
    # the statement is exactly keywords and quoted identifiers: nothing leaks out of a quote
    shape = re.fullmatch(
        rf"ALTER SHARE ({_IDENT}) ADD TABLE ({_IDENT}(?:\.{_IDENT}){{2}}) AS ({_IDENT}\.{_IDENT})",
        alter,
    )
    assert shape is not None
    assert _parts(shape.group(1)) == (name,)
    assert _parts(shape.group(2)) == (name, name, name)
    assert _parts(shape.group(3)) == (name, name)


def test_sql_for_short_names_and_bad_ones() -> None:
    assert unity_sql("s", ["t"]) == [
        "CREATE SHARE IF NOT EXISTS `s`",
        "ALTER SHARE `s` ADD TABLE `t`",
    ]
    with pytest.raises(ValueError, match="1-3 parts"):
        unity_sql("s", ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="non-empty"):
        unity_sql("", ("t",))


class FakeSession:
    """Records ``spark.sql`` calls; behaves like Unity Catalog for the share statements."""

    def __init__(self, shared: dict[str, str] | None = None, fail: Exception | None = None):
        self.calls: list[str] = []
        self.shared = dict(shared or {})  # shared_as -> shared_object
        self.fail = fail

    def sql(self, text: str) -> Any:
        self.calls.append(text)
        if self.fail is not None and text.startswith("ALTER"):
            raise self.fail
        m = re.fullmatch(rf"ALTER SHARE {_IDENT} ADD TABLE ({_IDENT}(?:\.{_IDENT})*) AS (.*)", text)
        if m:
            obj, alias = ".".join(_parts(m.group(1))), ".".join(_parts(m.group(2)))
            if alias in self.shared:
                raise AnalysisException(
                    message=f"[RESOURCE_ALREADY_EXISTS] Shared table '{alias}' already exists.",
                    errorClass="RESOURCE_ALREADY_EXISTS",
                    messageParameters={},
                    sql_state="42710",
                )
            self.shared[alias] = obj
        return self

    def collect(self) -> list[Any]:
        if self.calls and self.calls[-1].startswith("SHOW ALL IN SHARE"):
            return [
                {"name": k, "type": "TABLE", "shared_object": v} for k, v in self.shared.items()
            ]
        return []


def test_add_table_then_again_is_a_no_op() -> None:
    fake = FakeSession()
    cat = UnityShareCatalog(fake)
    assert cat.add_table("ml share", "exp`s", "runs", "main.`ml team`.runs") == "added"
    assert fake.calls == [
        "CREATE SHARE IF NOT EXISTS `ml share`",
        "ALTER SHARE `ml share` ADD TABLE `main`.`ml team`.`runs` AS `exp``s`.`runs`",
    ]
    assert cat.add_table("ml share", "exp`s", "runs", "main.`ml team`.runs") == "exists"
    assert (
        cat.add_table("ml share", "exp`s", "runs", "main.`ml team`.runs", if_not_exists=False)
        == "exists"
    )


def test_a_name_taken_by_another_table_is_a_conflict() -> None:
    cat = UnityShareCatalog(FakeSession({"exp.runs": "main.other.table"}))
    with pytest.raises(ConflictError, match=r"for table main\.other\.table"):
        cat.add_table("s", "exp", "runs", "main.ml.runs")


@pytest.mark.parametrize(
    "error",
    [
        AnalysisException(
            message="[PERMISSION_DENIED] User does not have SELECT on Table 'main.ml.runs'.",
            errorClass="PERMISSION_DENIED",
            messageParameters={},
        ),
        AnalysisException(
            message="[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`ml`.`runs` cannot be found.",
            errorClass="TABLE_OR_VIEW_NOT_FOUND",
            messageParameters={},
        ),
        # an unrelated "already exists" with its own class is not mistaken for "shared"
        AnalysisException(
            message="[SCHEMA_ALREADY_EXISTS] Cannot create schema `x` because it already exists.",
            errorClass="SCHEMA_ALREADY_EXISTS",
            messageParameters={},
        ),
    ],
)
def test_other_errors_are_reported(error: Exception) -> None:
    fake = FakeSession(fail=error)
    with pytest.raises(BackendError, match=re.escape(str(error).splitlines()[0][:40])) as info:
        UnityShareCatalog(fake).add_table("s", "exp", "runs", "main.ml.runs")
    assert info.value.__cause__ is error
    assert info.value.hint == "ALTER SHARE `s` ADD TABLE `main`.`ml`.`runs` AS `exp`.`runs`"


def test_recognition_of_already_shared() -> None:
    assert is_already_shared(
        AnalysisException(message="x", errorClass="RESOURCE_ALREADY_EXISTS", messageParameters={})
    )
    assert not is_already_shared(
        AnalysisException(
            message="already exists in share", errorClass="OTHER", messageParameters={}
        )
    )
    assert is_already_shared(RuntimeError("[RESOURCE_ALREADY_EXISTS] Shared table exists"))
    assert not is_already_shared(RuntimeError("Table main.ml.runs already exists"))


def test_a_real_engine_without_shares_reports_its_error(spark: Any) -> None:
    with pytest.raises(BackendError, match="could not create share 'ml'") as info:
        UnityShareCatalog(spark).add_table("ml", "default", "runs", "main.ml.runs")
    assert info.value.hint == "CREATE SHARE IF NOT EXISTS `ml`"


class _NoListing(FakeSession):
    """Unity Catalog where listing a share fails (with ``error``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__({"exp.runs": "main.ml.runs"})
        self.error = error

    def sql(self, text: str) -> Any:
        if text.startswith("SHOW ALL IN SHARE"):
            raise self.error
        return super().sql(text)


def test_a_share_that_cannot_be_listed_still_takes_the_error_class() -> None:
    denied = AnalysisException(
        message="[PERMISSION_DENIED] no USE SHARE",
        errorClass="PERMISSION_DENIED",
        messageParameters={},
    )
    cat = UnityShareCatalog(_NoListing(denied))
    assert cat.add_table("s", "exp", "runs", "main.ml.runs") == "exists"


def test_a_programming_error_while_listing_is_not_swallowed() -> None:
    cat = UnityShareCatalog(_NoListing(KeyError("bug")))
    with pytest.raises(KeyError, match="bug"):
        cat.add_table("s", "exp", "runs", "main.ml.runs")
