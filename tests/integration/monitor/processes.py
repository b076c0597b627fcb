"""Monitor processes for crash and failover tests: the real `ats monitor` (or the same serve() with shorter
timings), its environment pointing at a simulated exchange and a test database, and its heartbeat row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.models import WorkerHeartbeatRow
from db.session import Database

# The same serve() as `ats monitor`, with the short timings of tests/integration/monitor/harness.py.
FAST_SERVE = """
import asyncio
from cli.app import settings_or_exit
from monitor.app import serve
from tests.integration.monitor.harness import FAST
asyncio.run(serve(settings_or_exit(), tuning=FAST))
"""
ATS_CLI = "from cli import main; main()"
ROOT = Path(__file__).resolve().parents[3]


def monitor_env(rest_url: str, ws_url: str, database: Database, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(
        ATS_VENUE="sim",
        ATS_EXCHANGE__REST_URL=rest_url,
        ATS_EXCHANGE__WS_URL=ws_url,
        ATS_EXCHANGE__TIMEOUT_S="3",
        ATS_DATABASE_URL=database.engine.url.render_as_string(hide_password=False),
        ATS_DATA_DIR=str(data_dir),
        ATS_MONITOR__HEALTH_PORT="0",
        # A killed leader is replaced once its lease expires: 10 s by default, short here.
        ATS_MONITOR__LEASE_S="4",
        ATS_LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


class MonitorProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *, fast: bool = False) -> None:
        self._env = env
        self.log_path = log_path
        self._code = FAST_SERVE if fast else ATS_CLI
        self._argv = [] if fast else ["monitor"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.started + 1} =====\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self._code, *self._argv],
                env=self._env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as after a power cut."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets and its database connections but does nothing at all."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def heartbeat(database: Database, pid: int) -> WorkerHeartbeatRow | None:
    with database.session() as session:
        return session.scalars(select(WorkerHeartbeatRow).where(WorkerHeartbeatRow.pid == pid)).one_or_none()


def wait_role(database: Database, process: MonitorProcess, role: str, timeout_s: float) -> float:
    """Seconds until the process's heartbeat shows `role`; fails with its log when it does not in time."""
    started = time.monotonic()
    while True:
        row = heartbeat(database, process.pid)
        if row is not None and row.role == role:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s or not process.alive():
            raise AssertionError(
                f"monitor {process.pid} not {role} after {timeout_s} s (now {row.role if row else 'no heartbeat'}):\n"
                + process.log_tail()
            )
        time.sleep(0.05)


def detail(database: Database, process: MonitorProcess, name: str) -> Any:
    row = heartbeat(database, process.pid)
    assert row is not None
    return row.details.get(name)
