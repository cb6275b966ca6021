"""``arcuate demo``: provider to recipient over the protocol, proven equal, in seconds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from arcuate.demo import run_demo
from arcuate.errors import ArcuateError


def test_demo_matches_quickly(workdir: Path) -> None:
    out = io.StringIO()
    result = run_demo(str(workdir / "demo"), console=Console(file=out, width=120))
    text = out.getvalue()
    assert result["matches"] is True
    assert result["seconds"] < 45
    assert result["experiment"]["added"] == 3 and result["model"]["added"] == 2
    assert "they match" in text and "✗" not in text
    assert text.count("✓") == 5  # three runs, two versions
    assert (workdir / "demo" / "demo-recipient.share").exists()
    # the directory is kept for inspection; running again there is refused, not mixed in
    with pytest.raises(ArcuateError, match="already holds a demo"):
        run_demo(str(workdir / "demo"), console=Console(file=io.StringIO()))
