"""Bars.closed_by: only bars whose close time has passed, never the forming one."""

from __future__ import annotations

import numpy as np

from ats.domain import BAR_FIELDS, Bars

HOUR = 3_600_000


def bars(count: int) -> Bars:
    zeros = np.ones(count, dtype=np.float64)
    return Bars("BTCUSDT", "1h", np.arange(count, dtype=np.int64) * HOUR, *([zeros] * len(BAR_FIELDS)))


def test_a_bar_counts_once_its_interval_has_passed() -> None:
    b = bars(5)
    assert len(b.closed_by(3 * HOUR - 1)) == 2  # the bar opened at 2h is still forming
    assert len(b.closed_by(3 * HOUR)) == 3
    assert len(b.closed_by(100 * HOUR)) == 5
    assert len(b.closed_by(0)) == 0
