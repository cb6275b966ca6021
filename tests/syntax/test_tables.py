"""The parser's LALR tables saved in the user's cache: the parser loaded from them answers
exactly as the one built from the grammar (statements, spans, error messages), and a damaged
or stale cache file is ignored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arcuate.errors import ArcuateSyntaxError
from arcuate.syntax import parser, tables
from arcuate.syntax.parser import parse_script

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parser._lark.cache_clear()
    yield tmp_path / "arcuate"
    parser._lark.cache_clear()


def _answers() -> list[str]:
    """What the parser says about every line of the golden fixtures (trees with their spans,
    or the error with its position)."""
    out = []
    for name in ("identity.arcsql", "normalize.arcsql", "errors.arcsql"):
        for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
            if not line or line.startswith(("--", "=>")):
                continue
            try:
                out.append(repr(parse_script(line)))
            except ArcuateSyntaxError as exc:
                out.append(str(exc))
    return out


def test_loaded_tables_parse_as_the_built_ones(cache: Path) -> None:
    built = _answers()
    (saved,) = cache.glob("grammar-*.json")
    parser._lark.cache_clear()
    loaded_from = []
    real_load = tables.load

    def spy(digest: str) -> object:
        found = real_load(digest)
        loaded_from.append(found is not None)
        return found

    with pytest.MonkeyPatch.context() as m:
        m.setattr(tables, "load", spy)
        assert _answers() == built
    assert loaded_from == [True]
    assert saved.read_text(encoding="utf-8").startswith('{"key": ')  # JSON, never a pickle


@pytest.mark.parametrize("damage", ["truncated", "other key", "not json"])
def test_a_damaged_cache_file_is_ignored(cache: Path, damage: str) -> None:
    expected = _answers()
    (saved,) = cache.glob("grammar-*.json")
    text = saved.read_text(encoding="utf-8")
    saved.write_text(
        {
            "truncated": text[: len(text) // 2],
            "other key": text.replace(saved.stem.removeprefix("grammar-"), "0" * 32, 1),
            "not json": "\x80\x04K\x01.",  # a pickle: never loaded as one
        }[damage],
        encoding="utf-8",
    )
    parser._lark.cache_clear()
    assert _answers() == expected


def test_an_unwritable_cache_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    parser._lark.cache_clear()
    try:
        assert parse_script("SHOW SHARES").statements
    finally:
        parser._lark.cache_clear()
