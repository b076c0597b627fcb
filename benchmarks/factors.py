"""Factor engine speed: cold scans of 100 and 500 symbols x 300 bars, and the incremental cost per new bar.

Prints one JSON object. Targets (factors issue): cold 100 symbols < 100 ms on one core, incremental
< 50 us per symbol per new bar. Run from the repository root: `.venv/bin/python benchmarks/factors.py`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ats.factors import IncrementalScorer, MarketContext, scan
from tests.unit.factors.synthetic import as_of_after, make_market

BARS = 300
HOUR_MS = 3_600_000


def _timed(run: Callable[[], object], repeat: int) -> list[float]:
    """Seconds per run. Reported as best and median: the best is the code's cost, the median shows how much
    a busy machine (other test suites share these cores) adds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def _summary(seconds: list[float], scale: float, digits: int) -> dict[str, float]:
    return {"best": round(min(seconds) * scale, digits), "median": round(statistics.median(seconds) * scale, digits)}


def cold(symbols: int, *, with_extras: bool) -> dict[str, float]:
    """Milliseconds to score every symbol from 300 bars of history."""
    bars, extras, context = make_market(symbols, BARS, seed=1)
    as_of = as_of_after(bars[0])
    if not with_extras:
        extras, context = {}, MarketContext()
    return _summary(_timed(lambda: scan(bars, as_of_ms=as_of, extras=extras, context=context), 7), 1e3, 2)


def incremental_us_per_symbol(symbols: int, steps: int = 40, *, with_extras: bool = True) -> dict[str, float]:
    """Microseconds per symbol when all symbols get their next closed bar together (the hourly scan, or
    the monitor's batch)."""
    bars, extras, context = make_market(symbols, BARS + steps, seed=2)
    if not with_extras:
        extras, context = {}, MarketContext()
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, BARS) for b in bars], as_of_ms=int(bars[0].open_time[BARS]), extras=extras, context=context)
    updates = iter([[b.slice(j, j + 1) for b in bars] for j in range(BARS, BARS + steps)])
    closes = iter(int(bars[0].open_time[j]) + HOUR_MS for j in range(BARS, BARS + steps))
    seconds = _timed(lambda: scorer.update_many(next(updates), as_of_ms=next(closes), extras=extras), steps)
    return _summary(seconds, 1e6 / symbols, 1)


def single_update_us(steps: int = 200) -> dict[str, float]:
    """Microseconds for one symbol updated on its own (the monitor re-scoring one open position)."""
    bars, extras, context = make_market(1, BARS + steps, seed=3)
    b = bars[0]
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, BARS)], as_of_ms=int(b.open_time[BARS]), extras=extras, context=context)
    updates = iter([b.slice(j, j + 1) for j in range(BARS, BARS + steps)])
    closes = iter(int(b.open_time[j]) + HOUR_MS for j in range(BARS, BARS + steps))
    seconds = _timed(lambda: scorer.update(next(updates), as_of_ms=next(closes), extras=extras[b.symbol]), steps)
    return _summary(seconds, 1e6, 1)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the targets say
    cold(20, with_extras=False)  # warm the imports and caches
    result = {
        "benchmark": "factors",
        "bars": BARS,
        "cold_ms": {
            "100_symbols": cold(100, with_extras=False),
            "500_symbols": cold(500, with_extras=False),
            "100_symbols_all_extras": cold(100, with_extras=True),
            "500_symbols_all_extras": cold(500, with_extras=True),
        },
        "incremental_us_per_symbol_per_bar": {
            "batch_of_100_all_extras": incremental_us_per_symbol(100),
            "batch_of_500_all_extras": incremental_us_per_symbol(500),
            "batch_of_100_bars_only": incremental_us_per_symbol(100, with_extras=False),
            "single_symbol_all_extras": single_update_us(),
        },
        "targets": {"cold_100_symbols_ms": 100, "incremental_us_per_symbol": 50},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
