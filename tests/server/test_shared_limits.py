"""With ``arcuate serve --workers N`` a recipient gets its rate limit from the server as a whole:
the worker processes draw from one bucket per recipient, in a sqlite file of the run."""

from __future__ import annotations

import multiprocessing
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import pytest

from arcuate.backends.sharing.server.access import SharedBuckets
from tests.conftest import _free_port
from tests.processes import running
from tests.server.conftest import Sharing
from tests.server.test_access import run

ARCUATE = str(Path(sys.executable).with_name("arcuate"))


def _takes(path: str, count: int) -> int:
    """Tokens taken in ``count`` tries (in a process of its own)."""
    buckets = SharedBuckets(path)
    return sum(buckets.take("carol\x004\x003600", 4, 3600) == 0 for _ in range(count))


def test_processes_draw_from_one_bucket(tmp_path: Path) -> None:
    path = str(tmp_path / "buckets.sqlite")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        taken = list(pool.map(_takes, [path, path], [6, 6]))
    assert sum(taken) == 4, taken  # the limit, not twice it
    wait = SharedBuckets(path).take("carol\x004\x003600", 4, 3600)
    assert 0 < wait <= 900  # a token comes back every 15 minutes
    assert SharedBuckets(path).take("dave\x004\x003600", 4, 3600) == 0  # others have their own


@pytest.fixture
def workers(sharing: Sharing, tmp_path: Path) -> Iterator[str]:
    """``arcuate serve --workers 2`` on the shared catalog; its endpoint."""
    port = _free_port()
    cmd = [ARCUATE, "serve", "--catalog", str(sharing.catalog_path), "--port", str(port),
           "--workers", "2", "--no-audit"]  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}/delta-sharing"

    def answers() -> bool:
        try:
            return httpx.get(endpoint + "/shares", timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    with running(cmd, tmp_path / "serve.log", answers, timeout=60):
        time.sleep(1)  # the second worker too
        yield endpoint


def test_two_workers_keep_one_limit(sharing: Sharing, workers: str) -> None:
    name = f"limited_{uuid.uuid4().hex[:8]}"
    _, token = sharing.new_recipient(name, "models")
    try:
        run(sharing, f"ALTER RECIPIENT {name} SET RATE LIMIT 4 REQUESTS PER HOUR")
        codes = []
        for _ in range(10):  # a connection each: uvicorn deals them to both workers
            with httpx.Client(timeout=10, headers={"Connection": "close"}) as client:
                headers = {"Authorization": f"Bearer {token}"}
                codes.append(client.get(workers + "/shares", headers=headers).status_code)
        assert sorted(codes) == [200] * 4 + [429] * 6, codes
    finally:
        sharing.catalog.drop_recipient(name, if_exists=True)
