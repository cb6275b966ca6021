"""Redaction policy (issue 16 item 2): what a rule covers, drop versus keyed hash, the report."""

from __future__ import annotations

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
