"""Azurite, Microsoft's Azure Storage emulator, for the tests of tables in Azure Blob Storage.

Azurite comes from npm, so it is installed on first use into a cache beside the test run's
(``$XDG_CACHE_HOME/arcuate-test``, about 40 s and 360 MB once) and started per test session
as its own process group on a free loopback port. The store is reached as a private Azure
endpoint is: an account name, its key and the endpoint URL (``use_emulator`` would ignore a
port other than 10000 when signing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from benchmarks.topology import free_port

VERSION: Final = "3.37.0"
ACCOUNT: Final = "devstoreaccount1"
#: Azurite's well-known key of its default account (public, as the emulator's documentation).
KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "arcuate-test" / f"azurite-{VERSION}"


def install() -> Path:
    """The ``azurite-blob`` program, installed from npm into :func:`cache` if it is not there
    (into a temporary folder first, so an interrupted install leaves nothing half made).

    Raises:
        FileNotFoundError: npm is not on PATH.
    """
    program = cache() / "node_modules" / ".bin" / "azurite-blob"
    if program.exists():
        return program
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed: it installs Azurite")
    cache().parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="azurite-", dir=cache().parent))
    try:
        subprocess.run(
            [npm, "install", "--prefix", str(work), "--no-audit", "--no-fund", "--no-save",
             "--loglevel=error", f"azurite@{VERSION}"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        os.replace(work, cache())
    except OSError:
        if not program.exists():  # another run finished first: use its copy
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return program


@dataclass
class Azurite:
    """A running Azurite blob service: ``endpoint`` is the account's URL."""

    endpoint: str
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _data: Path = field(repr=False)

    def options(self) -> dict[str, str]:
        """deltalake-style storage options that reach the account (the key included)."""
        return {
            "azure_storage_account_name": ACCOUNT,
            "azure_storage_account_key": KEY,
            "azure_storage_endpoint": self.endpoint,
            "azure_allow_http": "true",
        }

    def env(self) -> dict[str, str]:
        """The same settings as Azure's environment variables (what object_store reads)."""
        return {k.upper(): v for k, v in self.options().items()}

    def service(self) -> Any:
        """An Azure SDK client of the account (no retries: the tests want the first answer)."""
        from azure.storage.blob import BlobServiceClient

        credential = {"account_name": ACCOUNT, "account_key": KEY}
        return BlobServiceClient(self.endpoint, credential=credential, retry_total=0)

    def create_container(self, name: str) -> None:
        self.service().create_container(name)

    def blob_names(self, container: str, prefix: str = "") -> list[str]:
        client = self.service().get_container_client(container)
        return [b.name for b in client.list_blobs(name_starts_with=prefix)]

    def stop(self) -> None:
        """Kill the emulator's process group (its data is thrown away: no graceful end,
        which takes Azurite about 9 s) and delete its folder."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=30)
        shutil.rmtree(self._data, ignore_errors=True)


def start() -> Azurite:
    """Azurite's blob service on a free loopback port, with its data in a temporary folder."""
    program = install()
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="azurite-data-"))
    log = data / "azurite.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(program), "--silent", "--location", str(data / "blobs"), "--blobHost",
             "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck", "--loose"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Azurite(f"http://127.0.0.1:{port}/{ACCOUNT}", proc, data)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:  # not listening yet
            if proc.poll() is not None or time.monotonic() > deadline:
                err = log.read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"Azurite did not start: {err[-500:]}") from None
            time.sleep(0.1)


__all__ = ["ACCOUNT", "KEY", "Azurite", "install", "start"]
