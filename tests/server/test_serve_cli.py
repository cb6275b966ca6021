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
