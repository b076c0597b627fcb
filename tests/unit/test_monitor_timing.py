"""The monitor's retry timing after failed reconciliations."""

from __future__ import annotations

from monitor.worker import Tuning, reconcile_retry_delay_s


def test_failed_reconciliations_are_retried_soon_then_less_often() -> None:
    tuning = Tuning(reconcile_first_retry_s=1.0, reconcile_retry_s=15.0)
    assert [reconcile_retry_delay_s(n, tuning) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
