"""`ats demo` beside CPU burners: the proof that the demo does not race the clock, and how long it takes.

Runs `ats demo` `--runs` times, each in a fresh data directory (its PostgreSQL and Prefect server start as on a
first run) and each beside `--burners` busy processes (0: an idle machine, as far as this script goes), and prints
one JSON object: for each run the wall time, the exit code, the mission and the demo's own timings (start-up,
trading cycles, scripted prices, bars, wrap-up), with the load average before and after. Exits 1 if a run did not
show the whole mission.

Run from the repository root: `.venv/bin/python benchmarks/demo_under_load.py [--burners 2] [--runs 1]`.
tests/e2e/test_demo.py runs it with ATS_DEMO_UNDER_LOAD=1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BURN = "while True: pass"


@contextlib.contextmanager
def burners(count: int) -> Iterator[list[int]]:
    """`count` processes that keep a CPU busy each, ended (by their ids) on the way out."""
    processes = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(count)]
    try:
        yield [p.pid for p in processes]
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def run_demo(work_dir: Path, number: int, timeout_s: float) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"demo-{number}-", dir=work_dir))
    data_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user when we are root
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "PREFECT_"))}
    env |= {"ATS_DATA_DIR": str(data_dir), "COLUMNS": "100"}
    summary_path = data_dir / "summary.json"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from cli import main; main()", "demo", "--summary-json", str(summary_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=ROOT,
        )
        exit_code, tail = done.returncode, (done.stdout[-1500:] + done.stderr[-1500:])
    except subprocess.TimeoutExpired:
        exit_code, tail = -1, f"no answer within {timeout_s:.0f} s"
    wall = round(time.monotonic() - started, 1)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    result = {
        "wall_s": wall,
        "exit_code": exit_code,
        "mission_complete": bool(summary.get("mission_complete")),
        "mission": summary.get("mission", {}),
        "stalled": summary.get("stalled", ""),
        "cycles": summary.get("cycles"),
        "trades": summary.get("trades"),
        "longs": summary.get("longs"),
        "shorts": summary.get("shorts"),
        "timings": summary.get("timings", {}),
        "data_dir": str(data_dir),
    }
    if exit_code != 0 or not result["mission_complete"]:
        result["output_tail"] = tail
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=2, help="busy processes beside the demo (0: none)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=840.0, help="seconds one run may take")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the runs' data directories go")
    parser.add_argument("--keep", action="store_true", help="keep the data directories (logs, databases)")
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="ats-demo-load-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)
    report: dict[str, Any] = {"benchmark": "demo_under_load", "burners": args.burners, "cpus": os.cpu_count()}
    report["load_before"] = [round(x, 2) for x in os.getloadavg()]
    runs = []
    with burners(args.burners):
        for number in range(1, args.runs + 1):
            runs.append(run_demo(work_dir, number, args.timeout))
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["runs"] = runs
    report["wall_s"] = [r["wall_s"] for r in runs]
    if not args.keep:
        for run in runs:
            shutil.rmtree(run["data_dir"], ignore_errors=True)
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0 if all(r["exit_code"] == 0 and r["mission_complete"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
