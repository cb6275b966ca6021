"""The ``arcuate`` command: run ``.arcsql`` scripts, explain statements, demo, serve.

Thin: options become Settings, then one call into the engine. Every failure, whatever raised
it, ends as one rendered error with its ARC code (with colour on a terminal) and exit status 1;
``--debug`` adds the Python traceback.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from arcuate.errors import ArcuateError, InputError, StatementError
from arcuate.frontends.console import fail
from arcuate.frontends.lazy import defer_pandas
from arcuate.frontends.serve_cli import catalog_group, serve_command

if TYPE_CHECKING:
    from arcuate.engine.result import StatementResult
    from arcuate.plan.planner import Plan

_SETTINGS = ("tracking_uri", "registry_uri", "warehouse", "catalog", "endpoint", "retry_seconds")

#: How to give a SparkSession from here: there is no way (the planner adds ", or use AS PANDAS").
SPARK_HINT = (
    "the arcuate command has no SparkSession: run the statement from Python with"
    " arcuate.execute(..., spark=spark)"
)


def _settings_options(fn: Any) -> Any:
    options = [
        click.option("--tracking-uri", help="MLflow tracking URI [env: MLFLOW_TRACKING_URI]"),
        click.option("--registry-uri", help="MLflow registry URI (default: the tracking URI)"),
        click.option("--warehouse", help="where Delta tables are written [env: ARCUATE_WAREHOUSE]"),
        click.option("--catalog", help="share catalog file [default: <warehouse>/shares.yaml]"),
        click.option("--endpoint", help="sharing server URL written into recipient profiles"),
        click.option(
            "--retry-seconds",
            type=float,
            help="how long a sharing or MLflow server that does not answer is retried before"
            " the statement fails [env: ARCUATE_RETRY_SECONDS; default: 10]",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _pick(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in _SETTINGS if kwargs.get(k) is not None}


def _as_arcuate_error(exc: Exception) -> ArcuateError:
    """Any failure as an error to render: a system error names its file; anything else that
    is not an ArcuateError is a bug."""
    if isinstance(exc, ArcuateError):
        return exc
    if isinstance(exc, OSError) and (exc.filename or exc.filename2):
        return ArcuateError(
            f"{exc.strerror or type(exc).__name__}: {exc.filename2 or exc.filename}",
            hint="check the path and its permissions",
        )
    return ArcuateError(
        f"unexpected {type(exc).__name__}: {exc}",
        hint="this is a bug in arcuate: run again with --debug for the traceback, and report it",
    )


class _Main(click.Group):
    """The command group; turns any failure of a command into one rendered error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("arcuate.debug"):
                traceback.print_exc()
            fail(_as_arcuate_error(exc))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="arcuate")
@click.option("--debug", is_flag=True, help="also print the Python traceback of an error")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """arcuate: share MLflow experiments and models through Delta Sharing.

    Statements (see docs/language.md):

    \b
      CREATE SHARE s WITH TABLE t FROM EXPERIMENT e [WHERE ...]
      CREATE SHARE s WITH TABLE t FROM MODEL m [VERSION n, ... | ALIAS a, ...]
      CREATE EXPERIMENT [OVERWRITE] e AS [PANDAS|SPARK] 'profile#share.schema.table'
      CREATE MODEL [OVERWRITE] m AS [PANDAS|SPARK] 'profile#share.schema.table'
    """
    ctx.meta["arcuate.debug"] = debug
    defer_pandas()  # this process is the command's: pyarrow loads pandas only when a step uses it


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def read_script(name: str) -> tuple[str, str]:
    """A script's text and source name (``-`` is standard input), as UTF-8.

    Raises:
        InputError: the file cannot be read (ARC701) or is not UTF-8 (ARC702).
    """
    source = "<stdin>" if name == "-" else name
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read script {name}: {_why(exc)}", code="ARC701") from exc
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[start : exc.start].decode("utf-8", errors="replace")) + 1
        raise InputError(
            f"script {source} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line},"
            f" column {col}",
            code="ARC702",
            hint="save it as UTF-8 (editors offer the encoding when saving)",
        ) from None


# -- reporting results --------------------------------------------------------------------------


def _kind(plan: Plan) -> str:
    """The statement's kind in snake case: ``create_share``, ``grant``, ``explain``..."""
    if plan.explain_only:
        return "explain"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(plan.statement).__name__).lower()


def _error_json(exc: ArcuateError) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": exc.code,
        "type": type(exc).__name__,
        "message": exc.message,
        "hint": exc.hint,
        "notes": list(getattr(exc, "__notes__", [])),
    }
    if isinstance(exc, StatementError):
        out.update(source=exc.source, line=exc.line, col=exc.col)
    return out


def _entry(
    plan: Plan | None,
    status: str,
    result: StatementResult | None = None,
    error: ArcuateError | None = None,
) -> dict[str, Any]:
    """One statement as a JSON object: what it is, how it went, its figures, its error."""
    return {
        "statement": None if plan is None else ("EXPLAIN " * plan.explain_only) + plan.text,
        "kind": None if plan is None else _kind(plan),
        "source": None if plan is None else plan.source,
        "line": None if plan is None else plan.span.line,
        "status": status,
        "action": None if result is None else result.action,
        "summary": {} if result is None else result.summary,
        "details": [] if result is None else result.rows,
        "error": None if error is None else _error_json(error),
    }


class _Report:
    """Prints each statement's result as it completes: text, or one JSON object per line."""

    def __init__(self, fmt: str) -> None:
        self.json = fmt == "json"
        self.plans: list[Plan] = []
        self.done = 0

    def _emit(self, entry: dict[str, Any]) -> None:
        click.echo(json.dumps(entry, default=str))

    def ran(self, result: StatementResult) -> None:
        if self.json:
            self._emit(_entry(self.plans[self.done], "ok", result))
        else:
            click.echo(str(result))
        self.done += 1

    def failed(self, exc: ArcuateError) -> None:
        """The statement that failed and those that did not run (nothing planned: one)."""
        if not self.json:
            return
        if not self.plans:
            self._emit(_entry(None, "failed", error=exc))
            return
        self._emit(_entry(self.plans[self.done], "failed", error=exc))
        for plan in self.plans[self.done + 1 :]:
            self._emit(_entry(plan, "not run"))


@main.command()
@click.argument("scripts", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text, or one JSON object per statement and line (kind, status, summary, details,"
    " error) for CI jobs and schedulers",
)
@_settings_options
def run(scripts: tuple[str, ...], fmt: str, **kwargs: Any) -> None:
    """Run .arcsql scripts (or - for standard input).

    Every script is parsed and planned before the first statement runs, so a mistake on
    line 40 leaves lines 1-39 unexecuted. Results are printed as statements complete; if
    one fails, those before it stay applied and the rest do not run.
    """
    from arcuate.api import plan_scripts, run_plans
    from arcuate.config import resolve_settings

    report = _Report(fmt)
    try:
        settings = resolve_settings(None, **_pick(kwargs))
        texts = [read_script(script) for script in scripts]
        report.plans = plan_scripts(texts, settings, spark_hint=SPARK_HINT)
        run_plans(report.plans, settings, on_result=report.ran)
    except ArcuateError as exc:
        report.failed(exc)
        raise


@main.command()
@click.argument("statement", required=False)
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(allow_dash=True),
    help="explain every statement of a script",
)
def explain(statement: str | None, path: str | None) -> None:
    """Show the plan of a statement (or of every statement in a script); touches no store."""
    from arcuate.api import explain as explain_text

    if (statement is None) == (path is None):
        raise click.UsageError("give a STATEMENT or --file SCRIPT")
    if path is not None:
        text, source = read_script(path)
        click.echo(explain_text(text, source=source, spark_hint=SPARK_HINT))
    else:
        assert statement is not None
        click.echo(explain_text(statement, spark_hint=SPARK_HINT))


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def demo(directory: str | None) -> None:
    """Run the end-to-end demo on the embedded defaults (in DIRECTORY or a temporary one).

    Trains a small scikit-learn model in a provider MLflow store, exports the experiment and
    model, serves the share, and imports both into a separate recipient store over the
    Delta Sharing protocol, then shows that they match.
    """
    from arcuate.demo import run_demo

    run_demo(directory)


main.add_command(serve_command, "serve")
main.add_command(catalog_group, "catalog")


def program() -> NoReturn:
    """The ``arcuate`` program: :func:`main`, then an end without the interpreter's teardown.

    Freeing every module and object of a command that is over costs about a quarter of a
    second here, more than some commands' own work. Once no other thread runs and the
    ``atexit`` handlers have run (log handlers flushed, temporary directories removed), the
    process ends with the command's status (:func:`_end`); with a thread still running,
    Python's own exit waits for it, as always.
    """
    try:
        main()
    except SystemExit as exc:
        _end(exc.code)
    _end(0)


def _end(code: object) -> NoReturn:
    """End the process with ``code`` as ``sys.exit`` would (None: 0; an int: itself; else
    printed, 1), after the ``atexit`` handlers and with stdout and stderr flushed."""
    import atexit
    import os
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        sys.exit(code)  # type: ignore[arg-type]
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120  # Python's status when stdout cannot be flushed at exit
    os._exit(status)
