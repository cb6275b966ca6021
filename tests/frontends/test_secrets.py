"""Bearer tokens stay out of results, reprs, logs and cell outputs (issue 11 item 10).

``CREATE RECIPIENT`` and ``ROTATE TOKEN`` write the profile file (mode 0600) and show its path;
``SHOW TOKEN`` prints the profile once, on a terminal only.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell

import arcuate

ARCUATE = str(Path(sys.executable).parent / "arcuate")
ENDPOINT = "http://sharing.example.test:8080/delta-sharing"


def _token(path: Path) -> str:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    profile = json.loads(path.read_text())
    assert profile["endpoint"] == ENDPOINT
    return str(profile["bearerToken"])


def _recipients(warehouse: Path) -> list[str]:
    catalog = warehouse / "shares.yaml"
    if not catalog.exists():
        return []
    return [r["name"] for r in yaml.safe_load(catalog.read_text()).get("recipients") or []]


def test_create_and_rotate_show_the_profile_path_never_the_token(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results = arcuate.execute(
        "CREATE RECIPIENT acme COMMENT 'partner';\n"
        "ALTER RECIPIENT acme ROTATE TOKEN PROFILE 'out/acme.share'",
        warehouse="wh",
        endpoint=ENDPOINT,
    )
    created, rotated = results
    default = workdir / "wh" / "profiles" / "acme.share"  # no PROFILE: next to the catalog
    assert created.summary["profile_path"] == str(default)
    assert rotated.summary["profile_path"] == str(workdir / "out" / "acme.share")
    tokens = [_token(default), _token(workdir / "out" / "acme.share")]
    assert tokens[0] != tokens[1]
    shown = [
        str(results),
        repr(results),
        results._repr_html_(),
        results.to_pandas().to_string(),
        created.to_pandas().to_string(),
        rotated.to_pandas().to_string(),
        caplog.text,
    ]
    assert str(default) in shown[0] and "0600" in shown[0]
    for token in tokens:
        assert not any(token in text for text in shown)


def _cli(args: list[str], cwd: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARCUATE, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_cli_prints_the_path_and_refuses_show_token_off_a_terminal(workdir: Path) -> None:
    out = _cli(["run", "-", "--warehouse", "wh", "--endpoint", ENDPOINT], workdir,
               "CREATE RECIPIENT acme PROFILE 'acme.share'")  # fmt: skip
    assert out.returncode == 0, out.stderr
    token = _token(workdir / "acme.share")
    assert str(workdir / "acme.share") in out.stdout
    assert token not in out.stdout + out.stderr and "bearerToken" not in out.stdout
    refused = _cli(["run", "-", "--warehouse", "wh", "--endpoint", ENDPOINT], workdir,
                   "CREATE RECIPIENT bob SHOW TOKEN")  # fmt: skip
    assert refused.returncode == 1
    assert "SHOW TOKEN shows the token on a terminal only" in refused.stderr
    assert _recipients(workdir / "wh") == ["acme"]  # bob was not created
    assert not (workdir / "wh" / "profiles" / "bob.share").exists()


def _in_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with its stdin, stdout and stderr on a pseudo-terminal."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([ARCUATE, *args], cwd=cwd, stdin=secondary, stdout=secondary,
                            stderr=secondary, close_fds=True)  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    return proc.wait(timeout=120), b"".join(chunks).decode()


def test_show_token_prints_the_profile_once_on_a_terminal(workdir: Path) -> None:
    (workdir / "r.arcsql").write_text("CREATE RECIPIENT acme SHOW TOKEN;\n")
    code, shown = _in_a_terminal(
        ["run", "r.arcsql", "--warehouse", "wh", "--endpoint", ENDPOINT], workdir
    )
    assert code == 0, shown
    token = _token(workdir / "wh" / "profiles" / "acme.share")
    assert shown.count(token) == 1
    assert '"bearerToken"' in shown  # the whole profile, ready to copy


def test_an_oauth_secret_is_printed_once_on_a_terminal_and_kept_in_the_profile(
    workdir: Path,
) -> None:
    (workdir / "r.arcsql").write_text("CREATE RECIPIENT acme USING OAUTH SHOW TOKEN;\n")
    code, shown = _in_a_terminal(
        ["run", "r.arcsql", "--warehouse", "wh", "--endpoint", ENDPOINT], workdir
    )
    assert code == 0, shown
    path = workdir / "wh" / "profiles" / "acme.share"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    profile = json.loads(path.read_text())
    assert profile["type"] == "oauth_client_credentials"
    assert profile["tokenEndpoint"] == ENDPOINT + "/oauth/token"
    assert shown.count(profile["clientSecret"]) == 1 and '"tokenEndpoint"' in shown
    assert profile["clientSecret"] not in (workdir / "wh" / "shares.yaml").read_text()


def test_magics_show_no_token_and_refuse_show_token_in_a_notebook(
    ipython: InteractiveShell, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = ipython
    res = shell.run_cell(
        f"%%arcuate --warehouse wh --endpoint {ENDPOINT}\nCREATE RECIPIENT acme",
        store_history=False,
    )
    assert res.success, res.error_in_exec
    token = _token(workdir / "wh" / "profiles" / "acme.share")
    refused = shell.run_cell(
        "%%arcuate --warehouse wh\nALTER RECIPIENT acme ROTATE TOKEN SHOW TOKEN",
        store_history=False,
    )
    assert not refused.success
    shown = capsys.readouterr().out
    assert "SHOW TOKEN shows the token on a terminal only" in shown
    assert token not in shown + repr(res.result) + res.result._repr_html_()
    assert _token(workdir / "wh" / "profiles" / "acme.share") == token  # not rotated
