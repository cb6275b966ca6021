"""``python -m benchmarks s3-files`` at its smallest: both modes export the same table."""

from __future__ import annotations

import pytest

from benchmarks import topology
from benchmarks.s3_files import main

pytestmark = pytest.mark.s3


def test_s3_files_smoke(s3: topology.S3, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "2"], s3) == 0
    out = capsys.readouterr().out
    assert "same table both ways: True" in out
    assert '"ListObjectsV2": 2' in out  # arcuate's: one listing per run
