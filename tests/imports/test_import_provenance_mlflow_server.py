"""Run provenance against a real ``mlflow server`` (REST tracking, proxied artifacts): a model
table never changes another import's run, and OVERWRITE keeps the runs versions use.

The cases and their sqlite twins are in ``test_import_provenance.py``; here the store is
reached over HTTP, where artifacts are remote (sizes and read-back bytes are compared).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.imports.import_helpers import file_entry, run_row
from tests.imports.test_import_provenance import (
    A,
    Provider,
    _execute,
    _exp_rows,
    _exp_runs,
    _model_rows,
    _provider,
    _run_files,
    _uniq,
    _version_files,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def p1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    yield from _provider(tmp_path_factory.mktemp("provider-1"))


def test_other_share_cannot_change_a_run_on_a_server(
    p1: Provider, mlflow_server: Any, workdir: Path
) -> None:
    tag = _uniq(workdir, "srv")
    a = p1.publish(
        "ml", f"runs_{tag}", _exp_rows([file_entry("model/MLmodel", b"original\n")]), "experiment"
    )
    b = p1.publish("other", f"model_{tag}", _model_rows(b"evil\n"), "model")
    exp, model = f"imported-{tag}", f"m-{tag}"
    _execute(mlflow_server, f"CREATE EXPERIMENT `{exp}` AS '{a}';\nCREATE MODEL `{model}` AS '{b}'")
    (run_a,) = _exp_runs(mlflow_server, exp)
    assert _run_files(mlflow_server, run_a.info.run_id) == {"model/MLmodel": b"original\n"}
    assert _version_files(mlflow_server, model, 1) == {"MLmodel": b"evil\n"}
    (own,) = _exp_runs(mlflow_server, f"models/{model}")
    assert mlflow_server.client().get_model_version(model, "1").run_id == own.info.run_id
    (again,) = _execute(mlflow_server, f"CREATE EXPERIMENT `{exp}` AS '{a}'")
    assert again.summary["unchanged"] == 1


def test_readme_flow_overwrite_keeps_used_runs_on_a_server(
    p1: Provider, mlflow_server: Any, workdir: Path
) -> None:
    tag = _uniq(workdir, "srv")
    files = [file_entry("model/MLmodel", b"same\n")]
    e = p1.publish("ml", f"runs_{tag}", [*_exp_rows(files), run_row("b" * 32)], "experiment")
    m = p1.publish("ml", f"model_{tag}", _model_rows(b"same\n"), "model")
    later = p1.publish("ml", f"later_{tag}", [run_row("c" * 32, name="c")], "experiment")
    name = f"churn-{tag}"
    _execute(mlflow_server, f"CREATE EXPERIMENT `{name}` AS '{e}';\nCREATE MODEL `{name}` AS '{m}'")
    client = mlflow_server.client()
    used = client.get_model_version(name, "1").run_id
    assert client.get_run(used).data.tags["arcuate.source_run_id"] == A
    assert client.get_run(used).info.experiment_id == (
        client.get_experiment_by_name(name).experiment_id
    )  # the experiment's own run, reused
    (result,) = _execute(mlflow_server, f"CREATE EXPERIMENT OVERWRITE `{name}` AS '{later}'")
    assert (result.summary["kept"], result.summary["removed"]) == (1, 1), result.summary
    assert client.get_run(used).info.lifecycle_stage == "active"
    assert _version_files(mlflow_server, name, 1) == {"MLmodel": b"same\n"}
