"""The CLI through its real entry point: run scripts, explain, errors and exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import arcuate
from arcuate.errors import NotFoundError, PlanError
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


# -- every failure is one rendered error with its code (issue 11 item 1) ------------------------


def _one_error(out: subprocess.CompletedProcess[str], code: str) -> str:
    """The CLI failed with exactly one rendered error carrying ``code``; its first line."""
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "Usage:" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("error: ") == 1, out.stderr
    first = out.stderr.splitlines()[0]
    assert first.endswith(f"[{code}]"), out.stderr
    return first


def test_a_missing_script_is_a_rendered_error(workdir: Path) -> None:
    first = _one_error(_run("run", "missing.arcsql", cwd=workdir), "ARC701")
    assert first == "error: cannot read script missing.arcsql: no such file [ARC701]"
    (workdir / "scripts").mkdir()
    first = _one_error(_run("run", "scripts", cwd=workdir), "ARC701")
    assert first == "error: cannot read script scripts: it is a directory [ARC701]"
    first = _one_error(_run("explain", "-f", "missing.arcsql", cwd=workdir), "ARC701")
    assert first == "error: cannot read script missing.arcsql: no such file [ARC701]"


def test_serve_renders_its_errors_as_every_other_command_does(workdir: Path) -> None:
    """On a terminal (FORCE_COLOR stands for one) ``error:`` is bold red for run and serve."""
    env = {**os.environ, "FORCE_COLOR": "1"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        served = subprocess.run(
            [ARCUATE, "serve", "--port", port, "--warehouse", "wh"],
            cwd=workdir, capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    ran = subprocess.run(
        [ARCUATE, "run", "missing.arcsql"],
        cwd=workdir, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    red = "\x1b[1;31merror:\x1b[0m "
    assert ran.returncode == 1 and ran.stderr.startswith(red + "cannot read script"), ran.stderr
    assert served.returncode == 1, served.stderr
    assert (
        served.stderr
        == f"{red}cannot listen on 127.0.0.1:{port}: Address already in use [ARC300]\n"
    )


def test_a_script_that_is_not_utf8_is_a_rendered_error(workdir: Path) -> None:
    (workdir / "latin1.arcsql").write_bytes(
        "SHOW SHARES;\n-- caf\u00e9\nSHOW RECIPIENTS\n".encode("latin-1")
    )
    out = _run("run", "latin1.arcsql", cwd=workdir)
    first = _one_error(out, "ARC702")
    assert first == (
        "error: script latin1.arcsql is not UTF-8 text: byte 0xe9 at line 2, column 7 [ARC702]"
    )
    assert "hint: save it as UTF-8" in out.stderr
    piped = subprocess.run(
        [ARCUATE, "run", "-"], cwd=workdir, capture_output=True, input=b"SHOW SHARES -- \xff\n"
    )
    err = piped.stderr.decode()
    assert piped.returncode == 1 and "Traceback" not in err
    assert err.startswith(
        "error: script <stdin> is not UTF-8 text: byte 0xff at line 1, column 16 [ARC702]"
    )


def test_runtime_errors_print_their_code(provider: MlflowStore, workdir: Path) -> None:
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
    first = _one_error(out, "ARC404")
    assert first.startswith("error: experiment 'chrun' does not exist")
    assert "hint: did you mean 'churn'?" in out.stderr


def test_an_unexpected_failure_is_rendered_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (any exception that is not an ArcuateError) is still one rendered line."""
    from click.testing import CliRunner

    import arcuate.api
    from arcuate.frontends.cli import main

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(arcuate.api, "plan_scripts", broken)
    out = CliRunner().invoke(main, ["run", "-"], input="SHOW SHARES")
    assert out.exit_code == 1
    assert out.output.splitlines()[0] == "error: unexpected KeyError: 'oops' [ARC000]"
    assert "--debug" in out.output and "Traceback" not in out.output
    debug = CliRunner().invoke(main, ["--debug", "run", "-"], input="SHOW SHARES")
    assert debug.exit_code == 1 and "Traceback" in debug.output


# -- a malformed profile (item 3) -----------------------------------------------------------------


def test_a_malformed_profile_names_the_profile_and_where(workdir: Path) -> None:
    (workdir / "acme.share").write_text('{"bearerToken": "s3cr3t-t0ken",\n "endpoint": }\n')
    out = _run("run", "-", cwd=workdir, stdin="CREATE MODEL m AS 'acme.share#ml.ml.model'")
    first = _one_error(out, "ARC710")
    assert first == (
        "error: the profile acme.share is not valid JSON: line 2, column 14: "
        "expecting value [ARC710]"
    )
    assert "s3cr3t" not in out.stderr
    (workdir / "acme.share").write_text('{"shareCredentialsVersion": 1, "bearerToken": "s3cr3t"}')
    out = _run("run", "-", cwd=workdir, stdin="DESCRIBE 'acme.share#ml.ml.model'")
    first = _one_error(out, "ARC710")
    assert first == "error: the profile acme.share has no 'endpoint' [ARC710]"
    assert "s3cr3t" not in out.stderr


# -- hints that help (item 5) ---------------------------------------------------------------------


def test_as_spark_hint_says_what_to_do_from_the_cli(workdir: Path) -> None:
    out = _run("run", "-", cwd=workdir, stdin="CREATE MODEL m AS SPARK 'p.share#a.b.c'")
    assert out.returncode == 1 and "[ARC202]" in out.stderr
    hint = next(line for line in out.stderr.splitlines() if "hint:" in line)
    assert hint == (
        "  hint: the arcuate command has no SparkSession: run the statement from Python with"
        " arcuate.execute(..., spark=spark), or use AS PANDAS"
    )


def test_a_front_end_supplies_its_own_spark_hint(workdir: Path) -> None:
    with pytest.raises(PlanError) as info:
        arcuate.execute("CREATE MODEL m AS SPARK 'p.share#a.b.c'")
    assert info.value.hint == "pass spark=<SparkSession> to arcuate.execute(), or use AS PANDAS"
    with pytest.raises(PlanError) as info:
        arcuate.execute(
            "CREATE MODEL m AS SPARK 'p.share#a.b.c'", spark_hint="give %%arcuate --spark VAR"
        )
    assert info.value.hint == "give %%arcuate --spark VAR, or use AS PANDAS"


def _key_file_hint(workdir: Path, key: Path) -> str:
    out = _run("serve", "--warehouse", "wh", "--port", "0", "--key-file", str(key), cwd=workdir)
    first = _one_error(out, "ARC300")
    assert first.startswith(f"error: signing key {key} is readable by other users")
    return next(line for line in out.stderr.splitlines() if "hint:" in line)


def test_signing_key_hint_never_chmods_a_file_that_is_not_a_key_of_yours(workdir: Path) -> None:
    hint = _key_file_hint(workdir, Path("/etc/passwd"))
    assert "chmod" not in hint
    assert hint == (
        "  hint: use a key file of your own: give --key-file a new path (the key is created"
        " there with mode 0600)"
    )
    own = workdir / "mine.key"
    own.write_text("ab" * 32 + "\n")
    own.chmod(0o644)
    hint = _key_file_hint(workdir, own)
    assert hint == f"  hint: chmod 600 {own}, or use a key file of your own (a new --key-file path)"
    if os.geteuid() == 0:  # a key file that belongs to somebody else
        os.chown(own, 65534, 65534)
        assert "chmod" not in _key_file_hint(workdir, own)


# -- EXPLAIN of AS SPARK without a session (item 6) ----------------------------------------------


def test_explain_as_spark_without_a_session_shows_the_plan_and_a_note(workdir: Path) -> None:
    out = _run("explain", "CREATE MODEL m AS SPARK 'p.share#a.b.c'", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "CREATE MODEL m AS SPARK 'p.share#a.b.c'",
        "  1. ReadShare    read shared table 'p.share#a.b.c' as SPARK (Delta Sharing)",
        "  2. ImportModel  validate rows, then import into registered model 'm' (add or update"
        " versions)",
        "  note: running it needs a SparkSession [ARC202]: the arcuate command has no"
        " SparkSession: run the statement from Python with arcuate.execute(..., spark=spark),"
        " or use AS PANDAS",
    ]
    (result,) = arcuate.execute("EXPLAIN CREATE MODEL m AS SPARK 'p.share#a.b.c'")
    assert result.text is not None and "note: running it needs a SparkSession [ARC202]" in (
        result.text
    )


def test_a_script_with_as_spark_still_fails_before_its_first_statement(workdir: Path) -> None:
    script = workdir / "s.arcsql"
    script.write_text(
        "CREATE RECIPIENT acme;\n"
        "EXPLAIN CREATE MODEL m AS SPARK 'p.share#a.b.c';\n"
        "CREATE MODEL m AS SPARK 'p.share#a.b.c'\n"
    )
    out = _run("run", str(script), "--warehouse", "wh", cwd=workdir)
    assert out.returncode == 1 and f"{script}:3:1: AS SPARK needs a SparkSession" in out.stderr
    assert out.stdout == "" and not (workdir / "wh").exists()


# -- partial results (item 7) ---------------------------------------------------------------------

_THREE = (
    "CREATE SHARE ml WITH TABLE ml.runs FROM EXPERIMENT churn;\n"
    "CREATE SHARE ml WITH TABLE ml.gone FROM EXPERIMENT chrun;\n"
    "CREATE SHARE ml WITH TABLE ml.model FROM MODEL `churn-model`;\n"
)


def test_a_failing_script_prints_what_ran_and_what_did_not(
    provider: MlflowStore, workdir: Path
) -> None:
    (workdir / "three.arcsql").write_text(_THREE)
    out = _run(
        "run", "three.arcsql", "--tracking-uri", provider.tracking_uri, "--warehouse", "wh",
        cwd=workdir,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout.startswith("export experiment: runs=2")
    assert "export model" not in out.stdout
    assert out.stderr.startswith("error: experiment 'chrun' does not exist")
    assert (
        "  statement 2 of 3 failed (three.arcsql:2); statement 1 ran and stays applied;"
        " statement 3 did not run"
    ) in out.stderr.splitlines()
    assert (workdir / "wh" / "ml" / "runs" / "_delta_log").is_dir()
    assert not (workdir / "wh" / "ml" / "model").exists()


def test_execute_attaches_the_results_that_ran_to_the_error(
    provider: MlflowStore, workdir: Path
) -> None:
    with pytest.raises(NotFoundError) as info:
        arcuate.execute(_THREE, tracking_uri=provider.tracking_uri, warehouse="wh", progress=False)
    results = info.value.results
    assert [r.action for r in results] == ["export experiment"]
    assert results[0].summary["runs"] == 2
    assert any("statement 3 did not run" in note for note in info.value.__notes__)
    with pytest.raises(NotFoundError) as info:
        arcuate.execute("CREATE SHARE ml WITH TABLE t FROM EXPERIMENT nope", warehouse="wh")
    assert list(info.value.results) == []


# -- machine-readable output (item 12) ------------------------------------------------------------


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_run_format_json_is_one_object_per_statement(provider: MlflowStore, workdir: Path) -> None:
    (workdir / "ok.arcsql").write_text(
        "CREATE SHARE ml WITH TABLE ml.runs FROM EXPERIMENT churn;\nSHOW SHARES\n"
    )
    args = ("--tracking-uri", provider.tracking_uri, "--warehouse", "wh", "--format", "json")
    out = _run("run", "ok.arcsql", *args, cwd=workdir)
    assert out.returncode == 0, out.stderr
    export, shares = _json_lines(out.stdout)
    assert export["kind"] == "create_share" and export["status"] == "ok"
    assert export["statement"] == "CREATE SHARE ml WITH TABLE ml.runs FROM EXPERIMENT churn"
    assert (export["source"], export["line"]) == ("ok.arcsql", 1)
    assert export["summary"]["runs"] == 2 and export["error"] is None
    assert shares["kind"] == "show_shares" and shares["details"][0]["name"] == "ml"

    (workdir / "three.arcsql").write_text(_THREE)
    out = _run("run", "three.arcsql", *args, cwd=workdir)
    assert out.returncode == 1
    first, failed, skipped = _json_lines(out.stdout)
    assert first["status"] == "ok" and first["summary"]["runs"] == 2
    assert failed["status"] == "failed" and failed["line"] == 2
    assert failed["error"]["code"] == "ARC404"
    assert failed["error"]["message"].startswith("experiment 'chrun' does not exist")
    assert failed["error"]["hint"] == "did you mean 'churn'?"
    assert skipped["status"] == "not run" and skipped["kind"] == "create_share"
    assert skipped["summary"] == {} and skipped["error"] is None
    assert "[ARC404]" in out.stderr  # the human-readable error still goes to stderr

    bad = _run("run", "-", *args, cwd=workdir, stdin="SHOW SHARES;\nCREATE SHARE")
    assert bad.returncode == 1
    (only,) = _json_lines(bad.stdout)
    assert only["status"] == "failed" and only["kind"] is None
    assert only["error"]["code"] == "ARC101"
    assert (only["error"]["source"], only["error"]["line"]) == ("<stdin>", 2)


def test_a_system_error_names_its_file(workdir: Path) -> None:
    assert _run("run", "-", "--warehouse", "wh", cwd=workdir, stdin="CREATE RECIPIENT acme")
    (workdir / "notes").write_text("a file, not a directory")
    out = _run("catalog", "export-yaml", "--warehouse", "wh", "-o", "notes/r.yaml", cwd=workdir)
    first = _one_error(out, "ARC000")
    assert first == "error: File exists: notes [ARC000]"
    assert "hint: check the path and its permissions" in out.stderr and "bug" not in out.stderr


_PROGRAM = """
import atexit, sys, threading, time
from arcuate.frontends.cli import program
atexit.register(lambda: print("atexit ran", flush=True))
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
sys.argv = ["arcuate", *sys.argv[2:]]
program()
"""


@pytest.mark.parametrize("thread", ["none", "thread"])
def test_the_program_ends_with_its_status_and_output(workdir: Path, thread: str) -> None:
    """The command ends without the interpreter's teardown, yet as Python would end it: the
    status, everything written to stdout and stderr (through a pipe), the ``atexit``
    handlers; a thread still running is waited for."""
    import sys

    def program(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _PROGRAM, thread, *args],
            cwd=workdir,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )

    explained = program("explain", "; ".join(["SHOW SHARES"] * 400))
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.count("SHOW SHARES") == 400  # 400 plans, none lost in the pipe
    assert explained.stdout.rstrip().endswith("atexit ran")
    failed = program("run", "-", stdin="CREATE SHARE")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and "atexit ran" in failed.stdout
    assert program("--no-such-option").returncode == 2  # click's usage error
    if thread == "thread":
        assert "thread done" in explained.stdout
