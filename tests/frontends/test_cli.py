"""The CLI through its real entry point: run scripts, explain, errors and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import MlflowStore

ARCUATE = str(Path(sys.executable).parent / "arcuate")


def _run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARCUATE, *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=120
    )


def test_help_everywhere(workdir: Path) -> None:
    top = _run("--help", cwd=workdir)
    assert top.returncode == 0 and "CREATE SHARE s WITH TABLE t FROM EXPERIMENT" in top.stdout
    for command in ("run", "explain", "demo"):
        sub = _run(command, "--help", cwd=workdir)
        assert sub.returncode == 0 and "Usage: arcuate " + command in sub.stdout


def test_run_script_exports_and_reports(provider: MlflowStore, workdir: Path) -> None:
    script = workdir / "export.arcsql"
    script.write_text(
        "-- share the churn work\n"
        "CREATE SHARE ml WITH TABLE ml.runs FROM EXPERIMENT churn;\n"
        "CREATE SHARE ml WITH TABLE ml.model FROM MODEL `churn-model` VERSION 1;\n"
    )
    out = _run(
        "run",
        str(script),
        "--tracking-uri",
        provider.tracking_uri,
        "--warehouse",
        "wh",
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr
    assert "export experiment: runs=2" in out.stdout
    assert "export model: versions=1" in out.stdout
    assert (workdir / "wh" / "ml" / "runs" / "_delta_log").is_dir()


def test_script_error_exits_non_zero_and_runs_nothing(provider: MlflowStore, workdir: Path) -> None:
    script = workdir / "bad.arcsql"
    script.write_text(
        "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn;\n" * 2
        + "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn WHERE metrics.auc >\n"
    )
    out = _run(
        "run",
        str(script),
        "--tracking-uri",
        provider.tracking_uri,
        "--warehouse",
        "wh",
        cwd=workdir,
    )
    assert out.returncode == 1
    assert f"{script}:3:74: expected a number or a quoted string to compare with" in out.stderr
    assert not (workdir / "wh").exists()


def test_missing_experiment_is_a_clear_error_that_writes_nothing(
    provider: MlflowStore, workdir: Path
) -> None:
    out = _run(
        "run",
        "-",
        "--tracking-uri",
        provider.tracking_uri,
        "--warehouse",
        "wh",
        cwd=workdir,
        stdin="CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT chrun",
    )
    assert out.returncode == 1
    assert "chrun" in out.stderr and "churn" in out.stderr  # names it, suggests the close match
    assert not (workdir / "wh" / "runs" / "_delta_log").exists()
    assert not (workdir / "wh" / "shares.yaml").exists()


def test_explain_statement_and_file(workdir: Path) -> None:
    out = _run("explain", "CREATE MODEL m AS 'p.share#a.b.c'", cwd=workdir)
    assert out.returncode == 0 and "1. ReadShare" in out.stdout
    (workdir / "s.arcsql").write_text("SHOW SHARES; GRANT SELECT ON SHARE s TO RECIPIENT r")
    out = _run("explain", "-f", "s.arcsql", cwd=workdir)
    assert out.returncode == 0 and "grant SELECT on share 's'" in out.stdout
    bad = _run("explain", "CREATE MODEL m AS", cwd=workdir)
    assert bad.returncode == 1 and "<string>:1:18" in bad.stderr
