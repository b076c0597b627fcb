"""Monitor restart to fully reconciled with 20 open positions (target < 2 s): the real `ats monitor` process
against the sim in its own process.

20 positions are opened and protected (stop and take-profits acknowledged) with a monitor running; then, per run,
the monitor is stopped (SIGTERM: it releases its lease, so the next one leads at once) and a new `ats monitor`
process is started. A sample is the wall time from starting the process to its /readyz answering 200 (leading,
streams up, the first reconciliation done); the time to leading (its heartbeat says active) and the new process's
CPU time until ready are reported too, and the REST requests the sim received from the start to ready.

`--runs N` (default 10), `--positions N` (default 20). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from common import load_average, report, summary
from stack import cpu_seconds, stack, wait_ready

from tests.integration.monitor.processes import wait_role


async def measure(runs: int, positions: int) -> None:
    load_before = load_average()
    async with stack() as s:
        rules = await s.exchange.exchange_info()
        symbols = [x for x in rules if "_" not in x][:positions]  # perpetuals, in the sim's catalogue order
        if len(symbols) < positions:
            raise SystemExit(f"the sim lists only {len(symbols)} of the symbols wanted")
        s.sim.control.set_balance("100000")
        monitor = s.monitor("monitor-0")
        monitor.start()
        wait_ready(s.database, monitor)
        for symbol in symbols:
            await s.open_protected(symbol)
        ready, active, cpu = [], [], []
        requests: Counter[str] = Counter()
        for n in range(runs):
            monitor.terminate()
            monitor = s.monitor(f"monitor-{n + 1}")
            since = s.sim.count()
            started = time.monotonic()
            monitor.start()
            active.append(wait_role(s.database, monitor, "active", timeout_s=60))
            wait_ready(s.database, monitor)
            ready.append(time.monotonic() - started)
            cpu.append(cpu_seconds(monitor.pid))
            requests.update(r.endpoint for r in s.sim.received(since) if not r.path.startswith("/sim/"))
        monitor.terminate()
    report(
        "monitor restart to fully reconciled, 20 positions",
        unit="s",
        target=2.0,
        setup={"positions": positions, "runs": runs, "stop": "SIGTERM (lease released)", "sim": "own process"},
        stats=summary(ready),
        to_leading_s=summary(active),
        cpu=summary(cpu),
        rest_requests_per_restart={k: round(v / runs, 1) for k, v in requests.most_common()},
        load_average={"before": load_before, "after": load_average()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--positions", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.positions))


if __name__ == "__main__":
    main()
