"""What every benchmark script shares: the statistics it reports, the machine's load, one JSON object out.

Each script measures one figure of the performance table (README, "Performance") on the code production runs,
and prints one JSON object: the figure's name, its target, the setup (symbols, bars, positions, runs), the
statistics of the samples and the load average before and after. `benchmarks/run.py` (`make bench`) runs each
script in its own process and writes benchmarks/results.json.

Statistics are over all samples, no warm-up dropped unless the script says so: min (the code's cost on a quiet
moment), median, and p99 by nearest rank (with fewer than 100 samples it is the largest but one or the largest:
`runs` says how many there were).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def summary(samples: Sequence[float], scale: float = 1.0, digits: int = 2) -> dict[str, float]:
    """min / median / p99 (nearest rank) of the samples, multiplied by `scale`, and how many there were."""
    ordered = sorted(s * scale for s in samples)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    p99 = ordered[max(math.ceil(0.99 * n) - 1, 0)]
    return {"min": round(ordered[0], digits), "median": round(median, digits), "p99": round(p99, digits), "runs": n}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def one_core() -> int | None:
    """Pin this process to one core (the factor targets are per core); returns the core, None if not possible."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def timed(run: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Seconds per call of `run`: wall clock (the figure) and this process's CPU time (on a machine shared with
    other work the two differ by the time the process waited for a core)."""
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu


def figure(
    name: str, *, unit: str, target: float, setup: dict[str, Any], stats: dict[str, float], **extra: Any
) -> dict[str, Any]:
    """One figure as a JSON object; `met` compares the p99 with the target (lower is better)."""
    return {
        "figure": name,
        "unit": unit,
        "target": target,
        "met": stats["p99"] <= target,
        "setup": setup,
        **stats,
        **extra,
    }


def report(
    name: str, *, unit: str, target: float, setup: dict[str, Any], stats: dict[str, float], **extra: Any
) -> None:
    """Print the figure as one JSON object (see `figure`)."""
    print(json.dumps(figure(name, unit=unit, target=target, setup=setup, stats=stats, **extra)), flush=True)


def report_all(figures: list[dict[str, Any]], **shared: Any) -> None:
    """Print several figures measured in one run as one JSON object: {"figures": [...], **shared}."""
    print(json.dumps({"figures": figures, **shared}), flush=True)
