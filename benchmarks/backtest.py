"""The backtest's speed on the path `ats backtest` runs: one year of 1h bars for 100 symbols (876,000 bars), the full
lifecycle, on one core.

Synthetic random-walk bars (OHLCV only, like the public history), seeded. Each run is timed in three parts:
scoring every hour (`record_tape`: the pools and the factor engine), one trade pass (the entry decision, the
lifecycle and the paper exchange) and the whole `backtest` call with no baseline draws. Prints one JSON object:
the setup, then min / median / p99 (of the runs) per part, and the load average before and after.
Target: the whole backtest under 10 s.

Run from the repository root: `.venv/bin/python benchmarks/backtest.py [--symbols 100] [--hours 8760] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ats.backtest import WARMUP_BARS, TradeSettings, backtest
from ats.backtest.engine import record_tape, trade
from ats.backtest.history import History
from ats.config import Settings
from ats.domain import Bars

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def symbol_bars(n: int, hours: int, rng: np.random.Generator) -> Bars:
    price = float(10 ** rng.uniform(-2, 4.5))
    close = price * np.exp(np.cumsum(rng.normal(0.0, rng.uniform(0.006, 0.02), hours)))
    open_ = np.concatenate([[price], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.006, hours))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.006, hours))
    volume = rng.uniform(3e6, 9e6, hours) / close
    nan = np.full(hours, np.nan)
    times = T0 + H * np.arange(hours, dtype=np.int64)
    name = "BTCUSDT" if n == 0 else "ETHUSDT" if n == 1 else f"S{n:03d}USDT"
    return Bars(name, "1h", times, open_, high, low, close, volume, nan, nan, nan, nan)


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(np.ceil(0.99 * len(ordered))) - 1)]
    return {"min": round(ordered[0], 3), "median": round(statistics.median(ordered), 3), "p99": round(p99, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    total_hours = args.hours + WARMUP_BARS
    history = History("1h", {b.symbol: b for b in (symbol_bars(n, total_hours, rng) for n in range(args.symbols))})
    start, end = T0 + WARMUP_BARS * H, T0 + total_hours * H
    settings = Settings()
    options = TradeSettings()
    load_before = os.getloadavg()
    tape_s, trade_s, whole_s = [], [], []
    trades = 0
    for _ in range(args.runs):
        began = time.process_time()
        tape = record_tape(history, settings, start, end)
        tape_s.append(time.process_time() - began)
        began = time.process_time()
        run = trade(tape, history, settings, options)
        trade_s.append(time.process_time() - began)
        trades = sum(1 for p in run.journal.positions.values() if p.entry_qty > 0)
        began = time.process_time()
        backtest(history, settings, options, start_ms=start, end_ms=end, random_draws=-1)
        whole_s.append(time.process_time() - began)
    print(
        json.dumps(
            {
                "benchmark": "backtest",
                "setup": {
                    "symbols": args.symbols,
                    "hours": args.hours,
                    "bars": args.symbols * args.hours,
                    "warmup_bars": WARMUP_BARS,
                    "runs": args.runs,
                    "clock": "process CPU time (one core)",
                    "trades_per_run": trades,
                },
                "score_every_hour_s": stats(tape_s),
                "trade_pass_s": stats(trade_s),
                "whole_backtest_s": stats(whole_s),
                "target_whole_s": 10.0,
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
