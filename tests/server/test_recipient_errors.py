"""Recipient-side errors never carry a signed URL, a signature or a bearer token.

A file URL is a bearer capability for an hour: an error message ends up in notebooks,
tickets and CI logs. These provoke failures on real file URLs (expired, refused, server
gone, truncated) and check every error a user sees.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcuate.backends.sharing.reader import (
    DeltaSharingReader,
    SharedFileRef,
    SharedFiles,
)
from arcuate.errors import ArcuateError, BackendError, redact_secrets
from tests.server.conftest import Sharing


def assert_no_secret(sharing: Sharing, text: str) -> None:
    assert "sig=" not in text, text
    assert not re.search(r"[?&]se=", text), text
    for token in sharing.tokens.values():
        assert token not in text


@pytest.fixture
def expired_server(sharing: Sharing) -> Iterator[tuple[Path, str]]:
    """The session's catalog served with file URLs that are already expired (403)."""
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    with serve_in_thread(str(sharing.catalog_path), url_ttl_seconds=-60) as handle:
        profile = write_profile(
            sharing.root / "expired.share", handle.endpoint, sharing.tokens["alice"]
        )
        yield profile, handle.endpoint


def test_pandas_reads_of_refused_file_urls_hide_the_signature(
    sharing: Sharing, expired_server: tuple[Path, str]
) -> None:
    profile, _ = expired_server
    reader = DeltaSharingReader()
    with pytest.raises(ArcuateError) as info:
        reader.frame(f"{profile}#models.mlflow.experiment")
    assert_no_secret(sharing, str(info.value))
    assert "profile file" not in str(info.value)  # the profile was found; a data file was not
    assert "experiment" in str(info.value)
    with pytest.raises(ArcuateError) as info:
        reader.frame(f"{profile}#models.mlflow.experiment", limit=20)
    assert_no_secret(sharing, str(info.value))


def test_streamed_reads_of_refused_file_urls_hide_the_signature(
    sharing: Sharing, expired_server: tuple[Path, str]
) -> None:
    profile, _ = expired_server
    batches = DeltaSharingReader().batches(f"{profile}#models.mlflow.experiment")
    with pytest.raises(BackendError) as info:
        list(batches)
    assert "403" in str(info.value)
    assert_no_secret(sharing, str(info.value))


def test_a_server_that_went_away_is_reported_without_the_url_query(sharing: Sharing) -> None:
    from arcuate.backends.sharing.server import serve_in_thread, write_profile

    with serve_in_thread(str(sharing.catalog_path)) as handle:
        profile = write_profile(sharing.root / "gone.share", handle.endpoint, sharing.tokens["alice"])
        batches = DeltaSharingReader().batches(f"{profile}#models.mlflow.experiment")
    # the server is stopped: every download attempt is refused by the OS
    with pytest.raises(BackendError) as info:
        list(batches)
    assert "cannot be reached" in str(info.value) and "while downloading" in str(info.value)
    assert_no_secret(sharing, str(info.value))
    assert "/files/" in str(info.value) or "file" in str(info.value)


class _Truncating(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes and sends 10; then answers 404 with the URL in its body."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if type(self).calls <= 3:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        body = f"no such file: {self.path}".encode()
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_truncated_body_and_a_404_hide_the_signature(sharing: Sharing, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Truncating)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        token = sharing.tokens["alice"]
        url = f"http://{host}:{port}/delta-sharing/files/t/p.parquet?sp=r&se=1&rc=a&sig=SECRET"
        listing = SharedFiles(
            f"{tmp_path}/x.share#s.m.t", 1, [SharedFileRef(url, "f1", 1000, {})]
        )
        reader = DeltaSharingReader()
        with pytest.raises(ArcuateError) as info:
            list(reader._stream(listing))
        assert "SECRET" not in str(info.value) and token not in str(info.value)
        assert_no_secret(sharing, str(info.value))
        with pytest.raises(ArcuateError) as info:  # now the 404
            list(reader._stream(listing))
        assert "404" in str(info.value)
        assert "SECRET" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


# -- the net under every arcuate error ---------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET http://h:1/p/files/t/x.parquet?sp=r&se=1&rc=a&sig=abc failed", "sig=abc"),
        ("Max retries exceeded with url: /p/files/t/x?sp=r&se=1&sig=abc (Caused", "sig=abc"),
        ("url='https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&X-Amz-Credential=c'", "abc"),
        ("https://acct.blob.core.windows.net/c/b?sv=1&sig=abc%3D", "abc"),
        ("headers {'Authorization': 'Bearer s3cr3t-t0ken'}", "s3cr3t-t0ken"),
        ('{"bearerToken": "s3cr3t-t0ken", "endpoint": "x"}', "s3cr3t-t0ken"),
        ("http://u:pa55@host/x", "pa55"),
    ],
)
def test_arcuate_errors_redact_secrets(text: str, hidden: str) -> None:
    assert hidden not in redact_secrets(text)
    err = BackendError(f"could not read: {text}", hint=text)
    assert hidden not in str(err)
    assert hidden not in err.message


@pytest.mark.parametrize(
    "text",
    [
        "/tmp/x/acme.share#ml.mlflow.runs is not a shared table coordinate",
        "http://127.0.0.1:8080/delta-sharing?maxResults=10",
        "runs:/0123/model and models:/m/1",
        "value must be between 1 and 500, got '9999'",
    ],
)
def test_harmless_text_is_left_alone(text: str) -> None:
    assert redact_secrets(text) == text
