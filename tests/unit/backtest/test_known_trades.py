"""A backtest over a few hand-made bars whose every trade was worked out by hand (see the comments)."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np

from ats.backtest.engine import Hour, Tape, TapeSignal, TradeSettings, trade
from ats.backtest.history import History
from ats.backtest.report import trades_of
from ats.config import RiskLimits, Settings
from ats.data.series import FundingRates
from ats.domain import Band, Bars, Direction, Signal, SymbolRules

H = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC

# Levels for a "good" signal (strength 70, no trend, average liquidity, calm): stop 2 %, TP1 4 % (half), TP2 8 %.
# Risk 10 % per trade and leverage 10, so every entry is the 10,000 USDT maximum; no slippage, taker fee 0.05 %.
BARS = {
    # LONG at 100 (qty 100). Hour 2: funding 0.01 % at its open (100.5): -1.005; TP1 50 @ 104, the stop moves to
    # breakeven: (100 x 50 + fees 5 + 2.6 + funding 1.005) / (50 x 0.9995) = 100.2222 -> 100.23, above the low 100.3.
    # Hour 3: TP2 50 @ 108. Gross 200 + 400 = 600, fees 0.0005 x (10,000 + 5,200 + 5,400) = 10.3, net 588.695.
    "AAAUSDT": [(100, 100, 100, 100), (100, 101, 99.5, 100.5), (100.5, 104.5, 100.3, 104), (104, 108.5, 103, 107)],
    # SHORT at 50 (qty 200), stop 51. Hour 2 opens at 51.5, beyond the stop: filled at the open. Gross -300,
    # fees 0.0005 x (10,000 + 10,300) = 10.15, net -310.15.
    "BBBUSDT": [(50, 50, 50, 50), (50, 50.5, 49.8, 50.2), (51.5, 52, 51.2, 51.8), (51.8, 52, 51, 51.5)],
    # LONG at 10 (qty 1,000), stop 9.8, TP1 10.4: hour 2 reaches both; the stop is assumed first. Gross -200,
    # fees 0.0005 x (10,000 + 9,800) = 9.9, net -209.9.
    "CCCUSDT": [(10, 10, 10, 10), (10, 10.1, 9.9, 10), (10, 10.5, 9.7, 10.2), (10.2, 10.3, 10.1, 10.2)],
    # LONG at 20 (qty 500), stop 19.6, TP1 20.8: hour 2 fills TP1 250 @ 20.8; the breakeven stop (20 x 250 + 7.6) /
    # (250 x 0.9995) = 20.0404 -> 20.05 is placed during the bar and its low 19.9 reaches it: assumed hit, at its
    # trigger. Gross 200 + 12.5, fees 0.0005 x (10,000 + 5,200 + 5,012.5) = 10.10625, net 202.39375.
    "DDDUSDT": [(20, 20, 20, 20), (20, 20.1, 19.9, 20), (20, 20.9, 19.9, 20.5), (20.5, 20.6, 20.4, 20.5)],
}
SIGNALS = {"AAAUSDT": Direction.LONG, "BBBUSDT": Direction.SHORT, "CCCUSDT": Direction.LONG, "DDDUSDT": Direction.LONG}
EXPECTED = {  # symbol: direction, entry, exit price, exit, tp1, fees, funding, net
    "AAAUSDT": ("LONG", D(100), D(106), "tp2", True, D("10.3"), D("-1.005"), D("588.695")),
    "BBBUSDT": ("SHORT", D(50), D("51.5"), "stop", False, D("10.15"), D(0), D("-310.15")),
    "CCCUSDT": ("LONG", D(10), D("9.8"), "stop", False, D("9.9"), D(0), D("-209.9")),
    "DDDUSDT": ("LONG", D(20), D("20.425"), "breakeven_stop", True, D("10.10625"), D(0), D("202.39375")),
}


def bars_of(symbol: str) -> Bars:
    rows = np.array(BARS[symbol], dtype=float)
    nan = np.full(len(rows), np.nan)
    times = T0 + H * np.arange(len(rows), dtype=np.int64)
    return Bars(
        symbol, "1h", times, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 0] * 0 + 1, nan, nan, nan, nan
    )


def rules_of(symbol: str) -> SymbolRules:
    return SymbolRules(
        symbol=symbol, base_asset=symbol[:3], quote_asset="USDT", status="TRADING", contract_type="PERPETUAL",
        tick_size=D("0.01"), min_price=D("0.01"), max_price=D(1_000_000), step_size=D("0.001"), min_qty=D("0.001"),
        max_qty=D(1_000_000), market_step_size=D("0.001"), market_min_qty=D("0.001"), market_max_qty=D(0),
        min_notional=D(5),
    )  # fmt: skip


def signal(symbol: str) -> TapeSignal:
    price = D(repr(BARS[symbol][0][3]))
    return TapeSignal(Signal(symbol, SIGNALS[symbol], 70.0, Band.GOOD, T0, price, atr_pct=0.01), 0.0)


def test_every_trade_is_the_one_worked_out_by_hand() -> None:
    history = History(
        "1h",
        {s: bars_of(s) for s in BARS},
        funding={"AAAUSDT": FundingRates("AAAUSDT", (T0 + 2 * H,), (D("0.0001"),), (None,))},
        rules={s: rules_of(s) for s in BARS},
    )
    hours = [Hour(T0, tuple(BARS), tuple(signal(s) for s in BARS), {})]
    hours += [Hour(T0 + n * H, tuple(BARS), (), {}) for n in (1, 2, 3)]
    tape = Tape("1h", T0, T0 + 4 * H, tuple(hours))
    settings = Settings(limits=RiskLimits(risk_per_trade_pct=D(10), leverage=10, max_leverage=10))
    options = TradeSettings(balance=D(10_000), slippage=D(0), min_score=60.0)

    run = trade(tape, history, settings, options)
    closes = {s: D(repr(BARS[s][-1][3])) for s in BARS}
    trades = {t.symbol: t for t in trades_of(run, closes)}

    assert set(trades) == set(BARS)
    for symbol, (direction, entry, exit_price, exit, tp1, fees, funding, net) in EXPECTED.items():
        t = trades[symbol]
        assert (t.direction, t.entry_price, t.exit_price, t.exit, t.tp1) == (direction, entry, exit_price, exit, tp1)
        assert (t.fees, t.funding, t.net_pnl) == (fees, funding, net), symbol
        assert t.opened_ms == T0 + H  # decided at the close of hour 0, filled at the open of hour 1
    assert run.equity[-1] == (T0 + 4 * H, D(10_000) + sum(e[-1] for e in EXPECTED.values()))
    assert run.reconcile_requests == 0
