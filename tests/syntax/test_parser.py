"""Parser behaviour a user sees: the seed's statements, names, scripts, error rendering."""

from __future__ import annotations

import pytest

from arcuate.errors import ArcuateSyntaxError
from arcuate.syntax import ast
from arcuate.syntax.parser import parse, parse_script

# Every statement of the user's seed document, written exactly as there, instantiated.
SEED = [
    "CREATE SHARE share_name WITH TABLE table_name FROM EXPERIMENT experiment_name",
    "CREATE SHARE share_name WITH TABLE table_name FROM MODEL model_name",
    "CREATE EXPERIMENT experiment_name AS PANDAS 'profile.share#share.schema.table'",
    "CREATE EXPERIMENT OVERWRITE experiment_name AS SPARK 'profile.share#share.schema.table'",
    "CREATE MODEL model_name AS PANDAS 'profile.share#share.schema.table'",
    "CREATE MODEL OVERWRITE model_name AS SPARK 'profile.share#share.schema.table'",
    # the brief's spelling, where the names are the placeholders themselves
    "CREATE SHARE share WITH TABLE table FROM EXPERIMENT experiment",
    "CREATE SHARE share WITH TABLE table FROM MODEL model",
    "CREATE EXPERIMENT OVERWRITE experiment AS PANDAS 'profile.share#share.schema.table'",
    "CREATE MODEL model AS 'profile.share#share.schema.table'",
    # lower case, and the original prototype's CREATE OR REPLACE form
    "create share share_name with table table_name from experiment experiment_name",
    "create or replace experiment e as pandas 'p.share#s.d.t'",
    "CREATE OR REPLACE MODEL model_name AS PANDAS 'profile.share#share.schema.table'",
    "CREATE EXPERIMENT e AS PANDAS /dbfs/FileStore/config.share#share.schema.table",
]


@pytest.mark.parametrize("text", SEED)
def test_every_seed_statement_parses(text: str) -> None:
    assert parse(text) is not None


def test_or_replace_means_overwrite() -> None:
    a = parse("CREATE OR REPLACE MODEL m AS 'p#s.d.t'")
    b = parse("CREATE MODEL OVERWRITE m AS PANDAS 'p#s.d.t'")
    assert a == b
    assert isinstance(a, ast.CreateModel) and a.overwrite and a.flavor == "pandas"


def test_pandas_is_the_default_flavor() -> None:
    node = parse("CREATE EXPERIMENT e AS 'p#s.d.t'")
    assert isinstance(node, ast.CreateExperiment) and node.flavor == "pandas"


def test_coordinate_splits_on_the_last_hash() -> None:
    node = parse("CREATE MODEL m AS '/tmp/we#ird/p.share#ml.default.churn'")
    assert isinstance(node, ast.CreateModel)
    c = node.coordinate
    assert (c.profile, c.share, c.schema, c.table) == (
        "/tmp/we#ird/p.share",
        "ml",
        "default",
        "churn",
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (
            "CREATE SHARE s WITH TABLE t FROM EXPERIMENT '/Users/ana@corp.com/churn'",
            "/Users/ana@corp.com/churn",
        ),
        ('CREATE SHARE s WITH TABLE t FROM EXPERIMENT "quote""d"', 'quote"d'),
        ("CREATE SHARE s WITH TABLE t FROM EXPERIMENT `tick``ed`", "tick`ed"),
        ("CREATE SHARE s WITH TABLE t FROM EXPERIMENT 'it''s'", "it's"),
        ("CREATE SHARE s WITH TABLE t FROM EXPERIMENT chürn_✓", None),
        ("CREATE SHARE s WITH TABLE t FROM EXPERIMENT 'chürn ✓'", "chürn ✓"),
    ],
)
def test_quoted_names(text: str, name: str | None) -> None:
    if name is None:
        with pytest.raises(ArcuateSyntaxError):
            parse(text)
        return
    node = parse(text)
    assert isinstance(node, ast.CreateShare)
    assert node.source.name == name


def test_table_names_have_one_to_three_parts() -> None:
    for text, parts in [("t", ("t",)), ("s.t", ("s", "t")), ("c.s.t", ("c", "s", "t"))]:
        node = parse(f"CREATE SHARE x WITH TABLE {text} FROM MODEL m")
        assert isinstance(node, ast.CreateShare)
        assert node.table.parts == parts
    node = parse("CREATE SHARE x WITH TABLE t FROM MODEL m")
    assert isinstance(node, ast.CreateShare) and node.table.schema == "default"


def test_script_with_comments_and_trailing_semicolon() -> None:
    script = parse_script(
        """-- export both
        CREATE SHARE s WITH TABLE runs FROM EXPERIMENT e;  /* then the model */
        CREATE SHARE s WITH TABLE model FROM MODEL m VERSION 2;
        """
    )
    assert len(script.statements) == 2
    assert script.statements[1].span.line == 3


def test_error_in_a_later_statement_reports_its_own_line() -> None:
    text = "SHOW SHARES;\nSHOW RECIPIENTS;\n\nCREATE SHARE s WITH TABLE t FROM EXPERIMENT\n"
    with pytest.raises(ArcuateSyntaxError) as info:
        parse_script(text, "jobs.arcsql")
    assert (info.value.line, info.value.col) == (4, 44)
    assert str(info.value).startswith("jobs.arcsql:4:44: expected an experiment name")


def test_parse_wants_exactly_one_statement() -> None:
    with pytest.raises(ArcuateSyntaxError, match="exactly one statement"):
        parse("SHOW SHARES; SHOW RECIPIENTS")
    with pytest.raises(ArcuateSyntaxError, match="exactly one statement"):
        parse("-- nothing here")


def test_filter_errors_point_at_the_filter_not_mlflow() -> None:
    text = "CREATE SHARE s WITH TABLE t FROM EXPERIMENT e WHERE params.lr > 0.1"
    with pytest.raises(ArcuateSyntaxError) as info:
        parse(text)
    assert info.value.col == text.index("0.1") + 1
    assert info.value.code == "ARC133"


def test_keywords_need_a_word_boundary() -> None:
    with pytest.raises(ArcuateSyntaxError, match="got 'VERSIONS'"):
        parse("CREATE SHARE s WITH TABLE t FROM MODEL m VERSIONS 1")


def test_error_details_are_machine_readable() -> None:
    with pytest.raises(ArcuateSyntaxError) as info:
        parse("CREATE SHARE s WITH TABLE t", source="<cell>")
    (detail,) = info.value.details
    assert detail["line"] == 1 and detail["col"] == 28 and detail["source"] == "<cell>"
    assert detail["code"] == "ARC101"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("CREATE MODEL m AS PANDA 'x#a.b.c'", "did you mean AS PANDAS?"),
        ("create model m as sparks 'x#a.b.c'", "did you mean AS SPARK?"),
        ("CREATE MODEL m AS acme 'x#a.b.c'", "the flavor is PANDAS or SPARK"),
    ],
)
def test_a_misspelled_flavor_is_named_not_a_missing_semicolon(text: str, hint: str) -> None:
    with pytest.raises(ArcuateSyntaxError) as info:
        parse(text)
    assert "';'" not in info.value.message
    assert info.value.hint is not None and hint in info.value.hint


def test_a_bare_coordinate_without_hash_says_where_the_hash_goes() -> None:
    with pytest.raises(ArcuateSyntaxError) as info:
        parse("CREATE EXPERIMENT e AS acme.share")
    err = info.value
    assert err.code == "ARC120" and (err.span.start, err.span.end) == (23, 33)
    assert err.hint == "write it as 'acme.share#<share>.<schema>.<table>' (quotes optional)"
    assert str(err).splitlines()[2] == "  " + " " * 23 + "^" * 10
