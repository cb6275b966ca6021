"""The runner: walks a plan's steps, passing each step's output to the next.

Each operator type has one handler here; handlers reach storage only through the Context's
backends. A failing step is reported with its number, its operator and the statement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from arcuate.engine.context import Context, explain_details
from arcuate.engine.result import StatementResult
from arcuate.errors import ArcuateError, ConfigurationError, StepError, UnreachableError
from arcuate.plan import ops
from arcuate.plan.explain import Details, describe, explain
from arcuate.plan.planner import Plan


@dataclass
class _State:
    plan: Plan
    value: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: detail rows of an export's result (what REDACT covered, by rule)
    rows: list[dict[str, Any]] = field(default_factory=list)
    result: StatementResult | None = None


def _distributed(ctx: Context) -> bool:
    """Spread export packaging over Spark tasks only where tasks can reach the tracking server.

    A local sqlite store lives on the driver's disk, which executors of a real cluster do not
    share; a tracking server (http, https, databricks) is reachable from every task.
    """
    s = ctx.settings
    scheme = s.effective_tracking_uri.partition(":")[0].lower()
    return s.table_backend == "spark" and s.spark is not None and scheme in _REMOTE


_REMOTE = frozenset({"http", "https", "databricks"})


def _export_experiment(step: ops.ExportExperiment, ctx: Context, st: _State) -> None:
    # datasets, scorers and traces are read through the driver's client: INCLUDING packs there;
    # a redacted export is packed here too: the provider's key never travels to Spark tasks
    if _distributed(ctx) and not (step.datasets or step.scorers or step.traces or step.redact):
        from arcuate.engine.distributed import export_experiment_spark

        st.value = export_experiment_spark(step, ctx)
        return
    from arcuate.engine.export import export_experiment

    st.value = export_experiment(step, ctx)


def _export_model(step: ops.ExportModel, ctx: Context, st: _State) -> None:
    from arcuate.engine.export import export_model

    st.value = export_model(step, ctx)


def _export_prompt(step: ops.ExportPrompt, ctx: Context, st: _State) -> None:
    from arcuate.engine.export import export_prompt

    st.value = export_prompt(step, ctx)


def _write_table(step: ops.WriteTable, ctx: Context, st: _State) -> None:
    stream = st.value
    batches = stream.batches
    if (
        step.signing_key
        or step.signing_sigstore
        or ctx.settings.signing_key
        or (ctx.settings.signing_certificate or ctx.settings.signing_certificate_chain)
    ):
        from arcuate.engine import signing

        how = signing.signing_for(step, ctx.settings)
        if how is not None:
            signed_as = step.signed_as or ".".join(step.table)
            batches = signing.signed(batches, stream.content, how, signed_as)
            st.summary["signed_by"] = how.shown
    written = ctx.table_store.write(step.table, batches, content=stream.content)
    if stream.content == "experiment":
        st.summary["runs"] = stream.runs
        if stream.scorers or stream.eval_records or stream.skipped:
            # an experiment's registered scorers and evaluation datasets travel with it
            st.summary.update(scorers=stream.scorers, eval_records=stream.eval_records)
        if stream.skipped:
            st.summary["skipped_scorers"] = list(stream.skipped)
        if stream.traces or stream.skipped_traces:
            st.summary["traces"] = stream.traces
        if stream.skipped_traces:
            st.summary["skipped_traces"] = list(stream.skipped_traces)
    else:
        st.summary["versions"] = stream.versions
    st.summary.update(
        files=stream.files,
        bytes=stream.bytes,
        table=".".join(step.table),
        location=written.location,
        table_version=written.version,
    )
    if written.helper_peak_rss:
        st.summary["helper_peak_rss"] = written.helper_peak_rss
    if stream.redaction is not None:  # REDACT: the total here, the counts by rule as rows
        st.summary["redacted"] = stream.redaction.total()
        st.rows = stream.redaction.rows()
    st.value = written


def _add_to_share(step: ops.AddToShare, ctx: Context, st: _State) -> None:
    outcome = ctx.share_catalog.add_table(
        step.share, step.schema, step.table, st.value.location, if_not_exists=step.if_not_exists
    )
    st.summary.update(
        share=step.share, shared_as=f"{step.schema}.{step.table}", share_update=outcome
    )


@contextmanager
def servers_bounded(ctx: Context) -> Iterator[None]:
    """While a statement runs: MLflow's retries bounded and shown, and an MLflow server that
    cannot be reached named in the error (with what failed and what to check).

    Without a SparkSession the statement uses no Spark, so Spark Connect stays unloaded for
    its duration (:func:`spark_guard`): MLflow's probe for a session on each request would
    import it (about 0.6 s), and in a ``python -c`` process that import exits the process.
    """
    from arcuate.backends.mlflow.connect import (
        bounded_retries,
        retry_notices,
        spark_guard,
        unreachable,
    )

    s = ctx.settings
    no_spark: AbstractContextManager[None] = spark_guard() if s.spark is None else nullcontext()
    with bounded_retries(s.retry_seconds), retry_notices(ctx.retry.notify), no_spark:
        try:
            yield
        except Exception as exc:
            down = None
            if not isinstance(exc, UnreachableError):
                down = unreachable(exc, s.effective_tracking_uri, s.effective_registry_uri)
            if down is None:
                raise
            for note in getattr(exc, "__notes__", []):
                down.add_note(note)
            raise down from exc


def _read_share(step: ops.ReadShare, ctx: Context, st: _State) -> None:
    st.value = ctx.reader(step.flavor).batches(step.coordinate)


def _import_experiment(step: ops.ImportExperiment, ctx: Context, st: _State) -> None:
    frame = getattr(st.value, "dataframe", None)
    if frame is not None:  # AS SPARK: the runs are imported by Spark tasks
        from arcuate.engine.distributed import import_experiment_spark

        if step.refuse_pickle or ctx.settings.refuse_pickle:
            raise ConfigurationError(
                "REFUSE PICKLE (refuse_pickle) is not supported for AS SPARK experiment "
                "imports yet: Spark tasks write their runs independently, so a refusal could "
                "come after some were written; import AS PANDAS. Nothing was written"
            )

        _no_spark_verify(step.verify_key, ctx)
        st.result = import_experiment_spark(
            frame, step.experiment, ctx, overwrite=step.overwrite, source=step.coordinate
        )
        return
    from arcuate.engine.imports import import_experiment

    st.result = import_experiment(
        st.value, step.experiment, ctx, overwrite=step.overwrite, source=step.coordinate,
        refuse_pickle=step.refuse_pickle, verify_key=step.verify_key,
        verify_ca=step.verify_ca,
    )  # fmt: skip


def _no_spark_verify(key: str | None, ctx: Context) -> None:
    """AS SPARK imports do not verify signatures yet: refused before anything is read."""
    if key or ctx.settings.require_signature:
        raise ConfigurationError(
            "VERIFIED BY (require_signature) is not supported for AS SPARK imports yet: the"
            " rows are not read in one place before the writes; import AS PANDAS. Nothing was"
            " written"
        )


def _import_model(step: ops.ImportModel, ctx: Context, st: _State) -> None:
    frame = getattr(st.value, "dataframe", None)
    if frame is not None:  # AS SPARK: the versions are collected and imported on the driver
        from arcuate.engine.distributed import import_model_spark

        _no_spark_verify(step.verify_key, ctx)
        st.result = import_model_spark(
            frame, step.model, ctx, overwrite=step.overwrite, source=step.coordinate,
            refuse_pickle=step.refuse_pickle,
        )  # fmt: skip
        return
    from arcuate.engine.imports import import_model

    st.result = import_model(
        st.value, step.model, ctx, overwrite=step.overwrite, source=step.coordinate,
        refuse_pickle=step.refuse_pickle, verify_key=step.verify_key,
        verify_ca=step.verify_ca,
    )  # fmt: skip


def _import_prompt(step: ops.ImportPrompt, ctx: Context, st: _State) -> None:
    from arcuate.engine.imports.prompts import import_prompt

    batches = st.value
    frame = getattr(batches, "dataframe", None)
    if frame is not None:  # AS SPARK: a prompt's versions are few, collected on the driver
        from arcuate.engine.distributed import collect_batches

        _no_spark_verify(step.verify_key, ctx)
        batches = collect_batches(frame)
    st.result = import_prompt(
        batches, step.prompt, ctx, overwrite=step.overwrite, source=step.coordinate,
        verify_key=step.verify_key, verify_ca=step.verify_ca,
    )  # fmt: skip


def _describe_shared(step: ops.DescribeShared, ctx: Context, st: _State) -> None:
    from arcuate.engine.imports import describe_shared

    st.result = describe_shared(st.value, step.coordinate, step.verify_key, step.verify_ca)


def _list_provider_shares(step: ops.ListProviderShares, ctx: Context, st: _State) -> None:
    from arcuate.backends.sharing.reader import DeltaSharingReader

    listing = DeltaSharingReader(retry=ctx.retry).list_shared(step.profile)
    summary = {
        "profile": step.profile,
        "endpoint": listing.endpoint,
        "shares": len(listing.shares),
        "tables": sum(1 for row in listing.rows if row["table"] is not None),
    }
    st.result = StatementResult(st.plan.text, "show shares in provider", summary, listing.rows)


def _catalog_command(step: ops.CatalogCommand, ctx: Context, st: _State) -> None:
    from arcuate.engine.sharing import run_catalog_command

    st.result = run_catalog_command(step, ctx, st.plan.text)


_HANDLERS: dict[type, Callable[[Any, Context, _State], None]] = {
    ops.ExportExperiment: _export_experiment,
    ops.ExportModel: _export_model,
    ops.ExportPrompt: _export_prompt,
    ops.WriteTable: _write_table,
    ops.AddToShare: _add_to_share,
    ops.ReadShare: _read_share,
    ops.ImportExperiment: _import_experiment,
    ops.ImportModel: _import_model,
    ops.ImportPrompt: _import_prompt,
    ops.DescribeShared: _describe_shared,
    ops.ListProviderShares: _list_provider_shares,
    ops.CatalogCommand: _catalog_command,
}

_ACTIONS = {
    ops.ExportExperiment: "export experiment",
    ops.ExportModel: "export model",
    ops.ExportPrompt: "export prompt",
}


def explain_result(plan: Plan, details: Details | None = None) -> StatementResult:
    """The result of an EXPLAIN: the plan as text and as rows (``details``: what the
    backends add under a step, see :func:`arcuate.engine.context.explain_details`)."""
    rows = [
        {"step": i, "operator": type(s).__name__, "description": describe(s, details)}
        for i, s in enumerate(plan.steps, 1)
    ]
    summary: dict[str, Any] = {"notes": list(plan.notes)} if plan.notes else {}
    text = explain(plan, details)
    return StatementResult(f"EXPLAIN {plan.text}", "explain", summary=summary, rows=rows, text=text)


def _run_step(i: int, step: ops.Operator, ctx: Context, st: _State) -> None:
    name = type(step).__name__
    try:
        _HANDLERS[type(step)](step, ctx, st)
    except ArcuateError as exc:
        exc.add_note(f"in step {i} ({name}) of: {st.plan.text}")
        raise
    except Exception as exc:
        raise StepError(
            f"step {i} {name} failed: {type(exc).__name__}: {exc}",
            hint=f"statement: {st.plan.text}",
        ) from exc


def run_plan(plan: Plan, ctx: Context) -> StatementResult:
    """Run one plan's steps in order; EXPLAIN plans are only described."""
    if plan.explain_only:
        return explain_result(plan, explain_details(ctx.settings))
    st = _State(plan)
    started = time.monotonic()
    with servers_bounded(ctx):
        for i, step in enumerate(plan.steps, 1):
            _run_step(i, step, ctx, st)
    if st.result is not None:
        return st.result
    action = _ACTIONS.get(type(plan.steps[0]), type(plan.steps[0]).__name__)
    st.summary["seconds"] = round(time.monotonic() - started, 3)
    return StatementResult(plan.text, action, summary=st.summary, rows=st.rows)
