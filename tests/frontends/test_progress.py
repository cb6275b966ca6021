"""Progress bars: the ``progress`` setting and ``ARCUATE_PROGRESS``; on a terminal, MLflow's
INFO lines stay out of the bar (issue 11 item 11). The notebook bar is shown by the notebook
test (test_notebooks.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import arcuate
from arcuate.config import resolve_settings
from arcuate.errors import ConfigurationError
from tests.conftest import MlflowStore
from tests.frontends.test_secrets import ARCUATE, _in_a_terminal


@pytest.mark.parametrize(
    ("value", "expected"),
    [("on", True), ("1", True), ("TRUE", True), ("off", False), ("no", False), ("auto", None)],
)
def test_arcuate_progress_sets_the_progress_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool | None
) -> None:
    monkeypatch.setenv("ARCUATE_PROGRESS", value)
    assert resolve_settings().progress is expected
    assert resolve_settings(progress=True).progress is True  # an explicit value wins


def test_a_bad_progress_value_lists_the_good_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCUATE_PROGRESS", "loud")
    with pytest.raises(ConfigurationError, match="progress must be on, off or auto, got 'loud'"):
        resolve_settings()


@pytest.fixture
def served(provider: MlflowStore, workdir: Path):  # type: ignore[no-untyped-def]
    """The provider's experiment shared as ml.ml.runs, served on loopback; the profile path."""
    from arcuate.backends.sharing.server import serve_in_thread

    wh = workdir / "wh"
    arcuate.execute(
        "CREATE SHARE ml WITH TABLE ml.runs FROM EXPERIMENT churn",
        tracking_uri=provider.tracking_uri,
        warehouse=str(wh),
        progress=False,
    )
    with serve_in_thread(str(wh / "shares.yaml")) as server:
        arcuate.execute(
            "CREATE RECIPIENT r PROFILE 'r.share'; GRANT SELECT ON SHARE ml TO RECIPIENT r",
            warehouse=str(wh),
            endpoint=server.endpoint,
        )
        yield workdir / "r.share"


def test_mlflow_info_lines_stay_out_of_the_bar_on_a_terminal(served: Path, workdir: Path) -> None:
    # a new sqlite store: MLflow logs INFO lines while it creates its tables, inside the bar
    fresh = f"sqlite:///{workdir / 'fresh' / 'mlflow.db'}"
    (workdir / "fresh").mkdir()
    (workdir / "i.arcsql").write_text(f"CREATE EXPERIMENT churn AS '{served}#ml.ml.runs'")
    code, shown = _in_a_terminal(["run", "i.arcsql", "--tracking-uri", fresh], workdir)
    assert code == 0, shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "importing runs into churn" in plain  # the bar was drawn
    assert "INFO" not in plain and "database" not in plain
    assert "import_experiment: experiment=churn runs=2 added=2" in plain
    assert ARCUATE  # the CLI of this interpreter ran


def test_mlflow_logging_is_restored_after_a_bar(served: Path, recipient_store: MlflowStore) -> None:
    logger = logging.getLogger("mlflow")
    before = logger.level
    (result,) = arcuate.execute(
        f"CREATE EXPERIMENT churn AS '{served}#ml.ml.runs'",
        tracking_uri=recipient_store.tracking_uri,
        progress=True,
    )
    assert result.summary["added"] == 2
    assert logger.level == before
