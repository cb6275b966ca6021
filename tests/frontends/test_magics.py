"""The magics in a real IPython InteractiveShell: wiring, kinds, error rendering."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython

from tests.conftest import MlflowStore


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = start_ipython()
    assert ip is not None
    ip.run_line_magic("load_ext", "arcuate")
    yield ip


@pytest.fixture
def configured(shell: InteractiveShell, provider: MlflowStore, workdir: Path) -> InteractiveShell:
    shell.run_line_magic("config", f"ArcuateMagics.tracking_uri = {provider.tracking_uri!r}")
    shell.run_line_magic("config", f"ArcuateMagics.warehouse = {str(workdir / 'wh')!r}")
    return shell


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
