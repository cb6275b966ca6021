"""What pyproject.toml declares is what the code imports, and the server stack is pinned.

A declared library that nothing imports (fastapi, once) is installed for nothing; the
libraries the embedded server builds on, private parts included (uvicorn's h11 protocol,
Starlette's file response), are declared with the range the suite was run against.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("arcuate", "delta_sharing_mlflow")
#: imported directly by the sharing server (arcuate/backends/sharing/server)
SERVER_STACK = ("starlette", "uvicorn", "h11")


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = (Requirement(text) for text in project["dependencies"])
    return {canonicalize_name(r.name): r for r in reqs}


def _imported_distributions() -> set[str]:
    """Distributions whose top-level modules the packages import (lazy imports included)."""
    modules: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    owners = importlib.metadata.packages_distributions()
    third_party = (m for m in modules if m not in sys.stdlib_module_names)
    return {canonicalize_name(d) for m in third_party for d in owners.get(m, [])}


def test_every_declared_dependency_is_imported() -> None:
    unused = sorted(set(_requirements()) - _imported_distributions())
    assert unused == [], f"declared in pyproject.toml but never imported: {unused}"


def test_the_server_stack_is_declared_with_a_tested_range() -> None:
    requirements = _requirements()
    for name in SERVER_STACK:
        assert name in requirements, f"{name} is imported by the server but not declared"
        bounds = {spec.operator for spec in requirements[name].specifier}
        assert {">=", "<"} <= bounds, f"{name}: {requirements[name]} has no tested range"
        installed = importlib.metadata.version(name)
        assert requirements[name].specifier.contains(installed), (name, installed)
