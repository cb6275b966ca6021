"""A provider notebook and a recipient notebook, executed headless on a real ipykernel.

The notebooks are built here (nbformat), run by nbclient on a kernel of this interpreter with
this checkout's arcuate, saved, and read back: the assertions are on what a user sees in the
saved .ipynb (results as text and HTML, a progress bar, rendered errors, and never a token).
The share is served from the test process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import arcuate
from tests.conftest import MlflowStore

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(arcuate.__file__).resolve().parent.parent
RAISES = {"tags": ["raises-exception"]}  # nbclient runs on past a cell that may fail


def _kernel(root: Path) -> Any:
    """A kernel manager for this interpreter, importing arcuate from this checkout."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = root / "kernels" / "arcuate-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "arcuate test",
                "language": "python",
                "env": {"PYTHONPATH": str(REPO)},
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
    return KernelManager(kernel_name="arcuate-test", kernel_spec_manager=specs)


def _run(path: Path, cells: list[tuple[str, dict[str, Any]]], cwd: Path) -> dict[str, Any]:
    """Build, execute and save a notebook; return the saved JSON."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata=meta) for src, meta in cells]
    client = nbclient.NotebookClient(
        nb, km=_kernel(path.parent / f"{path.stem}-kernel"), timeout=120,
        resources={"metadata": {"path": str(cwd)}},
    )  # fmt: skip
    client.execute()
    nbformat.write(nb, path)
    saved: dict[str, Any] = json.loads(path.read_text())
    return saved


def _outputs(nb: dict[str, Any], index: int, kind: str) -> list[dict[str, Any]]:
    return [o for o in nb["cells"][index]["outputs"] if o["output_type"] == kind]


def _text(output: dict[str, Any], mime: str = "text/plain") -> str:
    value = output["data"][mime]
    return "".join(value) if isinstance(value, list) else str(value)


def _error(nb: dict[str, Any], index: int) -> tuple[str, str]:
    (err,) = _outputs(nb, index, "error")
    return err["ename"], "\n".join(err["traceback"])


def test_provider_and_recipient_notebooks(
    provider: MlflowStore, recipient_store: MlflowStore, workdir: Path
) -> None:
    from arcuate.backends.sharing.server import serve_in_thread

    wh = workdir / "wh"
    wh.mkdir()
    profile = workdir / "acme.share"
    with serve_in_thread(str(wh / "shares.yaml")) as server:
        sent = _run(workdir / "provider.ipynb", [
            ("%load_ext arcuate", {}),
            (f"%config ArcuateMagics.tracking_uri = {provider.tracking_uri!r}\n"
             f"%config ArcuateMagics.warehouse = {str(wh)!r}\n"
             f"%config ArcuateMagics.endpoint = {server.endpoint!r}", {}),
            ("%%arcuate_export_experiment\n"
             "CREATE SHARE ml WITH TABLE ml.churn_runs FROM EXPERIMENT churn", {}),
            ("%%arcuate_export_model\n"
             "CREATE SHARE ml WITH TABLE ml.churn_model FROM MODEL `churn-model`", {}),
            (f"%%arcuate\nCREATE RECIPIENT acme PROFILE '{profile}';\n"
             "GRANT SELECT ON SHARE ml TO RECIPIENT acme", {}),
            ("%%arcuate --bogus\nSHOW SHARES", RAISES),
            ("%%arcuate\nCREATE RECIPIENT bob SHOW TOKEN", RAISES),
        ], workdir)  # fmt: skip
        got = _run(workdir / "recipient.ipynb", [
            ("%load_ext arcuate", {}),
            (f"%%arcuate --tracking-uri {recipient_store.tracking_uri} --warehouse rwh\n"
             f"CREATE EXPERIMENT churn AS '{profile}#ml.ml.churn_runs';\n"
             f"CREATE MODEL `churn-model` AS '{profile}#ml.ml.churn_model'", {}),
            (f"%%arcuate --tracking-uri {recipient_store.tracking_uri}\n"
             f"CREATE EXPERIMENT other AS SPARK '{profile}#ml.ml.churn_runs'", RAISES),
        ], workdir)  # fmt: skip

    # provider: each export shows its summary as text and HTML
    (runs,) = _outputs(sent, 2, "execute_result")
    assert _text(runs).startswith("export experiment: runs=2 files=2 bytes=10 ")
    assert "<th>runs</th>" in _text(runs, "text/html")
    (model,) = _outputs(sent, 3, "execute_result")
    assert _text(model).startswith("export model: versions=1 ")
    (recipient,) = _outputs(sent, 4, "execute_result")
    assert f"profile_path={profile}" in _text(recipient)
    assert "grant: share=ml recipient=acme granted=True" in _text(recipient)
    # errors are one rendered message each, not a traceback
    name, shown = _error(sent, 5)
    assert name == "ConfigurationError" and "unknown option --bogus on the %%arcuate line" in shown
    name, shown = _error(sent, 6)
    assert name == "ConfigurationError"
    assert "SHOW TOKEN shows the token on a terminal only" in shown
    # recipient: both imports' summaries and details, and the bar's final state
    (imported,) = _outputs(got, 1, "execute_result")
    text, html = _text(imported), _text(imported, "text/html")
    assert "import_experiment: experiment=churn runs=2 added=2 updated=0 unchanged=0" in text
    assert "import_model: model=churn-model versions=1 added=1" in text
    assert "source_run_id" in text and "<th>added</th>" in html and "<th>seconds</th>" in html
    bars = [_text(o) for o in _outputs(got, 1, "display_data")]
    assert any("importing runs into churn" in b and "2/2" in b for b in bars)
    name, shown = _error(got, 2)
    assert name == "PlanError" and "[ARC202]" in shown
    assert "there is no notebook variable `spark`" in shown and "--spark VAR" in shown
    for nb in (sent, got):
        for cell in nb["cells"]:
            for output in cell["outputs"]:
                assert "Traceback (most recent call last)" not in json.dumps(output)
    # no token in any saved output, and the recipient really has the runs
    token = json.loads(profile.read_text())["bearerToken"]
    assert token not in (workdir / "provider.ipynb").read_text()
    assert token not in (workdir / "recipient.ipynb").read_text()
    experiment = recipient_store.client().get_experiment_by_name("churn")
    assert len(recipient_store.client().search_runs([experiment.experiment_id])) == 2
