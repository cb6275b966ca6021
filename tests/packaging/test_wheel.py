"""The grammar ships inside the wheel: a non-editable build parses a statement."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_installed_wheel_parses_with_its_own_grammar(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("arcuate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "arcuate/grammar/arcuate.lark" in names
    assert "delta_sharing_mlflow/__init__.py" in names
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import arcuate, arcuate.syntax.parser as p\n"
        "print(arcuate.__file__)\n"
        "print(arcuate.unparse(arcuate.parse('create share s with table t from model m')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    location, text = out.stdout.splitlines()
    assert location.startswith(str(target))
    assert text == "CREATE SHARE s WITH TABLE t FROM MODEL m"
