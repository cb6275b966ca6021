"""arcuate's bytecode, compiled before anything is timed, as an installed copy has it.

``pip install`` compiles every module of a package it installs, and an editable check-out
writes ``__pycache__`` on its first import, so a user's ``arcuate`` command never compiles
its own source. Where ``PYTHONDONTWRITEBYTECODE`` is set (this machine's environment sets it)
an editable check-out is compiled again by every fresh process: about 0.6 s of a tiny
command's 2.4 s, measured on the production topology. The peer's cached venv is installed by
pip, hence compiled, so without this step the two tools would not start equal.
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path
from typing import Final

#: The packages the ``arcuate`` command and the benchmarks' child processes import.
PACKAGES: Final = ("arcuate", "delta_sharing_mlflow", "benchmarks")


def package_dir(name: str) -> Path | None:
    """Where package ``name`` is imported from (None if it is not installed)."""
    spec = importlib.util.find_spec(name)
    locations = spec.submodule_search_locations if spec is not None else None
    return Path(next(iter(locations))) if locations else None


def compile_tree(root: Path) -> int:
    """Write the bytecode of every module under ``root`` that lacks a current one (py_compile
    writes it whatever ``PYTHONDONTWRITEBYTECODE`` says); the number of modules."""
    compileall.compile_dir(str(root), quiet=1)
    return sum(1 for _ in root.rglob("*.py"))


def compile_packages() -> str:
    """Compile :data:`PACKAGES`; the line the benchmarks print about it."""
    counts = {name: compile_tree(d) for name in PACKAGES if (d := package_dir(name))}
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    return f"bytecode compiled before timing, as pip install leaves it: {listed} modules"


__all__ = ["PACKAGES", "compile_packages", "compile_tree", "package_dir"]
