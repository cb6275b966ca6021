"""``arcuate serve --tls-cert/--tls-key``: HTTPS with a test CA, the official client trusting it,
plain HTTP on the TLS port refused cleanly, and the clear-text warning.

The CA and the server certificate are made here with ``cryptography``; the unmodified
``delta_sharing`` client runs in a subprocess told to trust the CA through the environment
(``REQUESTS_CA_BUNDLE`` for its REST calls, ``SSL_CERT_FILE`` for fsspec's downloads).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from arcuate.backends.sharing.server import serve_in_thread, write_profile
from arcuate.backends.sharing.server.endpoints import Listening
from tests.server.conftest import Sharing

SERVE = "from arcuate.frontends.serve_cli import serve_command; serve_command()"
READ = (
    "import sys, delta_sharing; "
    "print(len(delta_sharing.load_as_pandas(sys.argv[1], use_delta_format=sys.argv[2] == 'd')))"
)
#: The client's own request, with its retries off: it retries a failed TLS handshake as a
#: connection error ten times with back-off (about 100 s) before it gives up.
LIST = (
    "import sys; from delta_sharing.protocol import DeltaSharingProfile, Table; "
    "from delta_sharing.rest_client import DataSharingRestClient; "
    "path, name = sys.argv[1].split('#'); share, schema, table = name.split('.'); "
    "client = DataSharingRestClient(DeltaSharingProfile.read_from_file(path), num_retries=0); "
    "print(len(client.list_files_in_table(Table(table, share, schema)).add_files))"
)


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("arcuate test CA"))
        .issuer_name(name("arcuate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def read_with_client(profile: Path, table: str, ca: Path | None, fmt: str = "p") -> str:
    """Run the unmodified client in a fresh process; its stdout, or its error (``fmt``: "p"
    parquet, "d" delta, "l" only list the files, without the client's retries)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    if ca is not None:
        env.update(REQUESTS_CA_BUNDLE=str(ca), SSL_CERT_FILE=str(ca))
    done = subprocess.run(
        [sys.executable, "-c", LIST if fmt == "l" else READ, f"{profile}#{table}", fmt],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return done.stdout.strip() if done.returncode == 0 else "FAILED: " + done.stderr


def test_the_client_reads_over_https_when_told_to_trust_the_ca(
    sharing: Sharing, certificates: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca, cert, key = certificates
    with serve_in_thread(
        str(sharing.catalog_path), tls_cert=str(cert), tls_key=str(key), audit=False
    ) as server:
        assert server.endpoint.startswith("https://127.0.0.1:")
        profile = write_profile(tmp_path / "tls.share", server.endpoint, sharing.tokens["alice"])
        assert json.loads(profile.read_text())["endpoint"] == server.endpoint
        assert read_with_client(profile, "models.mlflow.simple", ca) == "3"
        assert read_with_client(profile, "models.mlflow.simple", ca, "d") == "3"  # Rust kernel
        # the client's bare request, trusting the CA, succeeds; not told to trust the CA, it
        # refuses the server (it verifies every host but localhost)
        assert read_with_client(profile, "models.mlflow.simple", ca, "l").isdigit()
        refused = read_with_client(profile, "models.mlflow.simple", None, "l")
        assert refused.startswith("FAILED") and "CERTIFICATE_VERIFY_FAILED" in refused
        # file URLs are https too, and their bytes are intact through TLS
        context = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=context, timeout=10) as client:
            auth = {"Authorization": f"Bearer {sharing.tokens['alice']}"}
            query = client.post(
                server.endpoint + "/shares/models/schemas/mlflow/tables/experiment/query",
                headers=auth,
                json={},
            )
            urls = [json.loads(x)["file"]["url"] for x in query.text.splitlines()[2:]]
            assert urls and all(u.startswith(server.endpoint + "/files/") for u in urls)
            for url in urls:
                body = client.get(url).content
                name = url.split("?")[0].rsplit("/", 1)[-1]
                assert body == (sharing.warehouse / "mlflow" / "experiment" / name).read_bytes()


def test_plain_http_to_the_tls_port_fails_cleanly(
    sharing: Sharing, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    with serve_in_thread(
        str(sharing.catalog_path), tls_cert=str(cert), tls_key=str(key), audit=False
    ) as server:
        plain = server.endpoint.replace("https://", "http://") + "/shares"
        token = sharing.tokens["alice"]
        with pytest.raises(httpx.HTTPError):  # no HTTP answer: the token never went out in clear
            httpx.get(plain, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        context = ssl.create_default_context(cafile=str(ca))
        resp = httpx.get(
            server.endpoint + "/shares",
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=5,
        )
        assert resp.status_code == 200  # and the server serves on
        assert server.sharing.stats.server_errors == 0


def test_bad_tls_files_are_refused_before_serving(
    sharing: Sharing, certificates: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from arcuate.errors import ConfigurationError

    _, cert, key = certificates
    with pytest.raises(ConfigurationError, match="both a certificate and its key"):
        serve_in_thread(str(sharing.catalog_path), tls_cert=str(cert), audit=False)
    with pytest.raises(ConfigurationError, match="cannot use the TLS certificate"):
        serve_in_thread(
            str(sharing.catalog_path), tls_cert=str(key), tls_key=str(key), audit=False
        )
    with pytest.raises(ConfigurationError, match="No such file"):
        serve_in_thread(
            str(sharing.catalog_path), tls_cert=str(tmp_path / "no.pem"), tls_key=str(key)
        )


def _banner(args: list[str]) -> tuple[list[str], str]:
    """Start ``arcuate serve`` with ``args``, read its banner, stop it: (lines, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, *args],
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
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines, err


def test_serve_with_tls_prints_an_https_endpoint_and_no_warning(
    certificates: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, cert, key = certificates
    catalog = str(tmp_path / "shares.yaml")
    args = ["--catalog", catalog, "--port", "0", "--host", "0.0.0.0"]
    lines, err = _banner([*args, "--tls-cert", str(cert), "--tls-key", str(key)])
    assert lines[0].startswith("arcuate: serving Delta Sharing at https://"), lines
    assert "plain HTTP" not in err
    lines, err = _banner(args)
    assert lines[0].startswith("arcuate: serving Delta Sharing at http://")
    assert (
        "warning: serving plain HTTP on 0.0.0.0, which other machines reach: bearer tokens and "
        "file URLs would cross the network in clear. Serve HTTPS with --tls-cert and --tls-key, "
        "or put a TLS proxy in front and pass --public-url https://..."
    ) in err
    _, err = _banner([*args, "--public-url", "https://sharing.example.com/delta-sharing"])
    assert "plain HTTP" not in err  # a TLS proxy is in front
    _, err = _banner(["--catalog", catalog, "--port", "0"])  # loopback: nothing crosses a network
    assert "plain HTTP" not in err


def test_serve_refuses_half_a_tls_setup(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE, "--catalog", str(tmp_path / "s.yaml"), "--port", "0",
         "--tls-cert", str(tmp_path / "cert.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "serving HTTPS needs both a certificate and its key" in done.stderr


def test_profiles_for_another_scheme_are_reported() -> None:
    tls = Listening("127.0.0.1", 8443, "/delta-sharing", tls=True)
    assert tls.recipient_urls() == ["https://127.0.0.1:8443/delta-sharing"]
    assert tls.mismatch("https://127.0.0.1:8443/delta-sharing") is None
    assert tls.mismatch("http://127.0.0.1:8443/delta-sharing") == (
        "http: this server speaks HTTPS (--tls-cert)",
        "https://127.0.0.1:8443/delta-sharing",
    )
    assert tls.clear_text_warning() is None
    assert Listening("::", 80, "").clear_text_warning() is not None
    assert Listening("::1", 80, "").clear_text_warning() is None
