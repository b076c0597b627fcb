"""Process start: CPU time of a fresh interpreter importing the CLI and every flow module (what `ats ...` and a
Prefect flow run pay before doing anything), target < 1 s CPU. Each run is a new process; its user + system CPU
time is read from the kernel (RUSAGE_CHILDREN), so a loaded machine inflates it less than wall time."""

from __future__ import annotations

import resource
import subprocess
import sys

from common import ROOT, load_average, report, summary

RUNS = 10
IMPORTS = "import cli; " + "; ".join(
    f"import flows.{name}"
    for name in (
        "account_status", "build_pools", "close_all", "daily_report", "factor_scan", "manual_signal",
        "parameters", "place_orders", "reconcile", "trading_cycle", "watchdog",
    )
)  # fmt: skip


def cpu_of_one_start() -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", IMPORTS], cwd=ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    load_before = load_average()
    cpu_of_one_start()  # the first run fills the bytecode cache
    samples = [cpu_of_one_start() for _ in range(RUNS)]
    report(
        "process start (import the CLI and the flows)",
        unit="s CPU",
        target=1.0,
        setup={"imports": IMPORTS, "python": sys.version.split()[0]},
        stats=summary(samples, 1.0, 2),
        load_average=[load_before, load_average()],
    )


if __name__ == "__main__":
    main()
