"""`make bench`: every benchmark script in its own process, one after the other; writes benchmarks/results.json
and prints the table the README shows.

chaos.py (about 1.5 h) and demo_under_load.py (several demo runs beside CPU burners) are not run: they are
opt-in, run them directly. `--only NAME ...` runs some scripts (file names without .py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# One figure each (common.report), or several measured in one run (common.report_all: {"figures": [...]}).
FIGURES = (
    "factor_cold",
    "factor_update",
    "factor_series",
    "process_start",
    "monitor_latency",
    "rest_rate",
    "trading_cycle",
    "monitor_restart",
    "monitor_cpu",
)
OTHERS = ("exchange", "monitor_failover", "backtest")  # several figures in one JSON object each, in their own format
OPT_IN = ("chaos", "demo_under_load")


TIMEOUT_S = 1800  # per script: a hung benchmark is reported, the others still run


def run(name: str) -> dict[str, Any]:
    """The script's JSON object (the last one it printed), or what went wrong."""
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"script": name, "error": f"no result within {TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"script": name, "error": f"exit {done.returncode}", "stderr": done.stderr[-2000:]}
    try:
        found = json.loads(done.stdout[done.stdout.rindex("\n{") + 1 :] if "\n{" in done.stdout else done.stdout)
    except ValueError:
        return {"script": name, "error": "no JSON object in its output", "stdout": done.stdout[-2000:]}
    return {"script": name, **found}


def figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures of one script's result (a script that measures several prints them under "figures")."""
    return [{"script": result["script"], **f} for f in result["figures"]] if "figures" in result else [result]


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| figure | target | min / median / p99 | CPU min / median / p99 | runs | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in (f for result in results for f in figures(result)):
        if "figure" not in r:
            continue
        unit = r["unit"]
        cpu = r.get("cpu")
        cpu_text = f"{cpu['min']:g} / {cpu['median']:g} / {cpu['p99']:g} {unit}" if cpu else ""
        met = "yes" if r["met"] else "no"
        if "value" in r:  # one count over a window (rest_rate), not a distribution of samples
            lines.append(f"| {r['figure']} | <= {r['target']:g} {unit} | {r['value']:g} | | 1 window | {met} |")
            continue
        lines.append(
            f"| {r['figure']} | < {r['target']:g} {unit} | {r['min']:g} / {r['median']:g} / {r['p99']:g} {unit} "
            f"| {cpu_text} | {r['runs']} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    names = [n for n in (*FIGURES, *OTHERS) if args.only is None or n in args.only]
    started = datetime.datetime.now(datetime.UTC)
    results: list[dict[str, Any]] = []
    document = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "results": results,
    }
    for name in names:
        print(f"running benchmarks/{name}.py ...", file=sys.stderr, flush=True)
        results.append(run(name))
        (HERE / "results.json").write_text(json.dumps(document, indent=2) + "\n")  # after each: nothing lost
    print(f"benchmarks of {document['date']} ({document['cores']} cores), written to benchmarks/results.json")
    print(table(results))
    failed = [r["script"] for r in results if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
