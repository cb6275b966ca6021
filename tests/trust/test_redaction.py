"""Redaction policy (issue 16 item 2): what a rule covers, drop versus keyed hash, the report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arcuate.config import resolve_settings
from arcuate.errors import ArcuateSyntaxError, ConfigurationError, PlanError
from arcuate.format.redaction import Policy, RedactionPatternError, Report, Rule, resolve_key
from arcuate.plan.capabilities import Capabilities
from arcuate.plan.ops import ExportExperiment
from arcuate.plan.planner import plan
from arcuate.syntax import ast
from arcuate.syntax.parser import parse
from arcuate.syntax.unparse import unparse

SECRET = "sk-live-0123456789abcdef"
KEY = b"provider-redaction-key"


def test_params_matching_the_key_are_dropped_and_reported() -> None:
    policy = Policy((Rule.make("params", "(?i)token|password"),))
    report = Report()
    kept, redacted = policy.apply("params", {"api_token": SECRET, "lr": "0.1"}, report)
    assert kept == {"lr": "0.1"}
    assert redacted == ["api_token"]
    assert report.rows() == [{"rule": "params MATCHING '(?i)token|password'", "redacted": 1}]


def test_values_are_not_matched() -> None:
    # the pattern is applied to keys only: a value that looks like a key is kept
    policy = Policy((Rule.make("tags", "secret"),))
    kept, redacted = policy.apply("tags", {"note": "secret"}, Report())
    assert kept == {"note": "secret"} and redacted == []


def test_hash_keeps_equal_values_comparable_without_revealing_them() -> None:
    policy = Policy((Rule.make("params", "token", "hash"),), key=KEY)
    kept, _ = policy.apply("params", {"a_token": SECRET, "b_token": SECRET, "c_token": "x"}, Report())
    assert kept["a_token"] == kept["b_token"] != kept["c_token"]
    assert all(SECRET not in v and KEY.decode() not in v for v in kept.values())
    assert kept["a_token"].startswith("hmac-sha256:")
    other = Policy((Rule.make("params", "token", "hash"),), key=b"another key")
    assert other.apply("params", {"a_token": SECRET}, Report())[0]["a_token"] != kept["a_token"]


def test_hash_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        Policy((Rule.make("tags", "x", "hash"),))
    assert info.value.code == "ARC320" and "ARCUATE_REDACTION_KEY" in str(info.value)


def test_a_bad_regex_names_the_position() -> None:
    with pytest.raises(RedactionPatternError) as info:
        Rule.make("params", "ab(c")
    assert info.value.offset == 2
    assert "ab(c" in str(info.value)


def test_artifacts_match_a_glob_and_cannot_hash() -> None:
    policy = Policy((Rule.make("artifacts", "secrets/*"),))
    report = Report()
    assert not policy.keep_artifact("secrets/creds.txt", report)
    assert policy.keep_artifact("model/MLmodel", report)
    assert report.rows() == [{"rule": "ARTIFACTS MATCHING 'secrets/*'", "redacted": 1}]
    with pytest.raises(ValueError, match="cannot HASH"):
        Rule.make("artifacts", "*.key", "hash")


def test_dataset_sources_dropped_or_hashed() -> None:
    entry = {"name": "d", "digest": "abc123", "source": f"s3://bucket-{SECRET}/data.csv"}
    dropped = Policy((Rule.make("datasets"),)).dataset(entry, Report())
    assert dropped is not None and (dropped["source"], dropped["digest"]) == ("redacted", "redacted")
    report = Report()
    hashed = Policy((Rule.make("datasets", action="hash"),), key=KEY).dataset(entry, report)
    assert hashed is not None and SECRET not in hashed["source"]
    assert hashed["source"].startswith("hmac-sha256:")
    # MLflow holds a digest in 36 characters: the hash is cut to fit, still keyed
    assert len(hashed["digest"]) == 36 and hashed["digest"].startswith("hmac-sha256:")
    assert report.rows() == [{"rule": "DATASETS SOURCES HASH", "redacted": 1}]
    assert Policy().dataset(entry, Report()) is None


def test_explain_shows_the_policy_never_the_key() -> None:
    policy = Policy(
        (Rule.make("params", "token", "hash"), Rule.make("artifacts", "*.pem"), Rule.make("datasets")),
        key=KEY,
    )
    text = policy.explain()
    assert text == "REDACT params MATCHING 'token' HASH, ARTIFACTS MATCHING '*.pem', DATASETS SOURCES"
    assert KEY.decode() not in text and KEY.decode() not in repr(policy)


def test_key_from_setting_else_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCUATE_REDACTION_KEY", raising=False)
    assert resolve_settings().redaction_key is None
    monkeypatch.setenv("ARCUATE_REDACTION_KEY", "env-key")
    settings = resolve_settings()
    assert resolve_key(settings.redaction_key) == b"env-key"
    assert "env-key" not in repr(settings)  # a secret: never in a repr
    assert resolve_key(resolve_settings(redaction_key="setting-key").redaction_key) == (
        b"setting-key"
    )


def test_the_clause_parses_and_round_trips() -> None:
    text = (
        "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT e REDACT params MATCHING 'token' HASH,"
        " ARTIFACTS MATCHING 'secrets/*', DATASETS SOURCES"
    )
    node = parse(text)
    assert isinstance(node, ast.CreateShare)
    assert [(r.target, r.pattern, r.hash) for r in node.redact] == [
        ("params", "token", True),
        ("artifacts", "secrets/*", False),
        ("datasets", None, False),
    ]
    assert unparse(node) == text


def test_a_regex_that_does_not_compile_points_at_it() -> None:
    text = "CREATE SHARE s WITH TABLE t FROM EXPERIMENT e REDACT params MATCHING 'ab(c'"
    with pytest.raises(ArcuateSyntaxError) as info:
        parse(text)
    assert info.value.col == text.index("(") + 1
    assert "does not compile" in info.value.message


def test_hash_without_a_key_is_refused_before_anything_runs() -> None:
    text = "CREATE SHARE s WITH TABLE t FROM EXPERIMENT e REDACT params MATCHING 'x', tags MATCHING 'y' HASH"
    with pytest.raises(PlanError) as info:
        plan(parse(text), Capabilities(), text=text)
    assert info.value.code == "ARC208"
    assert info.value.col == text.index("tags") + 1
    assert "redaction_key" in str(info.value.hint)
    planned = plan(parse(text), Capabilities(redaction_key=True), text=text)
    step = planned.steps[0]
    assert isinstance(step, ExportExperiment)
    assert [r.describe() for r in step.redact] == ["params MATCHING 'x'", "tags MATCHING 'y' HASH"]


def test_explain_without_a_key_shows_a_note() -> None:
    text = "EXPLAIN CREATE SHARE s WITH TABLE t FROM MODEL m REDACT DATASETS SOURCES HASH"
    planned = plan(parse(text), Capabilities(), text=text)
    assert any("[ARC208]" in note for note in planned.notes)
    assert "before rows are built, REDACT DATASETS SOURCES HASH" in planned.steps[0].describe()


def test_a_prompt_cannot_be_redacted() -> None:
    text = "CREATE SHARE s WITH TABLE t FROM PROMPT p REDACT tags MATCHING 'x'"
    with pytest.raises(PlanError) as info:
        plan(parse(text), Capabilities(), text=text)
    assert info.value.code == "ARC209"


def test_the_redactor_covers_every_place_of_a_run_record() -> None:
    """Plain records (the public-API source's shape: metric points as a list)."""
    from arcuate.format.files import FileRef
    from arcuate.format.records import ColumnarList
    from arcuate.format.redactor import Marks, Redactor
    from arcuate.format.schema import SCHEMA

    policy = Policy(
        (Rule.make("params", "token"), Rule.make("tags", "^secret", "hash"),
         Rule.make("artifacts", "*.pem"), Rule.make("datasets", action="hash")),
        key=KEY,
    )  # fmt: skip
    redactor = Redactor(policy)
    kv = [{"key": "api_token", "value": SECRET}, {"key": "lr", "value": "0.1"}]
    run = {
        "run_id": "r1",
        "params": kv,
        "tags": [{"key": "secret.x", "value": SECRET}, {"key": "stage", "value": "dev"}],
        "inputs": [{"name": "d", "digest": "abc", "source": SECRET, "tags": []}],
        "metrics": [{"key": "acc", "dataset_name": "d", "dataset_digest": "abc"}],
        "logged_models": [{"model_id": "m-1", "params": kv, "tags": []}],
    }
    marks = Marks()
    out = redactor.run(run, marks)
    refs = [FileRef("artifacts", p, 1, lambda: None) for p in ("a/key.pem", "ok.txt")]  # type: ignore[arg-type,return-value]
    kept = [f.path for f in redactor.files(refs, out, marks)]
    assert kept == ["ok.txt"]
    assert [p["key"] for p in out["params"]] == ["lr"]
    assert out["logged_models"][0]["params"] == [{"key": "lr", "value": "0.1"}]
    digest = out["inputs"][0]["digest"]
    assert out["metrics"][0]["dataset_digest"] == digest != "abc"
    assert SECRET not in repr(out)
    assert run["params"] == kv and run["tags"][0]["value"] == SECRET  # the source's record kept
    tags = {t["key"]: t["value"] for t in out["tags"]}
    assert json.loads(tags["arcuate.redacted"]) == {
        "params": ["api_token"], "tags": ["secret.x"], "datasets": 1, "artifacts": 1,
    }  # fmt: skip
    # metric points held column-wise (the SQL source) are rewritten the same way
    point = {"key": "acc", "value": 1.0, "step": 0, "timestamp": None, "model_id": None,
             "dataset_name": "d", "dataset_digest": "abc"}  # fmt: skip
    points_type = SCHEMA.field("run").type.field("metrics").type.value_type
    import pyarrow as pa

    columnar = ColumnarList(pa.array([point], type=points_type))
    again = Redactor(policy).run({**run, "metrics": columnar}, Marks())
    assert isinstance(again["metrics"], ColumnarList)
    assert again["metrics"][0]["dataset_digest"] == digest


# -- the export, end to end (issue 16 "done when") -------------------------------------------
PARAM_SECRET = "sk-live-PARAM-5e2d1c0b9a"
LM_PARAM_SECRET = "sk-live-LOGGED-MODEL-77aa"
TAG_SECRET = "db-password-hunter2-TAG-8c7d"
TAG_SECRET_2 = "db-password-swordfish-TAG-9e8f"
EXP_TAG_SECRET = "team-key-EXP-3b4c5d"
MODEL_TAG_SECRET = "owner-MODEL-TAG-1f2e3d"
SOURCE_SECRET = "acme-private-SOURCE-6a5b4c"
DIGEST_SECRET = "dgst-DIGEST-0d1e2f"
FILE_SECRET = "-----BEGIN KEY----- FILE-4d3c2b1a"
MODEL_FILE_SECRET = "model-FILE-SECRET-2c1b0a"
LEAKED_PATH = "secrets/creds.txt"
EXPORT_KEY = "provider-key-KEY-9f8e7d6c"
#: every value that must not leave the provider (the hashed tag values travel as HMACs)
SECRETS = (
    PARAM_SECRET, LM_PARAM_SECRET, TAG_SECRET, TAG_SECRET_2, EXP_TAG_SECRET, MODEL_TAG_SECRET,
    SOURCE_SECRET, DIGEST_SECRET, FILE_SECRET, MODEL_FILE_SECRET, LEAKED_PATH, EXPORT_KEY,
)  # fmt: skip
POLICY = (
    "REDACT params MATCHING '(?i)token|password', tags MATCHING '^secret\\.' HASH,"
    " ARTIFACTS MATCHING 'secrets/*', DATASETS SOURCES"
)
ARCUATE = str(Path(sys.executable).parent / "arcuate")


def _dataset(digest: str, source: str) -> Any:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    data = Dataset("customers", digest, "s3", json.dumps({"uri": source}))
    return DatasetInput(data, [InputTag("mlflow.data.context", "training")])


def _build(store: Any, root: Path) -> dict[str, str]:
    """Experiment ``secrets`` (3 runs: secrets in params, tags, a dataset input, artifacts, a
    logged model and an experiment tag) and model ``vault`` (version 1 from run a)."""
    from mlflow.entities import LoggedModelOutput, Metric, Param, RunTag

    client = store.client()
    eid = client.create_experiment(
        "secrets",
        artifact_location=str(root / "mlruns"),
        tags={"secret.team": EXP_TAG_SECRET, "team": "ml"},
    )
    ids: dict[str, str] = {}
    for name, tag in (("a", TAG_SECRET), ("b", TAG_SECRET), ("c", TAG_SECRET_2)):
        rid = client.create_run(eid, run_name=name).info.run_id
        ids[name] = rid
        client.log_batch(
            rid,
            params=[Param("api_token", PARAM_SECRET), Param("db_Password", PARAM_SECRET),
                    Param("lr", "0.1")],
            tags=[RunTag("secret.db_url", tag), RunTag("stage", "train")],
        )  # fmt: skip
        client.log_inputs(rid, [_dataset(DIGEST_SECRET, f"s3://{SOURCE_SECRET}/customers.csv")])
        client.log_text(rid, FILE_SECRET, LEAKED_PATH)
        client.log_text(rid, "fine", "notes/readme.txt")
    lm = client.create_logged_model(
        eid, name="model", source_run_id=ids["a"], params={"auth_token": LM_PARAM_SECRET},
        tags={"secret.signing": TAG_SECRET, "flavor": "none"},
    )  # fmt: skip
    mdir = root / "model-src"
    (mdir / "secrets").mkdir(parents=True)
    (mdir / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 3.11.7\n")
    (mdir / "secrets" / "model.key").write_text(MODEL_FILE_SECRET)
    client.log_model_artifacts(lm.model_id, str(mdir))
    client.finalize_logged_model(lm.model_id, "READY")
    client.log_outputs(ids["a"], [LoggedModelOutput(lm.model_id, 1)])
    point = Metric("acc", 0.9, 1_700_000_000_000, 1, model_id=lm.model_id,
                   dataset_name="customers", dataset_digest=DIGEST_SECRET)  # fmt: skip
    client.log_batch(ids["a"], metrics=[point])
    for rid in ids.values():
        client.set_terminated(rid, "FINISHED")
    client.create_registered_model("vault", tags={"secret.owner": MODEL_TAG_SECRET})
    client.create_model_version(
        "vault", f"models:/{lm.model_id}", run_id=ids["a"], tags={"secret.v": MODEL_TAG_SECRET}
    )
    return ids


def _strings(value: Any) -> Iterator[str | bytes]:
    """Every string and bytes value inside a row (structs and lists walked)."""
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _leaks(root: Path) -> list[str]:
    """Where under ``root`` a secret is found: raw bytes of every file, every string value of
    every Parquet file (pages are compressed), every line of the Delta log."""
    found = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        raw = path.read_bytes()
        found += [f"{path}: {s!r} (raw bytes)" for s in SECRETS if s.encode() in raw]
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for value in _strings(pq.read_table(path).to_pylist()):
                text = value if isinstance(value, str) else value.decode("utf-8", "replace")
                found += [f"{path}: {s!r} (Parquet value)" for s in SECRETS if s in text]
        if path.parent.name == "_delta_log" and path.suffix == ".json":
            for line in raw.decode().splitlines():
                entry = json.loads(line)
                stats = entry.get("add", {}).get("stats")  # min/max values of columns
                text = line + (stats or "")
                found += [f"{path}: {s!r} (Delta log)" for s in SECRETS if s in text]
    return found


def _cli(*args: str, cwd: Path, key: str | None = EXPORT_KEY, stdin: str = "") -> Any:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    env.pop("ARCUATE_REDACTION_KEY", None)
    if key is not None:
        env["ARCUATE_REDACTION_KEY"] = key
    done = subprocess.run(
        [ARCUATE, *args], cwd=cwd, capture_output=True, text=True, input=stdin, env=env,
        timeout=300,
    )  # fmt: skip
    assert EXPORT_KEY not in done.stdout + done.stderr  # never printed, also not in an error
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(cwd: Path, port: int) -> Iterator[None]:
    """``arcuate serve`` on ``port`` (its own process group), stopped at the end."""
    proc = subprocess.Popen(
        [ARCUATE, "serve", "--warehouse", "wh", "--port", str(port)], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "serving Delta Sharing" in proc.stdout.readline()
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert EXPORT_KEY not in err


@pytest.fixture
def exported(
    mlflow_store: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], Any, int]:
    """The experiment and the model exported with the REDACT policy by ``arcuate run``, a
    recipient ``ann`` granted (its profile names ``port``); (run ids, the run's output, port)."""
    from arcuate.backends.mlflow.connect import spark_guard

    with spark_guard(), monkeypatch.context() as mp:
        # create_model_version reads a models:/ source through MLflow's global URIs
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_store.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", mlflow_store.registry_uri)
        ids = _build(mlflow_store, workdir)
    port = _free_port()
    script = (
        f"CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT secrets {POLICY};\n"
        f"CREATE SHARE ml WITH TABLE vault FROM MODEL vault {POLICY};\n"
        "CREATE RECIPIENT ann; GRANT SELECT ON SHARE ml TO RECIPIENT ann"
    )
    uri = mlflow_store.tracking_uri
    done = _cli(
        "run", "-", "--format", "json", "--tracking-uri", uri, "--warehouse", "wh",
        "--endpoint", f"http://127.0.0.1:{port}/delta-sharing", cwd=workdir, stdin=script,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return ids, done, port


def test_no_secret_reaches_any_file_of_the_table(exported: tuple[Any, Any, int], workdir: Path) -> None:
    _ids, done, _port = exported
    assert _leaks(workdir / "wh") == []  # both tables, their logs and the catalog file
    assert (workdir / "wh" / "shares.yaml").is_file()
    experiment, model = (json.loads(line) for line in done.stdout.splitlines()[:2])
    # the result lists what each rule covered: 3 runs x 2 params + the logged model's token
    assert {d["rule"]: d["redacted"] for d in experiment["details"]} == {
        "params MATCHING '(?i)token|password'": 7,
        "tags MATCHING '^secret\\.' HASH": 5,  # 3 runs, the logged model, the experiment
        "ARTIFACTS MATCHING 'secrets/*'": 4,  # 3 runs' creds.txt, the logged model's key
        "DATASETS SOURCES": 3,
    }
    assert experiment["summary"]["redacted"] == 19
    by_rule = {d["rule"]: d["redacted"] for d in model["details"]}
    assert by_rule["ARTIFACTS MATCHING 'secrets/*'"] == 1  # the version's model.key
    # the version, its model, its run, the run's logged model, the run's experiment
    assert by_rule["tags MATCHING '^secret\\.' HASH"] == 5


def test_the_scan_finds_every_secret_of_an_export_without_redact(
    exported: tuple[Any, Any, int], mlflow_store: Any, workdir: Path
) -> None:
    """The scan above is not vacuous: without REDACT each secret is found in the table."""
    import arcuate

    for source in ("EXPERIMENT secrets", "MODEL vault"):
        arcuate.execute(
            f"CREATE SHARE plain WITH TABLE t{len(source)} FROM {source}",
            tracking_uri=mlflow_store.tracking_uri, warehouse="plain", progress=False,
        )  # fmt: skip
    found = "\n".join(_leaks(workdir / "plain"))
    for secret in SECRETS:
        if secret != EXPORT_KEY:
            assert repr(secret) in found
    assert "(Parquet value)" in found


def _rows(location: Path) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    rows: list[dict[str, Any]] = DeltaTable(str(location)).to_pyarrow_table().to_pylist()
    return rows


def test_hash_keeps_equal_values_equal_and_the_rows_say_what_was_redacted(
    exported: tuple[dict[str, str], Any, int], workdir: Path
) -> None:
    ids, _done, _port = exported
    runs = {r["key"]: r["run"] for r in _rows(workdir / "wh" / "runs") if r["kind"] == "run"}
    tags = {k: {t["key"]: t["value"] for t in run["tags"]} for k, run in runs.items()}
    a, b, c = (tags[ids[n]] for n in "abc")
    assert a["secret.db_url"] == b["secret.db_url"] != c["secret.db_url"]
    assert a["secret.db_url"].startswith("hmac-sha256:")
    marker = json.loads(a["arcuate.redacted"])
    assert marker == {
        "params": ["api_token", "auth_token", "db_Password"],
        "tags": ["secret.db_url", "secret.signing"],
        "experiment_tags": ["secret.team"],
        "datasets": 1,
        "artifacts": 2,
    }
    run_a = runs[ids["a"]]
    assert {p["key"] for p in run_a["params"]} == {"lr"}
    (dataset,) = run_a["inputs"]
    assert (dataset["source"], dataset["digest"]) == ("redacted", "redacted")
    (point,) = [m for m in run_a["metrics"] if m["dataset_name"]]
    assert point["dataset_digest"] == "redacted"  # the link to the input still holds


@pytest.mark.parametrize("import_path", ["api", "auto"])
def test_a_recipient_receives_it_redacted_and_marked(
    exported: tuple[dict[str, str], Any, int],
    workdir: Path,
    recipient_store: Any,
    import_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids, _done, port = exported
    coordinate = "wh/profiles/ann.share#ml.default.runs"
    script = (
        f"DESCRIBE '{coordinate}'; CREATE EXPERIMENT imported AS PANDAS '{coordinate}';"
        f"CREATE MODEL vault AS PANDAS '{coordinate.replace('.runs', '.vault')}'"
    )
    monkeypatch.setenv("ARCUATE_IMPORT_PATH", import_path)  # the public API, or bulk SQL
    with _serving(workdir, port):
        done = _cli(
            "run", "-", "--format", "json", "--tracking-uri", recipient_store.tracking_uri,
            cwd=workdir, key=None, stdin=script,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout.splitlines()[0])
    assert described["summary"]["redacted_records"] == 3
    shown = {d["key"]: d["redacted"] for d in described["details"]}
    assert json.loads(shown[ids["c"]])["params"] == ["api_token", "db_Password"]
    client = recipient_store.client()
    exp = client.get_experiment_by_name("imported")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 3
    for run in runs:
        assert set(run.data.params) == {"lr"}
        assert run.data.tags["secret.db_url"].startswith("hmac-sha256:")
        assert json.loads(run.data.tags["arcuate.redacted"])["artifacts"] >= 1
        (found,) = run.inputs.dataset_inputs
        assert found.dataset.source == "redacted"
        listed = [f.path for f in client.list_artifacts(run.info.run_id)]
        assert listed == ["notes"]
    version = client.get_model_version("vault", "1")
    assert json.loads(version.tags["arcuate.redacted"])["artifacts"] == 1
    assert version.tags["secret.v"].startswith("hmac-sha256:")
    assert _leaks(Path(recipient_store.root)) == []  # nothing secret arrived anywhere


def test_hash_needs_a_key_and_the_key_is_never_shown(mlflow_store: Any, workdir: Path) -> None:
    import arcuate

    statement = "CREATE SHARE ml WITH TABLE t FROM EXPERIMENT e REDACT tags MATCHING 'x' HASH"
    done = _cli("run", "-", "--tracking-uri", mlflow_store.tracking_uri, "--warehouse", "wh",
                cwd=workdir, key=None, stdin=statement)  # fmt: skip
    assert done.returncode == 1 and "[ARC208]" in done.stderr
    # with a key, a statement that fails does not show it (nor does its result or the settings)
    with pytest.raises(Exception) as info:
        arcuate.execute(
            statement.replace("FROM EXPERIMENT e", "FROM EXPERIMENT missing"),
            tracking_uri=mlflow_store.tracking_uri, warehouse="wh", redaction_key=EXPORT_KEY,
            progress=False,
        )  # fmt: skip
    shown = str(info.value) + "".join(getattr(info.value, "__notes__", [])) + repr(info.value)
    assert EXPORT_KEY not in shown
    assert not (workdir / "wh").exists() or _leaks(workdir / "wh") == []
