"""The magics in a real IPython InteractiveShell: wiring, kinds, error rendering."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.conftest import MlflowStore


@pytest.fixture
def shell(ipython: InteractiveShell) -> InteractiveShell:
    return ipython


@pytest.fixture
def configured(
    shell: InteractiveShell, provider: MlflowStore, workdir: Path
) -> Iterator[InteractiveShell]:
    shell.run_line_magic("config", f"ArcuateMagics.tracking_uri = {provider.tracking_uri!r}")
    shell.run_line_magic("config", f"ArcuateMagics.warehouse = {str(workdir / 'wh')!r}")
    yield shell
    for name in ("tracking_uri", "warehouse"):  # the shell outlives the test
        shell.run_line_magic("config", f"ArcuateMagics.{name} = None")


def _cell(shell: InteractiveShell, magic: str, body: str):  # type: ignore[no-untyped-def]
    result = shell.run_cell(f"%%{magic}\n{body}", store_history=False)
    return result


def test_seed_export_magics_run_the_statement(configured: InteractiveShell, workdir: Path) -> None:
    res = _cell(
        configured,
        "arcuate_export_experiment",
        "CREATE SHARE share_name WITH TABLE runs FROM EXPERIMENT churn",
    )
    assert res.success, res.error_in_exec
    (out,) = res.result
    assert out.summary["runs"] == 2 and out.summary["share"] == "share_name"
    res = _cell(
        configured,
        "arcuate_export_model",
        "CREATE SHARE share_name WITH TABLE model FROM MODEL `churn-model`",
    )
    assert res.success, res.error_in_exec
    assert res.result[0].summary["versions"] == 1
    assert "name: runs" in (workdir / "wh" / "shares.yaml").read_text()


def test_general_magic_runs_any_statement_and_line_form(configured: InteractiveShell) -> None:
    res = _cell(configured, "arcuate", "EXPLAIN CREATE MODEL m AS 'p.share#a.b.c';\nSHOW SHARES")
    assert res.success, res.error_in_exec
    assert res.result[0].action == "explain"
    line = configured.run_cell(
        "%arcuate EXPLAIN CREATE SHARE s WITH TABLE t FROM MODEL m", store_history=False
    )
    assert line.success and "ExportModel" in str(line.result)


@pytest.mark.parametrize(
    ("magic", "body"),
    [
        ("arcuate_export_experiment", "CREATE SHARE s WITH TABLE t FROM MODEL m"),
        ("arcuate_export_model", "CREATE SHARE s WITH TABLE t FROM EXPERIMENT e"),
        ("arcuate_import_experiment", "CREATE MODEL m AS 'p.share#a.b.c'"),
        ("arcuate_import_model", "CREATE EXPERIMENT e AS 'p.share#a.b.c'"),
    ],
)
def test_seed_magics_reject_the_wrong_kind(
    configured: InteractiveShell, magic: str, body: str, capsys: pytest.CaptureFixture[str]
) -> None:
    res = _cell(configured, magic, body)
    assert not res.success
    message = str(res.error_in_exec)
    assert f"%%{magic} runs" in message and "<cell>:1:1" in message
    assert "Traceback" not in capsys.readouterr().out


def test_syntax_error_shows_position_without_traceback(
    configured: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    res = _cell(configured, "arcuate", "SHOW SHARES;\nCREATE SHARE s WITH TABLE t FROM")
    assert not res.success
    shown = capsys.readouterr().out
    assert "<cell>:2:33: expected EXPERIMENT or MODEL after FROM" in shown
    assert "Traceback" not in shown


def test_seed_python_snippet_runs_as_written(
    configured: InteractiveShell, provider: MlflowStore
) -> None:
    configured.run_cell(
        "import os\n"
        f"os.environ['MLFLOW_TRACKING_URI'] = {provider.tracking_uri!r}\n"
        "os.environ['ARCUATE_WAREHOUSE'] = os.path.abspath('wh2')\n",
        store_history=False,
    )
    # A notebook imports it for the first time; other tests in this process may have already.
    sys.modules.pop("delta_sharing_mlflow", None)
    try:
        res = configured.run_cell(
            "import delta_sharing_mlflow\n"
            "experiment_name, table_name, share_name = 'churn', 'runs', 'ml'\n"
            "result = export_experiments(experiment_name, table_name, share_name)\n",
            store_history=False,
        )
        assert res.success, res.error_in_exec
        assert configured.user_ns["result"].summary["runs"] == 2
    finally:
        configured.run_cell(
            "os.environ.pop('MLFLOW_TRACKING_URI'); os.environ.pop('ARCUATE_WAREHOUSE')",
            store_history=False,
        )


# -- options on the magic line (issue 11 item 8) -----------------------------------------------
def test_cell_magic_options_override_the_configured_settings(
    configured: InteractiveShell, workdir: Path
) -> None:
    res = _cell(
        configured,
        "arcuate --warehouse other-wh",
        "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn",
    )
    assert res.success, res.error_in_exec
    assert (workdir / "other-wh" / "runs" / "_delta_log").is_dir()
    assert not (workdir / "wh").exists()


def test_line_magic_takes_options_then_the_statement(
    configured: InteractiveShell, workdir: Path
) -> None:
    res = configured.run_cell(
        "%arcuate --warehouse 'line wh' --catalog=cat.yaml "
        "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn",
        store_history=False,
    )
    assert res.success, res.error_in_exec
    assert (workdir / "line wh" / "runs" / "_delta_log").is_dir()
    assert "name: runs" in (workdir / "cat.yaml").read_text()


def test_seed_magics_take_options_too(configured: InteractiveShell, workdir: Path) -> None:
    res = _cell(
        configured,
        "arcuate_export_model --warehouse seed-wh",
        "CREATE SHARE ml WITH TABLE model FROM MODEL `churn-model`",
    )
    assert res.success, res.error_in_exec
    assert (workdir / "seed-wh" / "model" / "_delta_log").is_dir()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("arcuate --bogus", "unknown option --bogus on the %%arcuate line"),
        ("arcuate --warehous x", "Did you mean --warehouse?"),
        ("arcuate --warehouse", "--warehouse needs a value"),
        ("arcuate SHOW SHARES", "%%arcuate takes only options on its line"),
        ("arcuate_export_experiment --bogus", "on the %%arcuate_export_experiment line"),
    ],
)
def test_bad_options_are_rejected_and_nothing_runs(
    configured: InteractiveShell,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    expected: str,
) -> None:
    res = _cell(configured, line, "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn")
    assert not res.success
    shown = capsys.readouterr().out
    assert expected in shown
    assert "--help" in shown and "Traceback" not in shown
    assert not (workdir / "wh").exists()


def test_unknown_option_on_the_line_magic(
    configured: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    res = configured.run_cell("%arcuate --bogus SHOW SHARES", store_history=False)
    assert not res.success
    assert "unknown option --bogus on the %arcuate line" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_options_and_runs_nothing(
    configured: InteractiveShell, workdir: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    body = "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn"
    res = _cell(configured, f"arcuate {flag}", body)
    assert res.success and res.result is None
    shown = capsys.readouterr().out
    for option in ("--tracking-uri", "--registry-uri", "--warehouse", "--catalog", "--endpoint",
                   "--spark VAR", "--progress", "%config ArcuateMagics"):  # fmt: skip
        assert option in shown
    assert not (workdir / "wh").exists()


def test_every_setting_has_a_line_option(configured: InteractiveShell) -> None:
    import dataclasses

    from arcuate.config import Settings
    from arcuate.frontends.magics import option_names

    options = option_names()
    for f in dataclasses.fields(Settings):
        if f.name not in ("storage_options", "redaction_key"):  # a mapping; a secret
            assert "--" + f.name.replace("_", "-") in options


def test_config_traits_are_settings(configured: InteractiveShell, workdir: Path) -> None:
    configured.run_line_magic("config", "ArcuateMagics.catalog = 'traits.yaml'")
    try:
        res = _cell(configured, "arcuate", "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn")
        assert res.success, res.error_in_exec
        assert (workdir / "traits.yaml").is_file()
    finally:
        configured.run_line_magic("config", "ArcuateMagics.catalog = None")


# -- AS SPARK from the magics (issue 11 item 9) -------------------------------------------------
AS_SPARK = "EXPLAIN CREATE EXPERIMENT e AS SPARK 'p.share#ml.ml.runs'"


def test_as_spark_without_a_session_names_the_variable_looked_for(
    configured: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.user_ns.pop("spark", None)
    res = _cell(configured, "arcuate", "CREATE EXPERIMENT e AS SPARK 'p.share#ml.ml.runs'")
    assert not res.success
    shown = capsys.readouterr().out
    assert "[ARC202]" in shown
    assert "no notebook variable `spark`" in shown
    assert "--spark VAR" in shown
    assert "arcuate.execute" not in shown


def test_as_spark_with_an_explicit_variable_that_does_not_exist(
    configured: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    res = _cell(configured, "arcuate --spark session", "SHOW SHARES")
    assert not res.success
    shown = capsys.readouterr().out
    assert "--spark session: there is no notebook variable `session`" in shown


def test_a_spark_variable_that_is_not_a_session_is_named(
    configured: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.user_ns["spark"] = "not a session"
    try:
        res = _cell(configured, "arcuate", "CREATE EXPERIMENT e AS SPARK 'p.share#ml.ml.runs'")
        assert not res.success
        assert "the notebook variable `spark` is a str, not a SparkSession" in (
            capsys.readouterr().out
        )
    finally:
        configured.user_ns.pop("spark")


def test_the_notebook_spark_session_is_used(configured: InteractiveShell) -> None:
    # The plan needs a session, and the one the notebook defines is found (the real session
    # runs a whole import in tests/spark/test_spark_magics.py).
    configured.run_cell("class SparkSession: pass\nspark = SparkSession()", store_history=False)
    try:
        res = _cell(configured, "arcuate", AS_SPARK)
        assert res.success, res.error_in_exec
        assert "as SPARK" in str(res.result)
        res = _cell(configured, "arcuate --spark other", AS_SPARK)
        assert not res.success
        configured.run_cell("other = spark", store_history=False)
        res = _cell(configured, "arcuate --spark other", AS_SPARK)
        assert res.success, res.error_in_exec
    finally:
        configured.run_cell("del spark, other, SparkSession", store_history=False)


# -- results that read well (issue 11 item 11) --------------------------------------------------
def _shown(shell: InteractiveShell, value: object) -> tuple[str, str]:
    """What a notebook shows for ``value``: its text/plain and text/html forms."""
    formatter = shell.display_formatter
    html = formatter.formatters["text/html"]
    active, enabled = formatter.active_types, html.enabled
    formatter.active_types, html.enabled = ["text/plain", "text/html"], True  # as in a kernel
    try:
        bundle, _ = formatter.format(value)
    finally:
        formatter.active_types, html.enabled = active, enabled
    return bundle["text/plain"], bundle.get("text/html", "")


def test_results_show_summary_and_details_as_text_and_html(
    configured: InteractiveShell,
) -> None:
    res = _cell(
        configured,
        "arcuate",
        "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn;\nSHOW SHARES",
    )
    assert res.success, res.error_in_exec
    text, html = _shown(configured, res.result)
    assert "StatementResult(" not in text and text == repr(res.result) == str(res.result)
    export, shares = text.split("\n\n")
    assert export.startswith("export experiment: runs=2 files=2 bytes=10 ")
    assert "seconds=" in export
    # the details are a table under their summary
    assert shares.splitlines()[0] == "show shares: shares=1"
    assert shares.splitlines()[1].split() == ["name", "schemas", "tables", "recipients"]
    assert shares.splitlines()[2].split() == ["ml", "1", "1", "[]"]
    # HTML: each statement's summary and details, the statement named
    for cell in ("<th>runs</th>", "<th>files</th>", "<th>bytes</th>", "<th>seconds</th>",
                 "<th>shares</th>", "<th>schemas</th>", "<td>ml</td>",
                 "<code>SHOW SHARES</code>"):  # fmt: skip
        assert cell in html
    # one result alone (the Python API's verbs return one) reads the same way
    text_one, html_one = _shown(configured, res.result[1])
    assert text_one == shares and "<th>shares</th>" in html_one


def test_long_details_are_cut_with_a_pointer_to_to_pandas() -> None:
    from arcuate.engine.result import StatementResult

    rows = [{"run_id": f"r{i}", "action": "added"} for i in range(120)]
    result = StatementResult("CREATE EXPERIMENT e AS 'p#s.s.t'", "import_experiment",
                             {"runs": 120, "added": 120}, rows=rows)  # fmt: skip
    text = str(result)
    assert "r49" in text and "r50" not in text
    assert "… 70 more rows: .to_pandas() has them all" in text
    assert "70 more rows" in result._repr_html_()
    assert len(result.to_pandas()) == 120


def test_shared_values_cannot_break_out_of_the_rendering() -> None:
    from arcuate.engine.result import StatementResult

    evil = "run\x1b[2J\r\nforged line<script>alert(1)</script>"
    result = StatementResult("DESCRIBE 'p#s.s.t'", "describe_shared", {"kind": evil},
                             rows=[{"run_name": evil, "note": "é ✓"}])  # fmt: skip
    text = str(result)
    assert "\x1b" not in text and "\r" not in text and len(text.splitlines()) == 3
    assert "run\\x1b[2J\\r\\nforged line" in text and "é ✓" in text
    html = result._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
