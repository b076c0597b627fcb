"""db/market.py and db/risk_state.py on PostgreSQL: bars, rules, pools, signals, and the risk view."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
from sqlalchemy import select

from ats.clock import WallClock
from ats.config import LevelSettings, MonitorSettings, RiskLimits
from ats.domain import Band, Bars, Direction, Signal, SymbolRules, intent_key
from ats.exchange.base import AccountInfo, MarginType, PositionInfo
from ats.lifecycle import Policy, open_position
from ats.placement import LOSS_LIMIT
from ats.risk import AccountSnapshot, Approved, Exposure, check_entry
from ats.universe import PoolResult
from db import market, risk_state
from db.journal import add_to_ledger, record_new_position
from db.models import OrderIntentRow, RiskLedgerRow, SignalRow, SymbolRow
from db.session import Database

D = Decimal
HOUR = 3_600_000
T0 = 1_767_225_600_000


def bars(symbol: str, start: int, count: int) -> Bars:
    times = np.arange(start, start + count * HOUR, HOUR, dtype=np.int64)
    close = 100.0 + np.arange(count, dtype=np.float64)
    ones = np.ones(count)
    return Bars(symbol, "1h", times, close, close + 1, close - 1, close, ones, close, ones * 10, ones / 2, close / 2)


def rules(symbol: str) -> SymbolRules:
    return SymbolRules(
        symbol=symbol, base_asset=symbol[:-4], quote_asset="USDT", status="TRADING", contract_type="PERPETUAL",
        tick_size=D("0.010"), min_price=D("0.01"), max_price=D(1_000_000), step_size=D("0.001"), min_qty=D("0.001"),
        max_qty=D(1000), market_step_size=D("0.001"), market_min_qty=D("0.001"), market_max_qty=D(100),
        min_notional=D(5), onboard_date_ms=T0 - 1000 * HOUR,
    )  # fmt: skip


def test_bars_are_stored_once_and_read_back_as_numpy(db: Database) -> None:
    with db.session() as session:
        assert market.store_bars(session, [bars("AAAUSDT", T0, 5), bars("BBBUSDT", T0 + HOUR, 2)]) == 7
        assert market.store_bars(session, [bars("AAAUSDT", T0 + 3 * HOUR, 4)]) == 2  # two of them were stored
    with db.session() as session:
        assert market.latest_bar_times(session, "1h", ["AAAUSDT", "BBBUSDT", "CCCUSDT"]) == {
            "AAAUSDT": T0 + 6 * HOUR,
            "BBBUSDT": T0 + 2 * HOUR,
        }
        loaded = market.load_bars(session, "1h", ["AAAUSDT", "CCCUSDT"], since_ms=T0 + HOUR)
        assert market.prune_bars(session, "1h", before_ms=T0 + 2 * HOUR) == 3
    a = loaded["AAAUSDT"]
    assert a.open_time.tolist() == [T0 + i * HOUR for i in range(1, 7)]
    assert a.close.tolist() == [101.0, 102.0, 103.0, 104.0, 102.0, 103.0]  # stored bars were kept as they were
    assert a.taker_buy_quote_volume.dtype == np.float64
    assert len(loaded["CCCUSDT"]) == 0


def test_symbols_are_replaced_by_their_current_rules(db: Database) -> None:
    with db.session() as session:
        market.upsert_symbols(session, {"AAAUSDT": rules("AAAUSDT")})
        market.upsert_symbols(session, {"AAAUSDT": replace(rules("AAAUSDT"), status="SETTLING")})
    with db.session() as session:
        row = session.scalars(select(SymbolRow)).one()
    assert (row.symbol, row.status, row.tick_size, row.market_max_qty) == ("AAAUSDT", "SETTLING", D("0.01"), D(100))


def test_the_newest_pool_and_the_last_good_one(db: Database) -> None:
    good = PoolResult("elite", ("BTCUSDT", "ETHUSDT"), T0, "2 selected", scores={"BTCUSDT": 1.0, "ETHUSDT": 0.5})
    fallen = PoolResult("elite", good.symbols, T0, "build failed; kept the previous", fell_back=True)
    with db.session() as session:
        market.save_pool(session, good, interval="1h", refresh_hours=24, flow_run_id=None)
    with db.session() as session:
        market.save_pool(session, fallen, interval="1h", refresh_hours=24, flow_run_id="run-2")
    with db.session() as session:
        assert market.latest_pool(session, "elite", "1h") == fallen
        assert market.latest_pool(session, "elite", "1h", good_only=True) == good
        assert market.latest_pool(session, "overlay", "1h") is None
        assert market.latest_pool(session, "elite", "1m") is None


def test_a_signal_is_recorded_once_and_placement_sees_only_new_fresh_ones(db: Database) -> None:
    old = Signal("AAAUSDT", Direction.LONG, 80.0, Band.STRONG, T0, D("100.5"), {"T": 40.0}, 0.01, 40.0, 75.0)
    new = Signal("BBBUSDT", Direction.SHORT, 90.0, Band.VERY_STRONG, T0 + HOUR, D(7), {"T": -60.0})
    weak = Signal("CCCUSDT", Direction.LONG, 60.0, Band.MEDIUM, T0 + HOUR, D(3))
    with db.session() as session:
        first, created = market.record_signal(session, "main", old, scan_id=None, source="scan")
        again, created_again = market.record_signal(session, "main", old, scan_id=None, source="manual")
        second, _ = market.record_signal(session, "main", new, scan_id=None, source="scan")
        market.record_signal(session, "main", weak, scan_id=None, source="scan")
    assert (created, created_again, again) == (True, False, first)
    with db.session() as session:
        found = market.new_signals(session, "main", min_score=75, since_bar_ms=T0 + HOUR)
        both = market.new_signals(session, "main", min_score=75)
        market.set_signal_status(session, first, "refused", code="max_positions", reason="5 positions")
        assert market.new_signals(session, "main", min_score=0, ids=[first]) == []
        assert market.signal_status(session, first) == "refused"
    assert [s.id for s in found] == [second]
    assert [s.signal.symbol for s in both] == ["BBBUSDT", "AAAUSDT"]
    assert both[1].signal == old
    with db.session() as session:
        row = session.get(SignalRow, first)
        assert row is not None
        assert (row.refusal_code, row.refusal_reason) == ("max_positions", "5 positions")


def test_the_risk_view_joins_positions_pending_entries_ledger_and_exchange(db: Database) -> None:
    now = WallClock().now_ms()
    signal = Signal("AAAUSDT", Direction.LONG, 85.0, Band.STRONG, now - HOUR, D(100), liquidity=80.0)
    snapshot = AccountSnapshot(D(10_000), D(10_000), D(0), D(0))
    decision = check_entry(signal, snapshot, RiskLimits(), rules=rules("AAAUSDT"), level_settings=LevelSettings())
    assert isinstance(decision, Approved)
    order = decision.order
    key = intent_key("main", "AAAUSDT", signal.bar_open_time_ms, Direction.LONG)
    position, actions = open_position(
        key=key, order=order, policy=Policy.build(rules("AAAUSDT"), order.plan, MonitorSettings()), time_ms=now
    )
    intent = OrderIntentRow(
        intent_key=key, account="main", symbol="AAAUSDT", direction="LONG", quantity=order.quantity,
        leverage=order.leverage, reference_price=order.reference_price, stop_price=order.levels.stop,
        tp1_price=order.levels.tp1, tp2_price=order.levels.tp2, tp1_qty=order.levels.tp1_qty,
        tp2_qty=order.levels.tp2_qty,
    )  # fmt: skip
    with db.session() as session:
        record_new_position(session, "main", position, actions, source="test", intent=intent, language="en")
        add_to_ledger(session, "main", now, realized_pnl=D(-30), fees=D(2), funding=D(1))
        risk_state.record_halt(session, "main", now, "first reason", by=LOSS_LIMIT)
        risk_state.record_halt(session, "main", now, "second reason", by="close-all (cli)")
        risk_state.note_unrealized(session, "main", now, D(-5), D(-36))
        risk_state.note_unrealized(session, "main", now, D(3), D(-28))
    info = AccountInfo(D(10_000), D(-12), D(9_988), D(9_000), D(9_000))
    by_hand = PositionInfo("ZZZUSDT", D(-3), D(10), D(10), D(11), D(-3), D(20), D(10), D(-33), MarginType.CROSSED, now)
    with db.session() as session:
        view = risk_state.risk_view(session, "main", info, [by_hand], {"AAAUSDT": D(101), "ZZZUSDT": D(11)}, now)
    snap = view.snapshot
    # The pending entry risks what it was sized to (at its reference price, not the mark); the position opened by
    # hand its unrealised loss.
    assert snap.exposures == (
        Exposure("AAAUSDT", order.notional, pending=True, risk=order.risk_usdt),
        Exposure("ZZZUSDT", D(33), risk=D(3)),
    )
    assert snap.committed_pnl == D(-31) - order.risk_usdt - D(3)
    assert view.reserved_margin == order.notional / order.leverage
    assert snap.available_balance == D(9_000) - view.reserved_margin
    assert snap.realized_pnl_today == D(-31)
    assert snap.daily_pnl == D(-43)
    assert view.unmanaged == ("ZZZUSDT",)
    assert (view.ledger.halted, view.ledger.halted_reason, view.ledger.halted_by) == (True, "first reason", LOSS_LIMIT)
    with db.session() as session:
        row = session.scalars(select(RiskLedgerRow)).one()
    assert (row.last_unrealized_pnl, row.worst_total_pnl) == (D(3), D(-36))


def test_a_pause_lasts_past_midnight_until_resumed_and_a_lift_is_recorded(db: Database) -> None:
    day = 86_400_000
    monday = 20_000 * day + 3_600_000  # 01:00 UTC
    with db.session() as session:
        risk_state.record_halt(session, "main", monday, "paused by telegram @op", by="telegram @op", until_resumed=True)
        risk_state.record_halt(session, "main", monday + 60_000, "close-all: test", by="close-all (cli)")
    with db.session() as session:
        tuesday = risk_state.ledger_day(session, "main", monday + day)  # no row of its own: the pause holds
        # A close-all on a paused day keeps the pause's reason and author.
        assert (tuesday.halted, tuesday.until_resumed, tuesday.halted_by) == (True, True, "telegram @op")
        risk_state.record_resume(session, "main", monday + day, by="cli alice", halt=tuesday)
    with db.session() as session:
        tuesday = risk_state.ledger_day(session, "main", monday + day)
        wednesday = risk_state.ledger_day(session, "main", monday + 2 * day)
        monday_ = risk_state.ledger_day(session, "main", monday)
    assert (tuesday.halted, tuesday.resumed_by, tuesday.resumed_ms) == (False, "cli alice", monday + day)
    assert tuesday.halted_reason == "paused by telegram @op"  # the lifted halt, for the report
    assert not wednesday.halted
    assert monday_.halted  # the record of the day it began stays
    with db.session() as session:  # halted again after the lift: the new halt's reason and author
        risk_state.record_halt(session, "main", monday + day + 60_000, "close-all: again", by="close-all (flow)")
    with db.session() as session:
        tuesday = risk_state.ledger_day(session, "main", monday + day)
    assert (tuesday.halted, tuesday.halted_reason, tuesday.halted_by) == (True, "close-all: again", "close-all (flow)")
    assert not tuesday.until_resumed
