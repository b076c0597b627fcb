"""Every chaos scenario, once (benchmarks/chaos.py runs each many times): whatever fails, nothing is sent twice,
nothing is lost, every position ends flat and recorded, no alert cries wolf, and no position stays without an
exchange-side stop for long (the bound here is loose for a loaded machine; the benchmark reports the figure)."""

from __future__ import annotations

import pytest

from db.session import Database
from tests.chaos.bench import Scenario, run_scenario
from tests.chaos.scenarios import SCENARIOS

UNPROTECTED_BOUND_S = 10.0
DAY_LOSS_ROUNDING_USDT = 0.0
FAST_SCENARIOS = [s for s in SCENARIOS if not s.slow]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scenario", FAST_SCENARIOS, ids=[s.name for s in FAST_SCENARIOS])
async def test_the_promises_hold_under(scenario: Scenario, db: Database) -> None:
    figures = await run_scenario(
        db, scenario, runs=1, seed=SCENARIOS.index(scenario), first_exit=SCENARIOS.index(scenario)
    )
    report = figures.as_json()
    assert figures.errors == 0, report
    assert figures.duplicates == 0, report
    assert figures.lost_events == 0, report
    assert figures.false_alerts == 0, report
    assert figures.unprotected_seconds_max < UNPROTECTED_BOUND_S, report
    assert figures.limits_exceeded == 0, report
    assert figures.orders_after_vanish == 0, report  # nothing is sent for a position the exchange forgot
    # The daily loss cap: the day never loses more than the limit plus what the fills slipped past their prices.
    assert figures.day_loss_beyond_slippage_max <= DAY_LOSS_ROUNDING_USDT, report
