"""Cold scan: 100 symbols x 300 closed 1h bars scored from nothing, on one core (target < 10 ms).

What the trading cycle's first scan runs (tasks/scanning.py): every symbol with a premium snapshot, BTC and ETH
among the symbols (the independence factor's context), from `scan` to the rows. Building the Bars is not timed.
"""

from __future__ import annotations

from common import load_average, one_core, report, summary, timed

from ats.factors import SymbolExtras, scan
from tests.unit.factors.synthetic import as_of_after, make_bars, make_market

SYMBOLS, BARS, RUNS = 100, 300, 60


def main() -> None:
    core = one_core()
    load_before = load_average()
    bars, extras, _ = make_market(SYMBOLS - 2, BARS, seed=1)
    bars += [make_bars("BTCUSDT", BARS, seed=2, price=60_000.0), make_bars("ETHUSDT", BARS, seed=3, price=3_000.0)]
    premiums = {b.symbol: SymbolExtras(premium=extras[bars[0].symbol].premium) for b in bars}
    as_of = as_of_after(bars[0])
    for _ in range(3):  # imports and caches warm
        scan(bars, as_of_ms=as_of, extras=premiums)
    samples, cpu = timed(lambda: scan(bars, as_of_ms=as_of, extras=premiums), RUNS)
    report(
        "cold scan, 100 symbols x 300 bars, one core",
        unit="ms",
        target=10.0,
        setup={"symbols": SYMBOLS, "bars": BARS, "extras": "premium for every symbol, BTC/ETH context", "core": core},
        stats=summary(samples, 1e3),
        cpu=summary(cpu, 1e3),
        load_average=[load_before, load_average()],
    )


if __name__ == "__main__":
    main()
