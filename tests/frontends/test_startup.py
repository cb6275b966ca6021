"""``arcuate --help`` and ``arcuate explain`` load neither MLflow nor the server stack.

Each command runs in a fresh interpreter (as :mod:`benchmarks.startup` measures it) and the
test reads which heavy libraries it left in ``sys.modules``: what is not imported costs no
start-up time, and this stays true without any timing assertion.
"""

from __future__ import annotations

import pytest

from benchmarks.startup import CASES, HEAVY, heavy_modules


@pytest.mark.parametrize("case", list(CASES))
def test_the_command_loads_no_heavy_library(case: str) -> None:
    assert "mlflow" in HEAVY and "starlette" in HEAVY
    assert heavy_modules(CASES[case]) == []
