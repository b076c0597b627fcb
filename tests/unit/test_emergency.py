"""The emergency stop's decisions (pure): what is cancelled, how positions are closed, what the user is told; and
the request budget that survives the database going away mid-run."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ats.domain import Side
from ats.emergency import CloseAllReport, close_all_alert, close_all_markdown, closing_orders, symbols_to_cancel
from ats.exchange.base import OrderType
from ats.exchange.budget import BudgetState, FallbackBudgetStore, InMemoryBudgetStore
from ats.notify import alert_text
from tests.unit.test_reconcile import algo, held, order

D = Decimal
STAMP = 1_767_225_600_000


def report(**changes: object) -> CloseAllReport:
    fields: dict[str, object] = {
        "managed_closed": ["AAAUSDT"],
        "managed_deferred": {},
        "cancelled_symbols": ["AAAUSDT", "BBBUSDT"],
        "unmanaged_closed": ["BBBUSDT"],
        "failures": {},
        "still_open": [],
    }
    fields.update(changes)
    return CloseAllReport(**fields)  # type: ignore[arg-type]


def test_every_symbol_with_an_order_an_algo_order_or_a_position_is_cancelled() -> None:
    symbols = symbols_to_cancel(
        [order("o1", symbol="CCCUSDT"), order("o2", symbol="AAAUSDT")],
        [algo("a1", symbol="AAAUSDT"), algo("a2", symbol="DDDUSDT")],
        [held("1", symbol="BBBUSDT")],
    )
    assert symbols == ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]
    assert symbols_to_cancel([], [], []) == []


def test_each_position_is_closed_by_reduce_only_market_orders_no_larger_than_the_symbol_allows() -> None:
    plans = closing_orders(
        [held("250", symbol="AAAUSDT"), held("-0.5", symbol="BBBUSDT"), held("0", symbol="CCCUSDT")],
        {"AAAUSDT": D(100)},
        STAMP,
    )
    assert [symbol for symbol, _ in plans] == ["AAAUSDT", "BBBUSDT"]  # nothing to close on a flat position
    (_, long_orders), (_, short_orders) = plans
    assert [o.quantity for o in long_orders] == [D(100), D(100), D(50)]
    assert [o.quantity for o in short_orders] == [D("0.5")]  # no known maximum: at once
    every = long_orders + short_orders
    assert all(o.type is OrderType.MARKET and o.reduce_only for o in every)
    assert {o.side for o in long_orders} == {Side.SELL}
    assert {o.side for o in short_orders} == {Side.BUY}
    ids = [o.client_order_id for o in every]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(f"closeall-{STAMP}-") and len(i) <= 36 for i in ids)  # Binance's limit


def test_the_report_is_complete_only_when_nothing_is_open_and_nothing_failed() -> None:
    assert report().complete
    assert not report(still_open=["AAAUSDT"]).complete
    assert not report(failures={"BBBUSDT": "cancel: -1003"}).complete
    assert report(still_open=["AAAUSDT"], failures={"A": "x"}).summary() == "still open: AAAUSDT; failures: 1"
    assert report(not_recorded="connection refused").complete  # the exchange is what counts


def test_the_user_is_told_what_was_closed_and_what_was_not_recorded() -> None:
    note = close_all_alert(report(halted=True), "test")
    assert alert_text(note, "en")[0] == "Close-all: test"
    assert note.severity == "critical"
    assert "Closed: AAAUSDT, BBBUSDT." in alert_text(note, "en")[1]
    assert "halted until 00:00 UTC" in alert_text(note, "en")[1]
    assert "recorded" not in alert_text(note, "en")[1]

    bad = close_all_alert(report(still_open=["CCCUSDT"], not_recorded="connection refused"), "test")
    assert "STILL OPEN: CCCUSDT: act now." in alert_text(bad, "en")[1]
    assert "Nothing was recorded in the database (connection refused)" in alert_text(bad, "en")[1]
    assert "halted until" not in alert_text(bad, "en")[1]
    assert "NOT halted" in alert_text(bad, "en")[1]


def test_the_report_says_when_nothing_was_recorded() -> None:
    recorded = close_all_markdown(report(halted=True))
    assert "New entries are halted until 00:00 UTC" in recorded
    assert "No position is open on the exchange." in recorded
    assert "recorded" not in recorded

    text = close_all_markdown(report(not_recorded="no answer within 8 s", notes=["the alert could not be sent"]))
    assert "**Nothing was recorded in the database** (no answer within 8 s)" in text
    assert "records the closes once the database is back" in text
    assert "- Note: the alert could not be sent" in text


class BrokenStore:
    def __init__(self, error: Exception | None = None, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.error = error
        self.delay_s = delay_s

    async def update(self, scope: str, change: object) -> object:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return "shared"


def _take(state: BudgetState) -> tuple[BudgetState, str]:
    return BudgetState(used_weight=state.used_weight + 1), "local"


async def test_the_budget_stays_shared_while_the_database_answers() -> None:
    shared = InMemoryBudgetStore()
    store = FallbackBudgetStore(shared)
    assert await store.update("s", _take) == "local"  # the change ran in the shared store
    assert shared.snapshot("s").used_weight == 1
    assert store.shared


@pytest.mark.parametrize("broken", [BrokenStore(error=RuntimeError("db down")), BrokenStore(delay_s=5.0)])
async def test_the_budget_falls_back_to_this_process_when_the_database_stops_answering(broken: BrokenStore) -> None:
    store = FallbackBudgetStore(broken, wait_s=0.05)  # type: ignore[arg-type]
    assert await store.update("s", _take) == "local"
    assert await store.update("s", _take) == "local"
    assert broken.calls == 1  # given up once, not asked again
    assert not store.shared
    assert await FallbackBudgetStore(None).update("s", _take) == "local"
