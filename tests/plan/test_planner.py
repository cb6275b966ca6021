"""Planning is pure: EXPLAIN snapshots, plan-time errors, and the import layering rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import arcuate
from arcuate.engine.context import capabilities
from arcuate.errors import PlanError
from arcuate.plan import ops
from arcuate.plan.capabilities import Capabilities
from arcuate.plan.explain import explain
from arcuate.plan.planner import plan
from arcuate.syntax.parser import parse, parse_script

SNAPSHOTS = Path(__file__).parent / "snapshots"

CASES = {
    "export_experiment": "CREATE SHARE ml WITH TABLE ml.churn_runs FROM EXPERIMENT '/Users/ana@corp.com/churn' WHERE metrics.auc > 0.8",
    "export_model": "CREATE SHARE ml WITH TABLE churn_model FROM MODEL churn VERSION 1, 3",
    "export_model_alias": "CREATE SHARE ml WITH TABLE churn_model FROM MODEL churn ALIAS champion",
    "import_experiment": "CREATE OR REPLACE EXPERIMENT churn AS 'provider.share#ml.default.churn_runs'",
    "import_model": "CREATE MODEL churn AS PANDAS 'provider.share#ml.default.churn_model'",
    "describe": "DESCRIBE 'provider.share#ml.default.churn_runs'",
    "create_recipient": "CREATE RECIPIENT acme EXPIRES IN 90 DAYS SHOW TOKEN",
    "grant": "GRANT SELECT ON SHARE ml TO RECIPIENT acme",
    "show_provider": "SHOW SHARES IN PROVIDER 'acme.share'",
    "create_recipient_oauth": "CREATE RECIPIENT acme USING OAUTH ACCESS TOKEN LIFETIME 30 MINUTES",
    "create_recipient_link": "CREATE RECIPIENT acme EXPIRES IN 90 DAYS ACTIVATION LINK",
    "rotate_token_grace": "ALTER RECIPIENT acme ROTATE TOKEN KEEP OLD FOR 10 MINUTES",
    "rotate_token_link": "ALTER RECIPIENT acme ROTATE TOKEN ACTIVATION LINK VALID FOR 2 DAYS",
    "set_ip_access_list": "ALTER RECIPIENT acme SET IP ACCESS LIST ('10.0.0.0/8', '::ffff:192.0.2.0/120', '2001:db8::/32')",
    "set_rate_limit": "ALTER RECIPIENT acme SET RATE LIMIT 100 REQUESTS PER MINUTE",
    "show_access_log": "SHOW ACCESS LOG FOR RECIPIENT acme ON SHARE ml SINCE '2026-01-31' LIMIT 20",
    "show_recipient_usage": "SHOW RECIPIENT USAGE SINCE '2026-01-31T12:00:00+02:00'",
    # issue 14: prompts
    "export_prompt": "CREATE SHARE genai WITH TABLE qa_prompt FROM PROMPT qa VERSION 1, 4",
    "export_prompt_alias": "CREATE SHARE genai WITH TABLE qa_prompt FROM PROMPT qa ALIAS production",
    "import_prompt": "CREATE PROMPT OVERWRITE qa AS 'provider.share#genai.default.qa_prompt'",
    # issue 14: evaluation datasets and scorers
    "export_experiment_datasets_scorers": "CREATE SHARE genai WITH TABLE agent FROM EXPERIMENT agent WHERE params.lr = '0.1' INCLUDING SCORERS, DATASETS",
    # issue 16: redaction before export
    "export_experiment_redact": "CREATE SHARE ml WITH TABLE runs FROM EXPERIMENT churn REDACT params MATCHING '(?i)token|password', ARTIFACTS MATCHING 'secrets/*', DATASETS SOURCES",
    # HASH with no key configured: EXPLAIN shows the plan and a note
    "export_model_redact": "EXPLAIN CREATE SHARE ml WITH TABLE churn_model FROM MODEL churn VERSION 1 REDACT tags MATCHING '^secret\\.' HASH, DATASETS SOURCES HASH",
    # issue 14: traces
    "export_experiment_traces": "CREATE SHARE genai WITH TABLE agent FROM EXPERIMENT agent INCLUDING TRACES WHERE trace.status = 'OK' AND tags.team = 'ml'",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_matches_snapshot(name: str, request: pytest.FixtureRequest) -> None:
    text = explain(plan(parse(CASES[name])))
    snap = SNAPSHOTS / f"{name}.txt"
    if not snap.exists():  # first run writes the snapshot; review it in the diff
        snap.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == snap.read_text(encoding="utf-8")


def test_recipient_commands_carry_the_credential_options() -> None:
    from arcuate.backends.sharing import credentials

    (create,) = plan(parse(CASES["create_recipient_oauth"])).steps
    assert isinstance(create, ops.CatalogCommand)
    assert (create.oauth, create.access_token_seconds, create.activation_link) == (True, 1800, False)
    (rotate,) = plan(parse(CASES["rotate_token_link"])).steps
    assert isinstance(rotate, ops.CatalogCommand)
    assert (rotate.keep_old_seconds, rotate.activation_link, rotate.link_seconds) == (
        None,
        True,
        172800,
    )
    # EXPLAIN names the defaults the catalog applies (the planner imports no backend)
    assert credentials.DEFAULT_ACCESS_TOKEN_SECONDS == 3600
    assert "access tokens last 1 hour" in explain(plan(parse("CREATE RECIPIENT a USING OAUTH")))
    assert credentials.DEFAULT_ACTIVATION_SECONDS == 7 * 86400
    assert "(valid 7 days)" in explain(plan(parse("CREATE RECIPIENT a ACTIVATION LINK")))


def test_export_plan_is_read_write_share() -> None:
    p = plan(parse(CASES["export_experiment"]))
    assert [type(s) for s in p.steps] == [ops.ExportExperiment, ops.WriteTable, ops.AddToShare]
    read, write, share = p.steps
    assert isinstance(read, ops.ExportExperiment) and read.filter == "metrics.auc > 0.8"
    assert isinstance(write, ops.WriteTable) and write.table == ("ml", "churn_runs")
    assert isinstance(share, ops.AddToShare) and (share.schema, share.table) == ("ml", "churn_runs")


def test_as_spark_without_a_session_is_a_plan_error_at_the_statement() -> None:
    text = "SHOW SHARES;\nCREATE MODEL m AS SPARK 'p#a.b.c'"
    script = parse_script(text)
    with pytest.raises(PlanError) as info:
        plan(script.statements[1], Capabilities(), text=text)
    assert info.value.line == 2 and info.value.code == "ARC202"
    assert "pass spark=<SparkSession>" in str(info.value)
    assert plan(script.statements[1], Capabilities(has_spark=True)).steps[0] == ops.ReadShare(
        "p#a.b.c", "spark"
    )


def test_unshareable_names_are_rejected_before_anything_runs() -> None:
    with pytest.raises(PlanError, match="cannot be shared"):
        plan(parse("CREATE SHARE `my share` WITH TABLE t FROM MODEL m"))
    with pytest.raises(PlanError, match="cannot be shared"):
        plan(parse("CREATE SHARE s WITH TABLE `a.b` FROM MODEL m"))


def test_explain_statement_runs_nothing(tmp_path: Path) -> None:
    # No MLflow store, no warehouse, no catalog exists: EXPLAIN must not need any.
    results = arcuate.execute(
        "EXPLAIN CREATE SHARE s WITH TABLE t FROM EXPERIMENT missing",
        tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}",
        warehouse=str(tmp_path / "wh"),
    )
    assert results[0].action == "explain"
    assert "ExportExperiment" in str(results[0])
    assert list(tmp_path.iterdir()) == []
    assert results[0].to_pandas()["operator"].tolist() == [
        "ExportExperiment",
        "WriteTable",
        "AddToShare",
    ]


def test_a_bad_statement_late_in_a_script_runs_nothing(tmp_path: Path) -> None:
    script = "CREATE RECIPIENT early;\n" * 3 + "CREATE SHARE s WITH TABLE t FROM\n"
    with pytest.raises(arcuate.ArcuateSyntaxError) as info:
        arcuate.execute(script, warehouse=str(tmp_path / "wh"))
    assert info.value.line == 4
    assert not (tmp_path / "wh").exists()


def test_parser_and_planner_import_no_engine() -> None:
    code = (
        "import sys, arcuate.syntax.parser, arcuate.plan.planner, arcuate.plan.explain\n"
        "bad = [m for m in ('mlflow', 'deltalake', 'pyspark', 'delta_sharing', 'pandas')"
        " if m in sys.modules]\n"
        "print(bad)\n"
        "import arcuate\n"
        "bad2 = [m for m in ('mlflow', 'deltalake', 'pyspark', 'delta_sharing') if m in sys.modules]\n"
        "print(bad2)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_explain_shows_the_unity_catalog_sql_quoted() -> None:
    text = "CREATE SHARE ml WITH TABLE `main``; DROP`.team.`runs``x` FROM EXPERIMENT e"
    # catalog tables: any name part, quoted (the SQL lines come from the catalog's plugin)
    shown = arcuate.explain(text, share_catalog="unity", spark=object(), warehouse="catalog:")
    assert shown.splitlines()[-2:] == [
        "       SQL: CREATE SHARE IF NOT EXISTS `ml`",
        "       SQL: ALTER SHARE `ml` ADD TABLE `main``; DROP`.`team`.`runs``x` AS `team`.`runs``x`",
    ]
    # the planner alone shows no backend's SQL
    assert "SQL:" not in explain(plan(parse(text), Capabilities("spark", "unity", has_spark=True)))
    unity = capabilities(arcuate.resolve_settings(share_catalog="unity"))
    with pytest.raises(PlanError, match="through Spark SQL"):
        plan(parse(text), unity)


def test_explain_notes_a_missing_spark_session_instead_of_failing() -> None:
    p = plan(parse("EXPLAIN CREATE MODEL m AS SPARK 'p#a.b.c'"), Capabilities())
    assert p.explain_only and p.steps[0] == ops.ReadShare("p#a.b.c", "spark")
    assert p.notes == (
        "note: running it needs a SparkSession [ARC202]: pass spark=<SparkSession> to"
        " arcuate.execute(), or use AS PANDAS",
    )
    assert explain(p).splitlines()[-1] == "  " + p.notes[0]
    unity = plan(
        parse("EXPLAIN CREATE SHARE s WITH TABLE t FROM MODEL m"),
        capabilities(arcuate.resolve_settings(share_catalog="unity")),
    )
    assert unity.notes[0].endswith("or use share_catalog='local'")
    assert plan(parse("EXPLAIN SHOW SHARES"), Capabilities()).notes == ()
