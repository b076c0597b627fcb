"""`ats demo` as a new user runs it: the whole mission on this machine, exit code 0, figures in the JSON summary.

The Makefile's `demo` target runs exactly `ats demo` (after creating the virtualenv); this runs the same command,
shortened to its minimum market time, with its own data directory (so its embedded PostgreSQL is fresh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's private temp tree: the embedded server runs as an unprivileged user when we are root."""
    path = Path(tempfile.mkdtemp(prefix="ats-demo-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_demo_runs_ats_demo() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\t$(BIN)/ats demo\n" in makefile


@pytest.mark.timeout(240)
def test_the_demo_shows_the_whole_mission(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "PREFECT_"))}
    env |= {"ATS_DATA_DIR": str(data_dir), "PREFECT_HOME": str(data_dir / "prefect"), "COLUMNS": "100"}
    summary_path = data_dir / "summary.json"
    done = subprocess.run(
        [sys.executable, "-c", "from ats.cli import main; main()", "demo", "--seconds", "60",
         "--summary-json", str(summary_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["mission_complete"], summary["mission"]
    assert summary["cycle_failures"] == 0
    assert summary["failures"] == 0
    assert summary["trades"] == summary["protected"] > 0
    assert summary["messages"] > summary["trades"]
    for shown in ("Telegram", "Signal", "entered", "TP1", "Stop moved to", "demo statistics", "mission:"):
        assert shown in done.stdout, shown
    assert "Traceback" not in done.stdout + done.stderr
    monitor_log = (data_dir / "demo" / "monitor.log").read_text()
    assert "Traceback" not in monitor_log
