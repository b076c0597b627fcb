"""Trading cycle wall time (target < 10 s): `ats run-cycle` as a whole process (imports, Prefect flow runs, the
exchange over loopback, PostgreSQL), against the sim in its own process and a Prefect server in its own.

- cold: 100 symbols, a fresh database each run (no bars stored: every symbol's history is fetched and stored);
- warm: 500 symbols, one database; a first cycle (not timed) stores the bars, then before each timed run the sim's
  market moves one hour on (one new closed bar per symbol), as between two hourly cycles.
The sim replays generated klines (its synthetic catalogue has fewer symbols); `--symbols` names them explicitly
(the pools are not built from them), and `--dry-run` scores and checks the limits but sends no order (no monitor
runs here to protect one). A sample is the process's wall time; its CPU time (user + system, from wait4) and the
REST requests the sim received per cycle are reported beside it. `--runs N` (default 3), `--cold-symbols`,
`--warm-symbols`. Prints one JSON object with both figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, figure, load_average, report_all, summary
from sim_process import SimProcess
from stack import BARS, scratch_database, write_klines

from db.session import Database
from tests.fixtures.db import DEFAULT_SERVER, DatabaseFactory
from tests.integration.monitor.processes import ATS_CLI, monitor_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """`prefect server start` on a PostgreSQL database (a copy of the migrated template the tests use)."""

    def __init__(self, log_path: Path) -> None:
        self.factory = DatabaseFactory(os.environ.get("ATS_TEST_DATABASE_URL", DEFAULT_SERVER))
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.factory.create_prefect(),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        with log_path.open("wb") as log:
            argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.factory.drop_all()


def cycle(sim: SimProcess, database: Database, data_dir: Path, api_url: str, symbols: list[str]) -> dict[str, Any]:
    """One `ats run-cycle --dry-run` process: wall and CPU seconds, the REST requests the sim received."""
    env = monitor_env(sim.rest_url, sim.ws_url, database, data_dir, PREFECT_API_URL=api_url)
    argv = [sys.executable, "-c", ATS_CLI, "run-cycle", "--dry-run", "--symbols", ",".join(symbols)]
    since = sim.count()
    started = time.monotonic()
    with (data_dir / "cycle.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"run-cycle failed:\n{(data_dir / 'cycle.log').read_text()[-3000:]}")
    requests = Counter(r.endpoint for r in sim.received(since) if not r.path.startswith("/sim/"))
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "requests": requests}


def cold(api_url: str, count: int, runs: int, tmp: Path) -> dict[str, Any]:
    load_before = load_average()
    klines = tmp / "cold-klines"
    klines.mkdir()
    write_klines(klines, count)
    symbols = [f"S{n:03d}USDT" for n in range(count)]
    samples = []
    with SimProcess(replay_dir=klines, history_bars=BARS - 100) as sim:
        for _ in range(runs):
            with scratch_database() as database:
                samples.append(cycle(sim, database, tmp, api_url, symbols))
    return result(f"trading cycle, {count} symbols, cold, whole process", count, "fresh database each run",
                  samples, load_before)  # fmt: skip


def warm(api_url: str, count: int, runs: int, tmp: Path) -> dict[str, Any]:
    load_before = load_average()
    klines = tmp / "warm-klines"
    klines.mkdir()
    write_klines(klines, count)
    symbols = [f"S{n:03d}USDT" for n in range(count)]
    samples = []
    with SimProcess(replay_dir=klines, history_bars=BARS - 100) as sim, scratch_database() as database:
        first = cycle(sim, database, tmp, api_url, symbols)
        for _ in range(runs):
            sim.control.advance(3600, tick_seconds=60)
            samples.append(cycle(sim, database, tmp, api_url, symbols))
    return result(f"trading cycle, {count} symbols, warm, whole process", count,
                  f"bars stored by a first cycle ({first['wall']:.1f} s), one new closed bar before each run",
                  samples, load_before)  # fmt: skip


def result(
    name: str, count: int, state: str, samples: list[dict[str, Any]], load_before: list[float]
) -> dict[str, Any]:
    requests: Counter[str] = sum((s["requests"] for s in samples), Counter())
    return figure(
        name,
        unit="s",
        target=10.0,
        setup={"symbols": count, "bars_per_symbol_on_the_exchange": BARS, "state": state, "runs": len(samples),
               "command": "ats run-cycle --dry-run --symbols ...", "sim": "own process, manual, replayed klines",
               "prefect": "own server process, PostgreSQL"},
        stats=summary([s["wall"] for s in samples]),
        cpu=summary([s["cpu"] for s in samples]),
        rest_requests=round(sum(requests.values()) / len(samples), 1),
        rest_requests_by_endpoint={k: round(v / len(samples), 1) for k, v in requests.most_common()},
        load_average={"before": load_before, "after": load_average()},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold-symbols", type=int, default=100)
    parser.add_argument("--warm-symbols", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ats-bench-cycle-") as name:
        tmp = Path(name)
        prefect = PrefectServer(tmp / "prefect.log")
        try:
            figures = [
                cold(prefect.api_url, args.cold_symbols, args.runs, tmp),
                warm(prefect.api_url, args.warm_symbols, args.runs, tmp),
            ]
        finally:
            prefect.stop()
    report_all(figures)


if __name__ == "__main__":
    main()
