"""The backtest decides with the live code: the same scores as the cycle's scan, the same pool rules, the same entry
decision and lifecycle functions (not copies)."""

from __future__ import annotations

from decimal import Decimal

import ats.backtest.engine as engine
import tasks.placement
from ats.backtest.engine import record_tape
from ats.backtest.history import History
from ats.config import Settings
from ats.factors import scan
from ats.universe import UniverseConfig
from tests.unit.backtest.series import T0, walk

H = 3_600_000


def test_the_tape_holds_what_the_live_scan_scores_at_each_hour() -> None:
    symbols = {"BTCUSDT": 90_000.0, "ETHUSDT": 3_000.0, "AAAUSDT": 2.0, "BBBUSDT": 0.5, "CCCUSDT": 40.0}
    bars = {s: walk(s, 700, n, p) for n, (s, p) in enumerate(symbols.items())}
    settings = Settings(universe=UniverseConfig(elite_min_quote_volume=1e6, overlay_min_quote_volume=1e6))
    start, end = T0 + 600 * H, T0 + 700 * H
    tape = record_tape(History("1h", bars), settings, start, end, floor=0.0)
    assert len(tape.hours) == 100
    compared = 0
    for hour in tape.hours[::9]:
        as_of = hour.bar_open_ms + H
        assert hour.universe, "the pools chose nothing: the comparison would be empty"
        live = scan([bars[s].closed_by(as_of) for s in symbols], as_of_ms=as_of)
        expected = [(r.symbol, r.direction, r.strength) for r in live.ranked() if r.symbol in hour.universe]
        got = [(t.signal.symbol, t.signal.direction, t.signal.strength) for t in hour.signals]
        assert got == expected
        assert all(
            t.signal.price == Decimal(repr(float(bars[t.signal.symbol].closed_by(as_of).close[-1])))
            for t in hour.signals
        )
        compared += len(got)
    assert compared > 0


def test_the_trade_pass_calls_the_functions_the_order_placement_flow_calls() -> None:
    for name in ("decide_entries", "halt_reason", "open_approved"):
        assert vars(engine)[name] is vars(tasks.placement)[name], name
