"""Property: for generated statements, parse(unparse(ast)) == ast and unparse is a fixpoint."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arcuate.syntax import ast
from arcuate.syntax.parser import parse
from arcuate.syntax.unparse import unparse

# Names: anything printable, including quotes, backticks, spaces, dots and unicode.
names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r\x85\u2028\u2029"),
    min_size=1,
    max_size=20,
)
share_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
keys = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_]{1,5}){0,2}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9 :/\-]{0,10}", fullmatch=True),
)
strings = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=15)
numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(float),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)


@st.composite
def conditions(draw: st.DrawFn) -> ast.Condition:
    entity = draw(st.sampled_from(["metrics", "params", "tags", "attributes"]))
    if entity == "metrics":
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        return ast.Condition("metrics", draw(keys), op, (ast.Value(draw(numbers)),))
    if entity == "attributes":
        key = draw(st.sampled_from(["status", "run_name", "start_time", "end_time"]))
        if key.endswith("_time"):
            return ast.Condition("attributes", key, ">", (ast.Value(draw(numbers)),))
    else:
        key = draw(keys)
    op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]))
    count = draw(st.integers(1, 3)) if op.endswith("IN") else 1
    values = tuple(ast.Value(draw(strings)) for _ in range(count))
    return ast.Condition(entity, key, op, values)  # type: ignore[arg-type]


lengths = st.builds(
    ast.Expiry, st.integers(1, 1000), st.sampled_from(["SECONDS", "MINUTES", "HOURS", "DAYS"])
)
coordinates = st.builds(
    ast.Coordinate,
    profile=st.text(
        st.characters(
            blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r\x85\u2028\u2029"
        ),
        min_size=1,
        max_size=20,
    ),
    share=share_names,
    schema=share_names,
    table=share_names,
)
tables = st.lists(names, min_size=1, max_size=3).map(lambda p: ast.TableName(tuple(p)))
sources = st.one_of(
    st.builds(ast.ExperimentSource, names, st.lists(conditions(), max_size=3).map(tuple)),
    st.builds(ast.ModelSource, names, st.lists(st.integers(1, 999), max_size=3).map(tuple)),
    st.builds(
        ast.ModelSource, names, st.just(()), st.lists(names, min_size=1, max_size=2).map(tuple)
    ),
)
statements = st.one_of(
    st.builds(ast.CreateShare, names, tables, sources, st.booleans()),
    st.builds(
        ast.CreateExperiment,
        names,
        coordinates,
        st.sampled_from(["pandas", "spark"]),
        st.booleans(),
    ),
    st.builds(
        ast.CreateModel, names, coordinates, st.sampled_from(["pandas", "spark"]), st.booleans()
    ),
    st.builds(ast.DescribeShared, coordinates),
    st.builds(ast.ShowProviderShares, names),
    st.builds(
        ast.CreateRecipient,
        names,
        st.booleans(),
        st.none() | strings,
        st.none()
        | st.builds(
            ast.Expiry,
            st.integers(1, 1000),
            st.sampled_from(["SECONDS", "MINUTES", "HOURS", "DAYS"]),
        ),
        st.none() | strings,
        show_token=st.booleans(),
        oauth=st.none() | st.builds(ast.OAuth, st.none() | lengths),
    ),
    st.builds(
        ast.RotateToken,
        names,
        st.none() | st.builds(ast.Expiry, st.integers(1, 1000), st.just("HOURS")),
        st.none() | strings,
        show_token=st.booleans(),
        keep_old=st.none() | lengths,
    ),
    # an activation link replaces the profile file: no PROFILE, no SHOW TOKEN
    st.builds(
        ast.CreateRecipient,
        names,
        st.booleans(),
        st.none() | strings,
        oauth=st.none() | st.builds(ast.OAuth, st.none() | lengths),
        activation_link=st.builds(ast.ActivationLink, st.none() | lengths),
    ),
    st.builds(
        ast.RotateToken,
        names,
        keep_old=st.none() | lengths,
        activation_link=st.builds(ast.ActivationLink, st.none() | lengths),
    ),
    st.builds(ast.Grant, names, names),
    st.builds(ast.Revoke, names, names),
    st.builds(ast.RemoveTable, names, tables),
    st.builds(ast.DropShare, names, st.booleans()),
    # access: IP access lists, rate limits, the access log (issue 15)
    st.builds(
        ast.SetIpAccessList,
        names,
        st.lists(strings.map(ast.Value), min_size=1, max_size=3).map(tuple),
    ),
    st.builds(ast.UnsetIpAccessList, names),
    st.builds(
        ast.SetRateLimit,
        names,
        st.integers(0, 10**9),
        st.sampled_from(["SECOND", "MINUTE", "HOUR", "DAY"]),
    ),
    st.builds(ast.UnsetRateLimit, names),
    st.builds(
        ast.ShowAccessLog,
        st.none() | names,
        st.none() | names,
        st.none() | strings.map(ast.Value),
        st.none() | st.integers(0, 10**9),
    ),
    st.builds(
        ast.ShowRecipientUsage,
        st.none() | names,
        st.none() | names,
        st.none() | strings.map(ast.Value),
    ),
)


@settings(max_examples=400, deadline=None)
@given(statements)
def test_parse_of_unparse_is_identity(node: ast.Statement) -> None:
    text = unparse(node)
    assert parse(text) == node
    assert unparse(parse(text)) == text


@settings(max_examples=100, deadline=None)
@given(statements)
def test_explain_wraps_any_statement(node: ast.Statement) -> None:
    wrapped = ast.Explain(node)
    assert parse(unparse(wrapped)) == wrapped
