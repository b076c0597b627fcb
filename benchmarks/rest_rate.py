"""REST requests per minute in steady state with 5 open positions (target <= 3): what the sim, in its own process,
receives while the real `ats monitor` process watches 5 protected positions and the market ticks every second
(the sim in realtime mode).

- The monitor: every request the sim receives during a window of wall time (default 360 s, twice the monitor's
  default `reconcile_interval_s` of 180 s, so its periodic reconciliation falls in at its own rate; the passes
  seen are reported), counted by endpoint. The positions are opened and protected before the window starts. The
  market moves, so a take-profit can fill in the window: the order requests that follow a fill (placing, cancelling
  and looking up orders) are reported but not counted, steady state being what the monitor sends when nothing
  happens.
- The `reconcile` flow (scheduled every 5 minutes): its work (`ats.reconcile.reconcile` after a time sync, as
  flows/reconcile.py runs it, without Prefect's artifact) run once in its own process after the window with the
  monitor stopped; its requests count 1/5 per minute.
- The hourly trading cycle is counted by benchmarks/trading_cycle.py (its `rest_requests`), 1/60 per minute;
  the hourly account-status snapshot is a time sync, the account and the positions (5 requests, 0.08 per minute).

`--window S` (default 360). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter

import httpx
from common import ROOT, load_average
from sim_process import Received
from stack import cpu_seconds, stack, wait_ready

from tests.integration.monitor.processes import detail, monitor_env

POSITIONS = 5
ORDER_PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder")  # placing, cancelling, looking up: reactions to fills
RECONCILE_FLOW = """
import asyncio
import json
from ats.reconcile import reconcile
from ats.universe import HOUR_MS
from tasks.runtime import open_runtime

async def main() -> None:
    async with open_runtime() as rt:
        await rt.exchange.sync_time()
        since = rt.now_ms() - 2 * HOUR_MS
        await reconcile(rt.exchange, rt.journal(), rt.executor("reconcile"), rt.clock, rt.settings, since_ms=since)

asyncio.run(main())
"""


def by_endpoint(received: list[Received]) -> Counter[str]:
    return Counter(r.endpoint for r in received if not r.path.startswith("/sim/"))


def reconciles(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("ats_monitor_reconciles_total"))


async def measure(window_s: float) -> None:
    load_before = load_average()
    async with stack(realtime=True) as s:
        rules = await s.exchange.exchange_info()
        symbols = [x for x in rules if "_" not in x][:POSITIONS]
        monitor = s.monitor()
        monitor.start()
        try:
            wait_ready(s.database, monitor)
            for symbol in symbols:
                await s.open_protected(symbol)
            await asyncio.sleep(5)  # the last protection's follow-ups settle
            port = detail(s.database, monitor, "health_port")
            passes_before, cpu_before = reconciles(port), cpu_seconds(monitor.pid)
            since = s.sim.count()
            started = time.monotonic()
            await asyncio.sleep(window_s)
            monitor_requests = by_endpoint(s.sim.received(since))
            elapsed = time.monotonic() - started
            passes, cpu = reconciles(port) - passes_before, cpu_seconds(monitor.pid) - cpu_before
            still_open = sum(1 for p in s.desk.journal.open_positions())
        finally:
            monitor.terminate()
        since = s.sim.count()
        env = monitor_env(s.sim.rest_url, s.sim.ws_url, s.database, s.data_dir)
        argv = [sys.executable, "-c", RECONCILE_FLOW]
        await asyncio.to_thread(subprocess.run, argv, env=env, cwd=ROOT, check=True, capture_output=True)
        flow_requests = by_endpoint(s.sim.received(since))
    reactions = Counter({k: v for k, v in monitor_requests.items() if k.split()[1] in ORDER_PATHS})
    polling = monitor_requests - reactions
    monitor_rate = sum(polling.values()) / elapsed * 60
    flow_rate = sum(flow_requests.values()) / 5
    print(
        json.dumps(
            {
                "figure": "REST requests per minute, steady state, 5 open positions (monitor + 5-minute reconcile)",
                "unit": "requests/min",
                "target": 3.0,
                "met": monitor_rate + flow_rate <= 3.0,
                "setup": {"positions": POSITIONS, "open_at_end": still_open, "window_s": round(elapsed, 1),
                          "sim": "own process, realtime", "monitor": "ats monitor, own process, default timings"},
                "value": round(monitor_rate + flow_rate, 2),
                "monitor_per_minute": round(monitor_rate, 2),
                "monitor_reconcile_passes_in_window": passes,
                "monitor_requests": dict(polling.most_common()),
                "monitor_order_requests_not_counted": dict(reactions.most_common()),
                "monitor_cpu_percent_of_a_core": round(cpu / elapsed * 100, 2),
                "reconcile_flow_per_minute": round(flow_rate, 2),
                "reconcile_flow_requests": dict(flow_requests.most_common()),
                "not_included": "the hourly trading cycle (benchmarks/trading_cycle.py, rest_requests / 60) and the "
                "hourly account-status snapshot (5 requests: 0.08 per minute)",
                "load_average": {"before": load_before, "after": load_average()},
            }
        ),
        flush=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--window", type=float, default=360.0)
    asyncio.run(measure(parser.parse_args().window))


if __name__ == "__main__":
    main()
