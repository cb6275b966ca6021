"""The gap markers of the conformance suite are checked: known backends, and a reason."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import SHARE_READERS, TABLE_STORES, check_marker


def test_the_suites_run_over_every_builtin_backend() -> None:
    assert {"deltalake", "spark"} <= set(TABLE_STORES)
    assert {"delta-sharing", "spark"} <= set(SHARE_READERS)


@pytest.mark.parametrize(
    ("mark", "message"),
    [
        (pytest.mark.notimpl(["sprak"], reason="r"), "unknown: sprak"),
        (pytest.mark.notyet("spark", reason="r"), "must name known backends in a list"),
        (pytest.mark.never([], reason="r"), "must name known backends"),
        (pytest.mark.notimpl(["spark"]), "@notimpl needs reason="),
    ],
)
def test_a_marker_naming_an_unknown_backend_or_no_reason_is_refused(
    mark: pytest.MarkDecorator, message: str
) -> None:
    with pytest.raises(pytest.UsageError, match=message):
        check_marker("t", mark.mark)
    check_marker("t", pytest.mark.notimpl(["deltalake", "delta-sharing"], reason="r").mark)
