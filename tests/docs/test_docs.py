"""Every runnable block of README.md and docs/*.md runs here, so the docs cannot drift.

SQL blocks run statement by statement through ``arcuate.execute``, python blocks in one
namespace per document (blocks with magics as cells of a real IPython shell), bash blocks as
commands with this checkout's ``arcuate`` (``arcuate serve`` in the background, then stopped).
What each side has and where it works is in :mod:`tests.docs.world`. A block that is not meant
to run carries ``<!-- not run: reason -->``; an unmarked block the test cannot run fails it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs.blocks import (
    DATA,
    OUTPUT,
    ROOT,
    RUNNABLE,
    Block,
    all_blocks,
    documents,
    to_run,
)
from tests.docs.world import PRESHARE, World, build_provider, make_world, run_block

_DOCS = [p.relative_to(ROOT).as_posix() for p in documents()]


def test_every_block_runs_or_says_why_not() -> None:
    problems = []
    for b in all_blocks():
        if b.not_run is not None:
            if not b.not_run:
                problems.append(f"{b.where}: say why it is not run: <!-- not run: reason -->")
        elif b.lang not in RUNNABLE | DATA | OUTPUT:
            problems.append(
                f"{b.where}: a ```{b.lang} block is not run; write it as sql, python or bash, "
                "or mark it <!-- not run: reason -->"
            )
    assert problems == []
    assert [b.lang for b in to_run("README.md")] == ["sql", "python", "python", "python", "bash"]


def test_data_blocks_parse_and_the_profile_example_has_the_written_fields() -> None:
    from arcuate.backends.sharing.profiles import oauth_profile_text, profile_text

    blocks = [b for b in all_blocks() if b.lang in DATA and b.not_run is None]
    assert blocks
    for b in blocks:
        doc = json.loads(b.text) if b.lang == "json" else yaml.safe_load(b.text)
        assert isinstance(doc, dict), b.where
        if b.lang == "json" and "bearerToken" in doc:
            written = json.loads(profile_text("http://h/delta-sharing", "t", "2026-01-01T00:00Z"))
            assert doc.keys() == written.keys(), b.where
        if b.lang == "json" and "clientSecret" in doc:
            written = json.loads(oauth_profile_text("http://h/delta-sharing", "id", "secret"))
            assert doc.keys() == written.keys(), b.where


def test_explain_output_in_the_docs_is_what_explain_prints() -> None:
    import arcuate

    shown = [b for b in all_blocks() if b.lang in OUTPUT and re.search(r"\n  1\. \w+ ", b.text)]
    assert shown
    for b in shown:
        assert arcuate.explain(b.text.splitlines()[0]) + "\n" == b.text, b.where


@pytest.fixture(scope="session")
def docs_provider(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provider's MLflow store the docs talk about (built once, copied per document)."""
    import shutil

    db = tmp_path_factory.mktemp("docs-provider") / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    build_provider(db)
    return db


def _statements(blocks: list[Block]) -> list[Any]:
    import arcuate

    return [s for b in blocks if b.lang == "sql" for s in arcuate.parse_script(b.text).statements]


@pytest.mark.parametrize("doc", [d for d in _DOCS if to_run(d)])
def test_the_examples_of(
    doc: str, docs_provider: Path, mlflow_template: Path, tmp_path: Path
) -> None:
    from arcuate.syntax import ast

    blocks = to_run(doc)
    statements = _statements(blocks)
    world = make_world(tmp_path, docs_provider, mlflow_template)
    try:
        if not any(isinstance(s, ast.CreateRecipient) for s in statements):
            run_block(world, Block("(README's provider statements)", 0, "sql", PRESHARE, None))
        for block in blocks:
            run_block(world, block)
    finally:
        world.close()
    _check_imported(world, statements, blocks)


def _check_imported(world: World, statements: list[Any], blocks: list[Block]) -> None:
    """What the document imported is in the recipient's store."""
    from arcuate.backends.mlflow.connect import make_client
    from arcuate.syntax import ast

    uri = world.recipient.settings["tracking_uri"]
    client = make_client(uri, uri)
    python = "".join(b.text for b in blocks if b.lang == "python")
    if (
        any(isinstance(s, ast.CreateExperiment) for s in statements)
        or "import_experiments(" in python
    ):
        experiment = client.get_experiment_by_name("churn")
        assert experiment is not None and client.search_runs([experiment.experiment_id])
    if any(isinstance(s, ast.CreateModel) for s in statements):
        assert client.search_model_versions("name = 'churn'")
