"""Monitor CPU with 300 symbols of markPrice@1s (target < 20 % of a core): the real `ats monitor` process watching
one protected position on each of N symbols, the sim in its own process in realtime mode (every symbol's mark
price every second, as Binance's `<symbol>@markPrice@1s`; the closed-bar streams too).

The monitor subscribes to the symbols of open positions only, and an account holds at most 200 open algo orders
(Binance's limit, the sim's too: -4045), i.e. 66 positions with a stop and two take-profits. 300 symbols cannot be
reached with protected positions, so the default is 60 and the 300-symbol figure is extrapolated linearly from the
CPU per symbol (`extrapolated_300_symbols`, labelled as such); the target is scaled the same way.

The sim replays generated klines (a seeded random walk, 300 symbols x 800 1h bars, written to a temporary
directory) because its synthetic catalogue has fewer symbols. The positions are opened in batches and protected
before the window starts; the sample is the monitor process's CPU time (user + system) over each window of wall
time divided by the window. `--symbols N` (default 60), `--window S` (default 20), `--runs N` (default 3).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import load_average, report, summary
from stack import BARS, Stack, cpu_seconds, stack, wait_ready, write_klines


async def open_all(s: Stack, symbols: list[str], batch: int = 10) -> None:
    for first in range(0, len(symbols), batch):
        await asyncio.gather(*(s.open_protected(symbol) for symbol in symbols[first : first + batch]))


async def measure(count: int, window_s: float, runs: int) -> None:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="ats-bench-klines-") as tmp:
        write_klines(Path(tmp), count)
        async with stack(replay_dir=Path(tmp), history_bars=BARS - 100, realtime=True) as s:
            symbols = sorted(x for x in await s.exchange.exchange_info() if x.startswith("S"))[:count]
            s.sim.control.set_balance("10000000")
            monitor = s.monitor()
            monitor.start()
            try:
                wait_ready(s.database, monitor)
                opening = time.monotonic()
                await open_all(s, symbols)
                opened_s = time.monotonic() - opening
                await asyncio.sleep(5)  # the last protections' follow-ups settle
                shares = []
                for _ in range(runs):
                    cpu, started = cpu_seconds(monitor.pid), time.monotonic()
                    await asyncio.sleep(window_s)
                    shares.append((cpu_seconds(monitor.pid) - cpu) / (time.monotonic() - started))
                still_open = sum(1 for _ in s.desk.journal.open_positions())
            finally:
                monitor.terminate()
    report(
        f"monitor CPU, {count} symbols of markPrice@1s (the 300-symbol target of 20 % scaled to {count})",
        unit="% of a core",
        target=round(20.0 * count / 300, 2),
        setup={"symbols": count, "positions": count, "open_at_end": still_open, "window_s": window_s, "runs": runs,
               "sim": "own process, realtime, replayed klines", "monitor": "ats monitor, own process, default timings",
               "opening_all_s": round(opened_s, 1)},
        stats=summary(shares, scale=100.0),
        extrapolated_300_symbols=summary([x * 300 / count for x in shares], scale=100.0),
        load_average={"before": load_before, "after": load_average()},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=60)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.symbols, args.window, args.runs))


if __name__ == "__main__":
    main()
