"""Monitor latency as the exchange sees it: the real `ats monitor` process against the sim in its own process.

Two figures, one sample of each per position (positions opened one after the other, on a rotation of symbols):
- TP1 fill -> breakeven stop placed (target < 20 ms p99): the price is set beyond TP1 (`POST /sim/price`: the sim
  fills TP1 and pushes the fill on the user stream); the sample ends when the sim receives the breakeven stop
  (`POST /fapi/v1/algoOrder`, STOP_MARKET, that symbol).
- mark tick -> order sent (target < 5 ms p99): the one tick that makes the monitor send an order, the supervision
  close (the exchange stop did not fire within 5 s of exchange time). Its stop cancelled behind its back (the
  event hidden by a short stall of the private stream), the price is set 3 % beyond the stop (the monitor records
  the crossing), then the market moves 5 s on in one tick (`POST /sim/advance`); the sample ends when the sim
  receives the close (`POST /fapi/v1/order`, that symbol).
Both ends are the sim's arrival times (sim_process.py records each request on arrival), so a sample holds the
tick's publication, the monitor's work and both network legs on loopback: what a user would see.

`--samples N` (default 100; at least 100 for a p99 that is not simply the maximum); `--profile FILE` runs the
monitor under cProfile (slower: for where the time goes, not for the figures). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from common import figure, load_average, report_all, summary
from sim_process import Received
from stack import Stack, cpu_seconds, stack, wait_ready

from ats.lifecycle import Phase, Role
from tests.integration.monitor.harness import breakeven_up

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "LTCUSDT", "XRPUSDT", "LINKUSDT", "DOTUSDT")


@dataclass
class Skew:
    advanced_ms: int = 0  # how far the benchmark moved the sim's clock


def arrival(received: list[Received], path: str, symbol: str, after_ns: int, **params: str) -> int:
    """Arrival (ns) of the first request to `path` for `symbol` after `after_ns` with the given parameters."""
    for r in received:
        if (
            r.ns >= after_ns
            and r.path == path
            and r.method == "POST"
            and r.params.get("symbol") == symbol
            and all(r.params.get(k) == v for k, v in params.items())
        ):
            return r.ns
    raise AssertionError(f"the sim received no POST {path} {params} for {symbol}")


async def one_position(s: Stack, symbol: str, clock: Skew) -> tuple[float, float]:
    """(TP1 -> breakeven, tick -> close) in ms for one position."""
    p = await s.open_protected(symbol)
    assert p.levels is not None
    since = s.sim.count()
    s.sim.control.set_price(symbol, p.levels.tp1 + p.policy.rules.tick_size)
    p = await s.desk.wait(p.key, breakeven_up, "breakeven", timeout_s=30)
    seen = s.sim.received(since)
    moved = arrival(seen, "/sim/price", symbol, 0)
    breakeven = arrival(seen, "/fapi/v1/algoOrder", symbol, moved, type="STOP_MARKET")

    stop = p.current_order(Role.STOP)
    assert stop is not None
    assert p.stop_price is not None
    # The stop vanishes behind the monitor's back: its cancellation is hidden (the private stream stalled while it
    # happens, the event lost); the stream is back before the price moves, so the close's fill arrives as usual.
    s.sim.admin("/sim/ws/stall", {"path": "/private/*", "seconds": 30})
    await s.exchange.cancel_algo_order(client_algo_id=stop.client_id)
    s.sim.admin("/sim/ws/resume", {"path": "/private/*"})
    s.sim.control.set_price(symbol, p.stop_price * Decimal("0.97"))
    await s.desk.wait(p.key, lambda p: p.stop_crossed_ms is not None, "the crossing recorded", timeout_s=10)
    # The sim's clock jumps with the market: without a skew its server time would run 5 s ahead of the clients'
    # timestamps, beyond recvWindow, and the close would be refused and resent after a time resync (a cost of the
    # benchmark, not of production). So the server time is held 0.6 s behind before the jump, 4.4 s ahead after
    # it, and brought back after the sample: every request in between is inside the 5 s recvWindow.
    clock.advanced_ms += 5000
    s.sim.admin("/sim/faults", {"clock_skew_ms": -clock.advanced_ms + 5000 - 600, "rules": [], "replace": False})
    since = s.sim.count()
    s.sim.control.advance(5, tick_seconds=5)
    await s.desk.wait(p.key, lambda p: p.phase is Phase.CLOSED, "closed by supervision", timeout_s=30)
    s.sim.admin("/sim/faults", {"clock_skew_ms": -clock.advanced_ms, "rules": [], "replace": False})
    seen = s.sim.received(since)
    ticked = next(r.ns for r in seen if r.path == "/sim/advance")
    close = arrival(seen, "/fapi/v1/order", symbol, ticked, type="MARKET")
    return (breakeven - moved) / 1e6, (close - ticked) / 1e6


async def measure(samples: int, profile: Path | None) -> None:
    load_before = load_average()
    async with stack() as s:
        monitor = s.monitor(profile=profile)
        monitor.start()
        try:
            wait_ready(s.database, monitor)
            cpu_before = cpu_seconds(monitor.pid)
            breakeven, tick = [], []
            clock = Skew()
            for n in range(samples):
                b, t = await one_position(s, SYMBOLS[n % len(SYMBOLS)], clock)
                breakeven.append(b)
                tick.append(t)
                print(f"{n + 1}/{samples}: TP1 -> breakeven {b:.1f} ms, tick -> order {t:.1f} ms", file=sys.stderr)
                if n % 10 == 9:
                    s.sim.control.set_balance("10000")  # supervision closes lose a little each time
            cpu = cpu_seconds(monitor.pid) - cpu_before
            resyncs = monitor.log_path.read_text(errors="replace").count("resyncing server time")
        finally:
            monitor.terminate()
            if os.environ.get("ATS_BENCH_KEEP_LOG"):
                shutil.copy(monitor.log_path, os.environ["ATS_BENCH_KEEP_LOG"])
    setup = {
        "positions": samples,
        "symbols": len(SYMBOLS),
        "open_at_once": 1,
        "monitor": "ats monitor, own process, default timings",
        "sim": "own process, manual mode",
        "timed_by": "the sim's arrival times",
    }
    load = {"before": load_before, "after": load_average()}
    report_all(
        [
            figure("mark tick -> order sent (supervision close)", unit="ms", target=5.0, setup=setup,
                   stats=summary(tick, digits=1), load_average=load),
            figure("TP1 fill -> breakeven stop placed", unit="ms", target=20.0, setup=setup,
                   stats=summary(breakeven, digits=1), load_average=load),
        ],
        monitor_cpu_s=round(cpu, 2),
        monitor_time_resyncs=resyncs,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=None, help="run the monitor under cProfile, stats here")
    args = parser.parse_args()
    asyncio.run(measure(args.samples, args.profile))


if __name__ == "__main__":
    main()
