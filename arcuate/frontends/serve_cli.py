"""``arcuate serve`` (the embedded Delta Sharing server) and ``arcuate catalog export-yaml``.

Exposed as click objects the main ``arcuate`` group adds: :data:`serve_command` and
:data:`catalog_group`. The server stack (starlette, uvicorn, pyarrow) is imported inside the
commands, so that the ``arcuate`` command starts without it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from arcuate.errors import ArcuateError
from arcuate.frontends.console import fail

if TYPE_CHECKING:
    from arcuate.backends.sharing.server.endpoints import Listening


class _Stopped(Exception):
    """Raised from a signal handler once uvicorn has shut down gracefully."""


def _catalog_path(warehouse: str | None, catalog: str | None) -> str:
    from arcuate.config import resolve_settings

    return resolve_settings(None, warehouse=warehouse, catalog=catalog).catalog_path


def _storage_options() -> dict[str, str]:
    """``ARCUATE_STORAGE_OPTIONS``, for tables in object storage (credentials are best left
    to the cloud's own environment variables, which the stores read themselves)."""
    from arcuate.config import resolve_settings

    return resolve_settings(None).storage_options


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--warehouse", help="warehouse whose shares.yaml to serve [env: ARCUATE_WAREHOUSE]")
@click.option("--catalog", help="share catalog file [default: <warehouse>/shares.yaml]")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--prefix", default="/delta-sharing", show_default=True, help="URL prefix")
@click.option(
    "--url-ttl",
    type=click.IntRange(30, 7 * 24 * 3600),
    help="seconds a data-file URL stays valid [default: 3600; 900 for tables in object "
    "storage, whose pre-signed URLs outlive a revocation]",
)
@click.option(
    "--public-url", help="endpoint recipients reach (prefix included), when behind a proxy"
)
@click.option("--key-file", help="signing key file [default: <catalog>.signing-key, made 0600]")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="serve HTTPS: certificate (PEM)")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="serve HTTPS: its key (PEM)")
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="a proxy whose X-Forwarded-For names the client (repeatable)",
)
@click.option(
    "--audit/--no-audit",
    default=True,
    show_default=True,
    help="keep the access log (a Delta table next to the catalog)",
)
def serve_command(
    host: str,
    port: int,
    warehouse: str | None,
    catalog: str | None,
    workers: int,
    prefix: str,
    url_ttl: int | None,
    public_url: str | None,
    key_file: str | None,
    log_level: str,
    tls_cert: str | None,
    tls_key: str | None,
    trusted_proxies: tuple[str, ...],
    audit: bool,
) -> None:
    """Serve the shares of the local catalog over the Delta Sharing protocol.

    Recipients connect with the profile file CREATE RECIPIENT gave them. The banner says
    which URL their profiles must name, and a warning names each recipient whose profile
    names another. The catalog is re-read when it changes: new tables, grants, revocations
    and rotated tokens apply without a restart. Tables in object storage (s3://, gs://,
    az://) are served with the store's own pre-signed URLs; the store is reached with the
    cloud's environment variables and ARCUATE_STORAGE_OPTIONS. Every request is recorded
    in the access log (SHOW ACCESS LOG); recipients' IP access lists and rate limits apply.
    Stop with Ctrl+C or SIGTERM.
    """
    import uvicorn

    from arcuate.backends.sharing.audit import log_location
    from arcuate.backends.sharing.server.access import shared_buckets
    from arcuate.backends.sharing.server.app import ServerOptions, configure_logging, create_app
    from arcuate.backends.sharing.server.endpoints import Listening
    from arcuate.backends.sharing.server.runner import bind_socket, tls_options
    from arcuate.backends.sharing.server.signing import key_path_for, load_or_create_key
    from arcuate.backends.sharing.server.zerocopy import http_protocol

    configure_logging(log_level)
    try:
        path = _catalog_path(warehouse, catalog)
        storage_options = _storage_options()
        key_path = key_file or str(key_path_for(path))
        key = load_or_create_key(key_path)  # made once here, before any worker starts
        if workers > 1 and port == 0:
            raise click.UsageError("--port 0 cannot be used with --workers > 1")
        tls = tls_options(tls_cert, tls_key)
        proxies = _trusted_proxies(trusted_proxies)
        sock = bind_socket(host, port)  # fails early (port in use) and resolves port 0
    except ArcuateError as exc:
        fail(exc)
    listening = Listening(host, sock.getsockname()[1], prefix, public_url, tls=bool(tls))
    options = ServerOptions(
        prefix=prefix,
        url_ttl_seconds=url_ttl,
        public_url=public_url,
        storage_options=storage_options,
        trusted_proxies=proxies,
        audit=audit,
    )
    _banner(listening, path)
    click.echo(f"arcuate: access log {log_location(path)}" if audit else "arcuate: no access log")
    warning = listening.clear_text_warning()
    if warning:
        click.echo(f"warning: {warning}", err=True)
    _check_profiles(listening, path)
    _check_object_stores(path)
    click.echo("arcuate: press Ctrl+C to stop")
    sys.stdout.flush()

    # both ways of running: uvicorn's access log off (the server writes its own), X-Forwarded-For
    # only from --trusted-proxy, file bodies sent with sendfile (through TLS when serving it),
    # and a lifespan that starts the access log's writer and flushes it after the last request
    common = dict(
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        http=http_protocol(),
        **tls,
    )
    if workers > 1:
        sock.close()  # uvicorn's supervisor binds it again and shares it with the workers
        with shared_buckets() as limits:  # the workers' rate limits: one count per recipient
            os.environ.update(
                ARCUATE_SERVE_LIMITS=limits,
                ARCUATE_SERVE_CATALOG=path,
                ARCUATE_SERVE_KEY_FILE=key_path,
                ARCUATE_SERVE_PREFIX=prefix,
                ARCUATE_SERVE_URL_TTL=str(url_ttl or ""),
                ARCUATE_SERVE_PUBLIC_URL=public_url or "",
                ARCUATE_SERVE_LOG_LEVEL=log_level,
                ARCUATE_SERVE_TRUSTED_PROXIES=",".join(proxies),
                ARCUATE_SERVE_AUDIT="on" if audit else "off",
            )
            uvicorn.run(
                "arcuate.backends.sharing.server.app:create_app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                **common,
            )
        click.echo("arcuate: stopped")
        return

    app = create_app(path, signing_key=key, options=options)
    config = uvicorn.Config(app, timeout_graceful_shutdown=10, **common)
    server = uvicorn.Server(config)

    def stopped(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    # uvicorn shuts down gracefully on these, then re-raises them to the previous handlers.
    previous = {s: signal.signal(s, stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
        if app.state.sharing.audit is not None:
            app.state.sharing.audit.close()  # done by the app's shutdown, unless it failed
    click.echo("arcuate: stopped")


def _trusted_proxies(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--trusted-proxy`` values as canonical ranges; a bad one names itself."""
    from arcuate.errors import ConfigurationError
    from arcuate.format.access import network

    out = []
    for value in values:
        try:
            out.append(str(network(value)))
        except ValueError as exc:
            raise ConfigurationError(f"--trusted-proxy: {exc}") from None
    return tuple(out)


def _banner(listening: Listening, catalog: str) -> None:
    """Where recipients reach the server (what their profiles must name), and what it serves."""
    urls = listening.recipient_urls()
    how = " (--public-url)" if listening.public_url else ""
    click.echo(f"arcuate: serving Delta Sharing at {urls[0]}{how}")
    host = listening.host or "0.0.0.0"
    where = f"[{host}]:{listening.port}" if ":" in host else f"{host}:{listening.port}"
    click.echo(f"arcuate: listening on {where} ({listening.scope()})")
    if listening.wildcard and not listening.public_url:
        others = " or ".join(urls[1:])
        click.echo(
            f"arcuate: recipients elsewhere use {urls[0]}{' or ' + others if others else ''}; "
            f"on this machine {listening.url('127.0.0.1')}"
        )
    click.echo(f"arcuate: share catalog {Path(catalog).absolute()}")
    if not Path(catalog).exists():
        click.echo("arcuate: the catalog does not exist yet; it is picked up once written")


def _check_profiles(listening: Listening, catalog: str) -> None:
    """Warn about each recipient whose profile names an endpoint this server is not reached
    at: their requests would go elsewhere, and nothing else would say so."""
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    try:
        recipients = LocalShareCatalog(catalog).recipients()
    except (ArcuateError, OSError, ValueError):
        return  # the server reports an unreadable catalog on every request
    for r in recipients:
        endpoint = r.get("profile_endpoint")
        found = listening.mismatch(endpoint) if isinstance(endpoint, str) else None
        if found is None:
            continue
        why, fix = found
        name = r["name"]
        click.echo(
            f"warning: recipient {name}'s profile names {endpoint}, but this server is reached "
            f"at {fix}{f' ({why})' if why else ''}: {name}'s requests will not reach it",
            err=True,
        )
        click.echo(_rotate_hint(str(name), str(endpoint), fix, catalog), err=True)


def _check_object_stores(catalog: str) -> None:
    """Warn when the catalog holds tables in object storage but obstore, which reads and
    signs them, is missing: each request for them would only say the server is not set up."""
    import importlib.util

    from arcuate.backends.sharing.catalog import LocalShareCatalog
    from arcuate.backends.sharing.server.objectstore import is_object_store

    if importlib.util.find_spec("obstore") is not None:
        return
    try:
        shares = LocalShareCatalog(catalog).load()["shares"]
    except (ArcuateError, OSError, ValueError, KeyError):
        return
    found = [
        f"{s['name']}.{sc['name']}.{t['name']}"
        for s in shares
        for sc in s.get("schemas") or []
        for t in sc.get("tables") or []
        if is_object_store(str(t.get("location", "")))
    ]
    if found:
        click.echo(
            f"warning: {len(found)} table(s) in object storage ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}) cannot be served without obstore: "
            "pip install 'arcuate[objectstore]'",
            err=True,
        )


def _rotate_hint(name: str, endpoint: str, fix: str, catalog: str) -> str:
    """A command that gives the recipient a profile for this server (runnable as printed)."""
    import shlex

    from arcuate.syntax.unparse import name as quoted_name
    from arcuate.syntax.unparse import string

    profile = string(name + ".share")
    statement = f"ALTER RECIPIENT {quoted_name(name)} ROTATE TOKEN PROFILE {profile}"
    plain = not any(c in statement for c in '"$`\\!')
    echoed = f'"{statement}"' if plain else shlex.quote(statement)
    command = (
        f"echo {echoed} | arcuate run - "
        f"--catalog {shlex.quote(str(Path(catalog).absolute()))} --endpoint {shlex.quote(fix)}"
    )
    return (
        f"  hint: give {name} a profile for this server and send it:\n    {command}\n"
        f"  or serve where the profile points ({endpoint})"
    )


@click.group("catalog")
def catalog_group() -> None:
    """Work with the local share catalog file."""


@catalog_group.command("export-yaml")
@click.option("--warehouse", help="warehouse whose shares.yaml to export [env: ARCUATE_WAREHOUSE]")
@click.option("--catalog", help="share catalog file [default: <warehouse>/shares.yaml]")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="write here (0600) instead of stdout"
)
@click.option("--share", "shares", multiple=True, help="export only this share (repeatable)")
@click.option("--token", help="bearer token to put in the config [default: a new random one]")
@click.option("--host", default="localhost", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--url-ttl", default=3600, show_default=True, type=click.IntRange(30, 604800))
@click.option(
    "--include-local",
    is_flag=True,
    help="keep tables on local disk (the reference cannot read them)",
)
def export_yaml(
    warehouse: str | None,
    catalog: str | None,
    output: str | None,
    shares: tuple[str, ...],
    token: str | None,
    host: str,
    port: int,
    url_ttl: int,
    include_local: bool,
) -> None:
    """Write a config the Delta Sharing reference server can serve.

    The reference server knows one bearer token and no recipients, and reads only tables in
    object storage (s3a, abfss, wasbs, gs); other tables are left out with a warning.
    """
    from arcuate.backends.sharing.catalog import LocalShareCatalog

    try:
        path = _catalog_path(warehouse, catalog)
        if not Path(path).exists():
            raise ArcuateError(f"share catalog {path} does not exist")
        export = LocalShareCatalog(path).export_reference_yaml(
            bearer_token=token,
            shares=list(shares) or None,
            host=host,
            port=port,
            url_ttl_seconds=url_ttl,
            include_local=include_local,
        )
    except ArcuateError as exc:
        fail(exc)
    for name in export.skipped:
        click.echo(
            f"warning: left out {name}: not in object storage (use --include-local to keep it)",
            err=True,
        )
    if output:
        from arcuate.backends.sharing.server.runner import write_private

        write_private(output, export.yaml)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(export.yaml, nl=False)
    if not token:
        click.echo(f"bearer token (shown once): {export.bearer_token}", err=True)
