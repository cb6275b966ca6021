"""``arcuate serve`` as a process (endpoint printed, SIGTERM stops it cleanly) and
``arcuate catalog export-yaml``."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner

from arcuate.backends.sharing.catalog import LocalShareCatalog
from arcuate.frontends.serve_cli import catalog_group

SERVE = "from arcuate.frontends.serve_cli import serve_command; serve_command()"


def test_serve_prints_the_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    catalog = LocalShareCatalog(tmp_path / "shares.yaml")
    catalog.add_table("s", "default", "t", str(tmp_path / "t"))
    _, token = catalog.create_recipient("alice")
    catalog.grant("s", "alice")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--catalog", str(catalog.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("arcuate: serving Delta Sharing at http://127.0.0.1:"), first
        endpoint = first.split(" at ")[1].strip()
        deadline = time.monotonic() + 15
        while True:
            try:
                resp = httpx.get(endpoint + "/shares", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert resp.json() == {"items": [{"name": "s"}]}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "arcuate: stopped" in out
    assert "alice GET /delta-sharing/shares 200" in err  # the request log names the recipient
    assert token not in err
    key = tmp_path / "shares.yaml.signing-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                SERVE,
                "--catalog",
                str(tmp_path / "s.yaml"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_export_yaml(tmp_path: Path) -> None:
    catalog = LocalShareCatalog(tmp_path / "shares.yaml")
    catalog.add_table("s", "default", "cloud", "s3://b/wh/cloud")
    catalog.add_table("s", "default", "disk", str(tmp_path / "disk"))
    out = tmp_path / "ref" / "delta-sharing-server.yaml"
    result = CliRunner().invoke(
        catalog_group, ["export-yaml", "--catalog", str(catalog.path), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["shares"][0]["schemas"][0]["tables"][0]["location"] == "s3a://b/wh/cloud"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "left out s.default.disk" in result.output
    assert doc["authorization"]["bearerToken"] in result.output  # shown once, on stderr
    stdout = CliRunner().invoke(
        catalog_group, ["export-yaml", "--catalog", str(catalog.path), "--token", "abc"]
    )
    assert yaml.safe_load(stdout.stdout)["authorization"] == {"bearerToken": "abc"}
    missing = CliRunner().invoke(
        catalog_group, ["export-yaml", "--catalog", str(tmp_path / "no.yaml")]
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_banner(port: int, *args: str) -> tuple[list[str], str]:
    """Start ``arcuate serve --port port`` with ``args``, read its banner, wait until it answers,
    stop it; (banner lines, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not lines or "press Ctrl+C" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, f"serve ended early: {lines} {proc.communicate()[1]}"
            lines.append(line.rstrip("\n"))
        deadline = time.monotonic() + 15
        while True:  # SIGTERM stops it cleanly once uvicorn runs
            try:
                httpx.get(f"http://127.0.0.1:{port}/delta-sharing/shares")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return lines, err


def _recipients_for(catalog: Path, **endpoints: str) -> None:
    """Recipients made through the statement a provider runs, each with its own endpoint."""
    import arcuate

    for name, endpoint in endpoints.items():
        arcuate.execute(f"CREATE RECIPIENT {name}", catalog=str(catalog), endpoint=endpoint)


def test_serve_warns_about_profiles_that_name_another_endpoint(tmp_path: Path) -> None:
    catalog = tmp_path / "shares.yaml"
    port = _free_port()
    _recipients_for(
        catalog,
        acme="http://127.0.0.1:8080/delta-sharing",  # the default endpoint setting
        bob=f"http://localhost:{port}/delta-sharing/",
    )
    banner, err = _serve_banner(port, "--catalog", str(catalog))
    assert banner[0] == f"arcuate: serving Delta Sharing at http://127.0.0.1:{port}/delta-sharing"
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: recipient acme's profile names http://127.0.0.1:8080/delta-sharing, but this "
        f"server is reached at http://127.0.0.1:{port}/delta-sharing (port {port}, not 8080): "
        "acme's requests will not reach it"
    ], err
    assert "ROTATE TOKEN" in err and f"--endpoint http://127.0.0.1:{port}/delta-sharing" in err


def test_serve_on_every_interface_prints_the_urls_recipients_use(tmp_path: Path) -> None:
    import socket

    catalog = tmp_path / "shares.yaml"
    _recipients_for(catalog, acme="http://127.0.0.1:8080/delta-sharing")
    port = _free_port()
    banner, err = _serve_banner(port, "--catalog", str(catalog), "--host", "0.0.0.0")
    text = "\n".join(banner)
    assert banner[1].startswith(f"arcuate: listening on 0.0.0.0:{port} (every interface)")
    assert f"http://{socket.gethostname()}:{port}/delta-sharing" in text
    assert "serving Delta Sharing at http://127.0.0.1" not in text
    assert "warning: recipient acme's profile names http://127.0.0.1:8080/delta-sharing" in err


def test_serve_behind_a_proxy_prints_the_public_url(tmp_path: Path) -> None:
    catalog = tmp_path / "shares.yaml"
    public = "https://sharing.example.com/delta-sharing"
    _recipients_for(catalog, acme=public, bob="http://127.0.0.1:8080/delta-sharing")
    banner, err = _serve_banner(
        _free_port(), "--catalog", str(catalog), "--host", "0.0.0.0", "--public-url", public
    )
    assert banner[0] == f"arcuate: serving Delta Sharing at {public} (--public-url)"
    assert banner[1].startswith("arcuate: listening on 0.0.0.0:")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: recipient bob's profile names http://127.0.0.1:8080/delta-sharing, but this "
        f"server is reached at {public}"
    ), err
