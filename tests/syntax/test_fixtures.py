"""Golden syntax fixtures: canonical identity, normalisation pairs, positioned errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arcuate.errors import ArcuateSyntaxError
from arcuate.syntax.parser import parse
from arcuate.syntax.unparse import unparse

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _lines(name: str) -> list[str]:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("--")]


@pytest.mark.parametrize("line", _lines("identity.arcsql"))
def test_canonical_text_round_trips(line: str) -> None:
    node = parse(line)
    assert unparse(node) == line
    assert parse(unparse(node)) == node


def _pairs() -> list[tuple[str, str]]:
    lines = _lines("normalize.arcsql")
    return [(a, b.removeprefix("=> ")) for a, b in zip(lines[::2], lines[1::2], strict=True)]


@pytest.mark.parametrize(("text", "canonical"), _pairs())
def test_synonyms_and_spellings_normalise(text: str, canonical: str) -> None:
    node = parse(text)
    assert unparse(node) == canonical
    assert parse(canonical) == node


def _errors() -> list[tuple[str, int, int, str, str]]:
    text = (FIXTURES / "errors.arcsql").read_text(encoding="utf-8")
    cases = re.findall(r"^-- (ARC\d+) (\d+):(\d+) (.*)\n(.*)$", text, flags=re.M)
    return [(code, int(line), int(col), msg, src) for code, line, col, msg, src in cases]


def test_there_are_at_least_25_malformed_statements() -> None:
    assert len(_errors()) >= 25


@pytest.mark.parametrize(("code", "line", "col", "message", "source"), _errors())
def test_malformed_statement_gives_positioned_message(
    code: str, line: int, col: int, message: str, source: str
) -> None:
    with pytest.raises(ArcuateSyntaxError) as info:
        parse(source)
    err = info.value
    assert (err.code, err.line, err.col, err.message) == (code, line, col, message)
    rendered = str(err).splitlines()
    assert rendered[0] == f"<string>:{line}:{col}: {message} [{code}]"
    assert rendered[1] == f"  {source}"
    assert rendered[2].startswith(" " * (col + 1) + "^")
    for raw in ("Token(", "$END", "__ANON", "_SEMI", "LPAR"):
        assert raw not in str(err)
