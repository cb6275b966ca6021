"""The "did you mean" hint lists what a search could read, and never hides a bug.

A failing MLflow search (the server went away, a permission error) leaves the hint with the
names read so far; anything else (a programming error) is not swallowed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from arcuate.backends.mlflow.source import _names


class _Page(list[Any]):
    """A page of a paginated MLflow search: its items and the next page's token."""

    def __init__(self, items: list[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


def _paged(fail: BaseException) -> Any:
    """A search whose first page names two experiments and whose second page fails."""

    def search(token: str | None) -> _Page:
        if token is None:
            return _Page([SimpleNamespace(name="churn"), SimpleNamespace(name="churn-v2")], "next")
        raise fail

    return search


@pytest.mark.parametrize(
    "fail",
    [MlflowException("PERMISSION_DENIED"), ConnectionError("refused"), OSError("reset")],
)
def test_a_failing_search_leaves_the_names_read_so_far(fail: BaseException) -> None:
    assert _names(_paged(fail)) == ["churn", "churn-v2"]


def test_a_programming_error_in_the_search_is_not_swallowed() -> None:
    with pytest.raises(TypeError, match="bug"):
        _names(_paged(TypeError("bug")))
