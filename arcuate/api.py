"""The Python API: ``execute`` for statements, and the seed's four verbs.

This is the edge: settings are resolved here, then the statement (or script) is parsed and
planned in full before the first step touches a store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arcuate.config import Settings, resolve_settings
from arcuate.engine.context import Context, capabilities, explain_details
from arcuate.engine.result import Results, StatementResult
from arcuate.engine.runner import run_plan
from arcuate.errors import ArcuateError, PlanError
from arcuate.plan.explain import explain as _explain
from arcuate.plan.planner import Plan, plan, plan_script
from arcuate.syntax import ast
from arcuate.syntax.parser import parse, parse_script
from arcuate.syntax.unparse import unparse

if TYPE_CHECKING:
    import pyarrow as pa


def _settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    return resolve_settings(settings, **overrides)


#: Statement kinds a caller may insist on (the seed's four cell magics), and what they mean.
EXPECT: dict[str, tuple[str, str]] = {
    "export_experiment": ("CREATE SHARE ... FROM EXPERIMENT", "export the experiment"),
    "export_model": ("CREATE SHARE ... FROM MODEL", "export the model"),
    "import_experiment": ("CREATE EXPERIMENT ... AS ...", "import an experiment"),
    "import_model": ("CREATE MODEL ... AS ...", "import a model"),
}


def _kind(stmt: ast.Statement) -> str | None:
    if isinstance(stmt, ast.Explain):
        return _kind(stmt.statement)
    if isinstance(stmt, ast.CreateShare):
        if isinstance(stmt.source, ast.PromptSource):
            return "export_prompt"
        return "export_" + (
            "experiment" if isinstance(stmt.source, ast.ExperimentSource) else "model"
        )
    if isinstance(stmt, ast.CreateExperiment):
        return "import_experiment"
    if isinstance(stmt, ast.CreateModel):
        return "import_model"
    return None


def check_kind(script: ast.Script, expect: str) -> None:
    """Reject statements other than the ``expect`` kind (the seed's ``%%arcuate_<kind>``)."""
    wanted, _ = EXPECT[expect]
    for stmt in script.statements:
        if _kind(stmt) != expect:
            shown = unparse(stmt)
            shown = shown if len(shown) <= 70 else shown[:67] + "..."
            raise PlanError(
                f"%%arcuate_{expect} runs {wanted} statements, not: {shown}",
                text=script.text,
                span=stmt.span,
                source=script.source,
                code="ARC210",
                hint="use %%arcuate for any statement",
            )


def execute(
    text: str,
    *,
    source: str = "<string>",
    settings: Settings | None = None,
    expect: str | None = None,
    spark_hint: str | None = None,
    **overrides: Any,
) -> Results:
    """Run one or more statements (separated by ``;``) and return their results.

    Settings come from ``settings``, then keyword overrides (``tracking_uri=``,
    ``warehouse=``, ``spark=``...), then ``ARCUATE_*``/``MLFLOW_*`` variables.
    ``spark_hint`` lets a front end say how to give a SparkSession there (it ends the
    "AS SPARK needs a SparkSession" hint, followed by ", or use AS PANDAS").

    Raises:
        ArcuateSyntaxError: before anything runs, if any statement is malformed.
        PlanError: before anything runs, if any statement cannot run here.
        ArcuateError: a step failed (the message names the step and statement); its
            ``results`` hold the results of the statements that ran before it.
    """
    resolved = _settings(settings, overrides)
    script = parse_script(text, source)
    if expect is not None:
        check_kind(script, expect)
    plans = plan_script(script, capabilities(resolved, spark_hint=spark_hint))
    return run_plans(plans, resolved)


def plan_scripts(
    scripts: list[tuple[str, str]], settings: Settings, *, spark_hint: str | None = None
) -> list[Plan]:
    """Parse and plan several scripts, given as (text, source name), before any runs."""
    caps = capabilities(settings, spark_hint=spark_hint)
    return [p for text, source in scripts for p in plan_script(parse_script(text, source), caps)]


def execute_scripts(
    scripts: list[tuple[str, str]], settings: Settings, *, spark_hint: str | None = None
) -> Results:
    """Run several scripts, given as (text, source name), as one: every statement of every
    script is parsed and planned before the first one runs."""
    return run_plans(plan_scripts(scripts, settings, spark_hint=spark_hint), settings)


def run_plans(
    plans: list[Plan],
    settings: Settings,
    *,
    on_result: Callable[[StatementResult], None] | None = None,
) -> Results:
    """Run already-planned statements in order with one shared context.

    ``on_result`` sees each result as soon as its statement is done (a front end prints it).
    A failure stops the script: the error's ``results`` hold what ran before it (that stays
    applied), and a note says which statement failed and which did not run.
    """
    ctx = Context(settings)
    done = Results()
    for index, p in enumerate(plans):
        try:
            result = run_plan(p, ctx)
        except ArcuateError as exc:
            exc.results = done
            if len(plans) > 1:
                exc.add_note(_stopped_at(plans, index))
            raise
        done.append(result)
        if on_result is not None:
            on_result(result)
    return done


def _numbers(first: int, last: int) -> str:
    """``statement 3`` or ``statements 3-5``."""
    return f"statement {first}" if first == last else f"statements {first}-{last}"


def _stopped_at(plans: list[Plan], index: int) -> str:
    """Which statement of a script failed, what ran before it and what did not run."""
    failed = plans[index]
    parts = [f"statement {index + 1} of {len(plans)} failed ({failed.source}:{failed.span.line})"]
    if index:
        ran = _numbers(1, index)
        parts.append(f"{ran} ran and {'stays' if index == 1 else 'stay'} applied")
    if index + 1 < len(plans):
        parts.append(f"{_numbers(index + 2, len(plans))} did not run")
    return "; ".join(parts)


def explain(
    text: str, *, source: str = "<string>", spark_hint: str | None = None, **overrides: Any
) -> str:
    """The plan of each statement as text, without touching any store."""
    resolved = _settings(None, overrides)
    script = parse_script(text, source)
    caps = capabilities(resolved, spark_hint=spark_hint)
    plans = plan_script(script, caps, explain=True)
    details = explain_details(resolved)
    return "\n\n".join(_explain(p, details) for p in plans)


def _run_statement(stmt: ast.Statement, overrides: dict[str, Any]) -> StatementResult:
    resolved = _settings(overrides.pop("settings", None), overrides)
    p = plan(stmt, capabilities(resolved))
    return run_plan(p, Context(resolved))


def _table(name: str) -> ast.TableName:
    return ast.TableName(tuple(name.split(".")))


def export_experiments(
    experiment_name: str,
    table_name: str,
    share_name: str,
    *,
    where: str | None = None,
    **settings: Any,
) -> StatementResult:
    """Export an experiment's runs to ``table_name`` and add it to ``share_name``.

    ``where`` is a filter in the dialect's syntax (``"metrics.acc > 0.9"``).
    """
    conditions: tuple[ast.Condition, ...] = ()
    if where:
        probe = parse(f"CREATE SHARE s WITH TABLE t FROM EXPERIMENT e WHERE {where}", "<where>")
        assert isinstance(probe, ast.CreateShare)
        assert isinstance(probe.source, ast.ExperimentSource)
        conditions = probe.source.where
    stmt = ast.CreateShare(
        share_name, _table(table_name), ast.ExperimentSource(experiment_name, conditions)
    )
    return _run_statement(stmt, settings)


def export_models(
    model_name: str,
    table_name: str,
    share_name: str,
    *,
    versions: tuple[int, ...] | list[int] = (),
    aliases: tuple[str, ...] | list[str] = (),
    **settings: Any,
) -> StatementResult:
    """Export a registered model's versions (all, or the given ones) and add them to a share."""
    stmt = ast.CreateShare(
        share_name,
        _table(table_name),
        ast.ModelSource(model_name, tuple(versions), tuple(aliases)),
    )
    return _run_statement(stmt, settings)


def _batches(df: Any) -> list[pa.RecordBatch]:
    """Record batches from a pandas or Spark DataFrame, an Arrow table or batches."""
    import pyarrow as pa

    from arcuate.backends.sharing.reader import frame_to_batches

    if isinstance(df, pa.RecordBatch):
        return [df]
    if isinstance(df, pa.Table):
        return list(df.to_batches())
    if hasattr(df, "toArrow"):  # Spark DataFrame (Spark 4 / Connect)
        return list(df.toArrow().to_batches())
    if hasattr(df, "to_dict") and hasattr(df, "columns"):  # pandas, e.g. load_as_pandas
        # frame_to_batches keeps NaN inside nested metric lists (from_pandas would null them).
        return list(frame_to_batches(df))
    return [b for b in df]


def import_experiments(
    df: Any, experiment_name: str, *, overwrite: bool = False, source: str = "", **settings: Any
) -> StatementResult:
    """Import a shared experiment table (e.g. ``delta_sharing.load_as_pandas(...)``)."""
    from arcuate.engine.imports import import_experiment

    resolved = _settings(settings.pop("settings", None), settings)
    return import_experiment(
        _batches(df), experiment_name, Context(resolved), overwrite=overwrite, source=source
    )


def import_models(
    df: Any, model_name: str, *, overwrite: bool = False, source: str = "", **settings: Any
) -> StatementResult:
    """Import a shared model table as versions of ``model_name``."""
    from arcuate.engine.imports import import_model

    resolved = _settings(settings.pop("settings", None), settings)
    return import_model(
        _batches(df), model_name, Context(resolved), overwrite=overwrite, source=source
    )
