"""Servers the tests start as processes: each in its own process group, waited for until it
answers, and stopped with its whole group (SIGTERM, then SIGKILL) on the way out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def running(
    cmd: list[str], log: Path, ready: Callable[[], bool], *, timeout: float = 90, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` started with its output in ``log``, once ``ready()`` says so (an ``OSError``
    from it counts as not yet); a RuntimeError with the log if it exits or takes too long."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc``'s process group (SIGTERM, then SIGKILL after 15 s); nothing if it ended."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def mlflow_server_command(backend: str, artifacts: Path, port: int, workers: int) -> list[str]:
    """The command of an ``mlflow server`` on loopback (start it without the job workers:
    ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``)."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def healthy(url: str) -> Callable[[], bool]:
    """Whether the server at ``url`` answers its ``/health`` (for :func:`running`)."""

    def check() -> bool:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
            return bool(answer.status == 200)

    return check
