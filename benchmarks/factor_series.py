"""Every bar of a history scored at once (`score_series`, what a backtest replays): one year of 1h bars x 100
symbols with BTC/ETH context, whole call, one core (target < 10 s). Equal, bar by bar, to a cold scan of the
history up to each bar (tests/unit/factors/test_series.py)."""

from __future__ import annotations

from common import load_average, one_core, report, summary, timed

from ats.factors import MarketContext, score_series
from tests.unit.factors.synthetic import as_of_after, make_bars

SYMBOLS, BARS, RUNS = 100, 365 * 24, 3


def main() -> None:
    core = one_core()
    load_before = load_average()
    bars = [make_bars(f"S{i:03d}USDT", BARS, seed=i) for i in range(SYMBOLS)]
    context = MarketContext(
        make_bars("BTCUSDT", BARS, seed=1000, price=60_000.0), make_bars("ETHUSDT", BARS, seed=1001, price=3_000.0)
    )
    as_of = as_of_after(bars[0])
    samples, cpu = timed(lambda: score_series(bars, as_of_ms=as_of, context=context), RUNS)
    report(
        "score series, one year of 1h bars x 100 symbols, one core",
        unit="s",
        target=10.0,
        setup={"symbols": SYMBOLS, "bars": BARS, "extras": "BTC/ETH context", "core": core},
        stats=summary(samples, 1.0, 2),
        cpu=summary(cpu, 1.0, 2),
        load_average=[load_before, load_average()],
    )


if __name__ == "__main__":
    main()
