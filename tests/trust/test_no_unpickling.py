"""arcuate never imports a deserializer that runs code, nor calls one (issue 16 item 3).

MLflow itself imports cloudpickle when it is imported, so ``sys.modules`` cannot show this for
a full import; every import and call in arcuate's own code is checked instead (function-local
ones included), and the import tests refuse any unpickling at run time
(tests/imports/test_import_serialization_policy.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "arcuate"
#: Modules whose loading can run code chosen by a file's author.
UNSAFE = {"pickle", "cloudpickle", "dill", "joblib", "torch", "_pickle", "shelve", "marshal"}


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [node.value.id] if node.attr in ("load", "loads", "Unpickler") else []
        else:
            continue
        found += [f"{path.relative_to(ROOT.parent)}:{node.lineno}: {n}" for n in names if n in UNSAFE]
    return found


def test_arcuate_imports_and_calls_no_unpickler() -> None:
    problems = [p for path in sorted(ROOT.rglob("*.py")) for p in _problems(path)]
    assert problems == []
