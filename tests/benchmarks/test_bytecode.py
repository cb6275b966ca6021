"""The benchmarks compile arcuate's bytecode first, as an installed copy has it, even where
``PYTHONDONTWRITEBYTECODE`` keeps fresh processes from writing it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks.bytecode import compile_packages, compile_tree, package_dir


def test_compile_tree_writes_bytecode_though_the_environment_says_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    package = tmp_path / "pkg"
    (package / "inner").mkdir(parents=True)
    for module in (package / "__init__.py", package / "inner" / "__init__.py", package / "a.py"):
        module.write_text("VALUE = 1\n")
    assert compile_tree(package) == 3
    for module in package.rglob("*.py"):
        assert Path(importlib.util.cache_from_source(str(module))).is_file(), module


def test_compile_packages_names_arcuate() -> None:
    line = compile_packages()
    assert line.startswith("bytecode compiled before timing")
    assert "arcuate " in line
    assert package_dir("arcuate") is not None
    assert package_dir("no_such_package_here") is None
