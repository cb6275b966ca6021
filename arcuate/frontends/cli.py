"""The ``arcuate`` command: run ``.arcsql`` scripts, explain statements, demo, serve.

Thin: options become Settings, then one call into the engine. Errors are rendered (with
colour on a terminal) and the exit status is non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from arcuate.errors import ArcuateError
from arcuate.frontends.serve_cli import catalog_group, serve_command

_SETTINGS = ("tracking_uri", "registry_uri", "warehouse", "catalog", "endpoint")


def _settings_options(fn: Any) -> Any:
    options = [
        click.option("--tracking-uri", help="MLflow tracking URI [env: MLFLOW_TRACKING_URI]"),
        click.option("--registry-uri", help="MLflow registry URI (default: the tracking URI)"),
        click.option("--warehouse", help="where Delta tables are written [env: ARCUATE_WAREHOUSE]"),
        click.option("--catalog", help="share catalog file [default: <warehouse>/shares.yaml]"),
        click.option("--endpoint", help="sharing server URL written into recipient profiles"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _pick(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in _SETTINGS if kwargs.get(k) is not None}


def _fail(exc: ArcuateError) -> None:
    err = Console(stderr=True, highlight=False)
    err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
    for note in getattr(exc, "__notes__", []):
        err.print(f"  {note}", markup=False, soft_wrap=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="arcuate")
def main() -> None:
    """arcuate: share MLflow experiments and models through Delta Sharing.

    Statements (see docs/language.md):

    \b
      CREATE SHARE s WITH TABLE t FROM EXPERIMENT e [WHERE ...]
      CREATE SHARE s WITH TABLE t FROM MODEL m [VERSION n, ... | ALIAS a, ...]
      CREATE EXPERIMENT [OVERWRITE] e AS [PANDAS|SPARK] 'profile#share.schema.table'
      CREATE MODEL [OVERWRITE] m AS [PANDAS|SPARK] 'profile#share.schema.table'
    """


@main.command()
@click.argument(
    "scripts", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True)
)
@_settings_options
def run(scripts: tuple[str, ...], **kwargs: Any) -> None:
    """Run .arcsql scripts (or - for standard input).

    Every script is parsed and planned before the first statement runs, so a mistake on
    line 40 leaves lines 1-39 unexecuted.
    """
    from arcuate.api import execute_scripts
    from arcuate.config import resolve_settings

    try:
        settings = resolve_settings(None, **_pick(kwargs))
        texts = [
            (sys.stdin.read(), "<stdin>")
            if script == "-"
            else (Path(script).read_text(encoding="utf-8"), script)
            for script in scripts
        ]
        for result in execute_scripts(texts, settings):
            click.echo(str(result))
    except ArcuateError as exc:
        _fail(exc)


@main.command()
@click.argument("statement", required=False)
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    help="explain every statement of a script",
)
def explain(statement: str | None, path: str | None) -> None:
    """Show the plan of a statement (or of every statement in a script); touches no store."""
    from arcuate.api import explain as explain_text

    if (statement is None) == (path is None):
        raise click.UsageError("give a STATEMENT or --file SCRIPT")
    try:
        if path is not None:
            click.echo(explain_text(Path(path).read_text(encoding="utf-8"), source=path))
        else:
            assert statement is not None
            click.echo(explain_text(statement))
    except ArcuateError as exc:
        _fail(exc)


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def demo(directory: str | None) -> None:
    """Run the end-to-end demo on the embedded defaults (in DIRECTORY or a temporary one).

    Trains a small scikit-learn model in a provider MLflow store, exports the experiment and
    model, serves the share, and imports both into a separate recipient store over the
    Delta Sharing protocol, then shows that they match.
    """
    from arcuate.demo import run_demo

    try:
        run_demo(directory)
    except ArcuateError as exc:
        _fail(exc)


main.add_command(serve_command, "serve")
main.add_command(catalog_group, "catalog")
