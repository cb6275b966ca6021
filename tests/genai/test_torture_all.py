"""Issue 14's torture round trip over every GenAI kind together: ONE provider experiment with
the full-size trace fixture, a 10,000-record evaluation dataset and two registered scorers,
plus a prompt with versions 1, 2, 4; shared with CREATE SHARE, served by the embedded sharing
server, imported with CREATE EXPERIMENT / CREATE PROMPT through the real ``delta_sharing``
client into a fresh sqlite store and a real ``mlflow server``; deep compares through MLflow's
public API, a re-import that changes nothing, and an incremental change that arrives alone.

The provider is built once per module (the builders take most of the time), and both tests
run on one worker (``BUILDS`` in tests/server_scopes.py) so it is built once per run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import arcuate
from tests.conftest import make_store
from tests.genai.genai_helpers import build_genai, genai_snapshot, record, store_of
from tests.imports.import_helpers import whole_store
from tests.prompts.prompt_helpers import build_prompt, prompt_snapshot
from tests.traces.test_trace_statements import _import, recipient_snapshot, share
from tests.traces.trace_helpers import build_traces, global_uri, snapshot

#: the issue's torture size; ARCUATE_TORTURE_RECORDS makes a quick local run smaller
RECORDS = int(os.environ.get("ARCUATE_TORTURE_RECORDS", "10000"))

EXPERIMENT = (
    "CREATE SHARE genai WITH TABLE agent FROM EXPERIMENT agent INCLUDING DATASETS, SCORERS, TRACES"
)
PROMPT = "CREATE SHARE prompts WITH TABLE qa_prompt FROM PROMPT qa"


@dataclass
class Provider:
    """The provider's store, what the builders made, the served coordinates."""

    store: Any  # an MlflowStore
    warehouse: Path
    built: dict[str, Any]
    dataset_id: str
    agent: str  # coordinate of the experiment's table
    prompt: str  # coordinate of the prompt's table
    changes: int = 0  # incremental changes made so far (each test makes its own)
    wanted: dict[int, dict[str, Any]] = field(default_factory=dict)  # snapshots per `changes`

    def want(self) -> dict[str, Any]:
        """The provider's side of every compare, read once per state (10,000 records and 201
        traces take seconds to read)."""
        if self.changes not in self.wanted:
            source = snapshot(self.store.tracking_uri, self.built["experiment_id"])
            assert len(source) == 201
            self.wanted[self.changes] = {
                "traces": source,
                "genai": genai_snapshot(self.store, "agent"),
                "prompt": prompt_snapshot(self.store, "qa"),
            }
        return self.wanted[self.changes]


def _export(p: Provider) -> None:
    summary = share(p.store, p.warehouse, EXPERIMENT)
    assert summary["traces"] == 201 and "skipped_traces" not in summary
    assert share(p.store, p.warehouse, PROMPT)["versions"] == 3 + p.changes


@pytest.fixture(scope="module")
def torture_provider(
    mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    """One provider for the module: experiment ``agent`` (traces, dataset, scorers) and prompt
    ``qa``, exported, granted to ``ann`` and served."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    root = tmp_path_factory.mktemp("torture")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow's CWD-relative ./mlruns lands here
        store = make_store(mlflow_template, root / "provider")
        built = build_traces(store.tracking_uri, traces=200, wide=1000)
        dataset_id = build_genai(store, built["experiment_id"], records=RECORDS)
        build_prompt(store)
        p = Provider(store, root / "wh", built, dataset_id, "", "")
        _export(p)
        catalog = LocalShareCatalog(p.warehouse / "shares.yaml")
        _record, token = catalog.create_recipient("ann")
        catalog.grant("genai", "ann")
        catalog.grant("prompts", "ann")
        handle = serve_in_thread(str(p.warehouse / "shares.yaml"))
        try:
            assert token is not None
            profile = write_profile(root / "ann.share", handle.endpoint, token)
            p.agent = f"{profile}#genai.default.agent"
            p.prompt = f"{profile}#prompts.default.qa_prompt"
            yield p
        finally:
            handle.stop()


def _import_prompt(store: Any, coordinate: str, name: str) -> dict[str, Any]:
    (result,) = arcuate.execute(
        f"CREATE PROMPT `{name}` AS '{coordinate}'",
        tracking_uri=store.tracking_uri,
        registry_uri=store.registry_uri,
        progress=False,
    )
    return dict(result.summary)


def _import_all(p: Provider, store: Any, names: tuple[str, str]) -> dict[str, Any]:
    """Both imports; the experiment's summary with the prompt's ``added``/``unchanged``."""
    out = _import(store, p.agent, names[0])
    prompt = _import_prompt(store, p.prompt, names[1])
    return {**out, "prompt_added": prompt["added"], "prompt_unchanged": prompt["unchanged"]}


def _counts(summary: dict[str, Any]) -> tuple[int, ...]:
    keys = ("traces_added", "assessments_added", "eval_records_written", "scorers_added",
            "prompt_added")  # fmt: skip
    return tuple(summary[k] for k in keys)


def _compare(p: Provider, store: Any, names: tuple[str, str]) -> None:
    """Every kind deep-equal through MLflow's public API (ids kept, links mapped)."""
    want = p.want()
    assert recipient_snapshot(store, names[0]) == want["traces"]
    assert genai_snapshot(store, names[0]) == want["genai"]
    assert prompt_snapshot(store, names[1]) == want["prompt"]


def _change(p: Provider) -> None:
    """One new feedback on a trace, one new dataset record, one new prompt version with the
    ``candidate`` alias moved to it; then the re-export."""
    import mlflow

    p.changes += 1
    with global_uri(p.store.tracking_uri):
        mlflow.log_feedback(trace_id=p.built["trace_ids"][1], name=f"late-{p.changes}",
                            value="ok")  # fmt: skip
    store_of(p.store).upsert_dataset_records(p.dataset_id, [record(RECORDS + p.changes)])
    client = p.store.client()
    version = client.create_prompt_version("qa", f"v{p.changes} {{{{q}}}}", description="later")
    client.set_prompt_alias("qa", "candidate", version.version)
    _export(p)


def _content(store: Any) -> dict[str, Any]:
    """The whole store through MLflow's API (the import's lease rewrites the database file's
    bytes, so files are not compared)."""
    return whole_store(store)


def _trip(p: Provider, store: Any, compare_stores: bool) -> None:
    suffix = uuid.uuid4().hex[:8]  # the mlflow server is shared by the session
    names = (f"agent-{suffix}", f"qa-{suffix}")
    first = _import_all(p, store, names)
    assert _counts(first) == (201, 4 + p.changes, RECORDS + p.changes, 3, 3 + p.changes)
    _compare(p, store, names)

    before = _content(store) if compare_stores else None
    again = _import_all(p, store, names)
    assert _counts(again) == (0, 0, 0, 0, 0) and again["prompt_unchanged"] == 3 + p.changes
    if compare_stores:
        assert _content(store) == before
    # on the shared server the re-import's zero counters stand for the whole-store compare;
    # the compare after the incremental change below reads every kind again either way

    _change(p)
    later = _import_all(p, store, names)
    assert _counts(later) == (0, 1, 1, 0, 1)
    _compare(p, store, names)
    aliases = store.client().get_prompt_version(names[1], 4 + p.changes).aliases
    assert aliases == ["candidate"]


@pytest.mark.slow
def test_torture_all_into_sqlite(torture_provider: Provider, recipient_store: Any) -> None:
    _trip(torture_provider, recipient_store, compare_stores=True)


@pytest.mark.slow
@pytest.mark.server
def test_torture_all_into_mlflow_server(torture_provider: Provider, mlflow_server: Any) -> None:
    """The same into the session's real ``mlflow server``: re-import checked by the summaries'
    counters (the server is shared, so a whole-store snapshot would cost the session's data)."""
    _trip(torture_provider, mlflow_server, compare_stores=False)
