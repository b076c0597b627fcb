"""A hung leader is replaced, with real `ats monitor` processes on one account and the simulated exchange.

- SIGSTOP freezes the leader with a position open and the price crosses TP1: the standby takes over once the
  leader's lease expires and moves the stop to breakeven; SIGCONT wakes the old leader, which sees its lease is
  gone, sends nothing and stands by. systemd's watchdog (a fake $NOTIFY_SOCKET) hears nothing while it is frozen.
- Every database connection of both processes is cut: the leader keeps its lease (a lease belongs to no
  connection) and goes on managing the open position; there is never a second leader, nor an order sent twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ats.domain import is_own_client_id
from ats.lifecycle import Phase
from db.session import Database
from sim.server import SimServer, SimServerThread
from tests.integration.monitor.harness import Desk, breakeven_up, client, wait_for
from tests.integration.monitor.processes import MonitorProcess, detail, heartbeat, monitor_env, wait_role

LEASE_S = 4.0  # ATS_MONITOR__LEASE_S in monitor_env
SYMBOL = "BTCUSDT"


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A fake systemd: the datagram socket $NOTIFY_SOCKET names (a short path: unix socket paths are limited)."""
    directory = tempfile.mkdtemp(prefix="ats-notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def _received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


async def _sim_orders(server: SimServer) -> list[str]:
    """Every order and algo order the exchange ever accepted, by client id."""
    engine = server.engine
    orders = [o.client_order_id for o in engine.orders.values() if o.type == o.orig_type]
    return orders + [a.client_algo_id for a in engine.algo_orders.values()]


def _lease(db: Database) -> tuple[str, int, Any]:
    with db.session() as session:
        row = session.execute(text("SELECT holder, epoch, renewed_at FROM monitor_lease")).one()
    return row.holder, row.epoch, row.renewed_at


async def test_a_frozen_leader_is_replaced_within_its_lease_and_sends_nothing_when_it_wakes(
    sim_thread: SimServerThread, db: Database, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, notify_path = notify_socket
    env = monitor_env(sim_thread.rest_url, sim_thread.ws_url, db, tmp_path)
    first = MonitorProcess({**env, "NOTIFY_SOCKET": notify_path}, tmp_path / "first.log", fast=True)
    second = MonitorProcess(env, tmp_path / "second.log", fast=True)
    desk = Desk(client(sim_thread.rest_url, sim_thread.api_key, sim_thread.api_secret), db)
    try:
        first.start()
        wait_role(db, first, "active", timeout_s=30)
        second.start()
        wait_role(db, second, "standby", timeout_s=30)
        await wait_for(lambda: sum(m == "WATCHDOG=1" for m in _received(sock)) >= 1, what="systemd's watchdog fed")
        key = await desk.open(SYMBOL)
        position = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
        assert position.levels is not None
        old_epoch = detail(db, first, "epoch")

        os.kill(first.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        _received(sock)  # at most one message was on its way
        sim_thread.control.set_price(SYMBOL, position.levels.tp1 + 2 * position.policy.rules.tick_size)
        await asyncio.to_thread(wait_role, db, second, "active", LEASE_S + 20)
        took_over_s = time.monotonic() - frozen_at
        await desk.wait(key, breakeven_up, "the breakeven stop placed by the new leader", timeout_s=30)
        breakeven_s = time.monotonic() - frozen_at
        assert _received(sock) == []  # frozen: systemd's watchdog would restart it
        holder, epoch, _ = _lease(db)
        assert (holder, epoch) == (f"monitor:main:{socket.gethostname()}:{second.pid}", old_epoch + 1)
        assert took_over_s < LEASE_S + 6, f"took over after {took_over_s:.1f} s"

        sent = await asyncio.to_thread(sim_thread.call, _sim_orders)
        os.kill(first.pid, signal.SIGCONT)
        await asyncio.to_thread(wait_role, db, first, "standby", 30)
        await wait_for(lambda: "standing by" in first.log_tail(20), what="the old leader standing by")
        assert await asyncio.to_thread(sim_thread.call, _sim_orders) == sent  # it sent nothing
        assert [cid for cid, n in Counter(sent).items() if n > 1 and is_own_client_id(cid)] == []
        log = first.log_path.read_text()
        assert "stepping down" in log
        assert "Traceback" not in log, first.log_tail(80)
        assert breakeven_up(desk.position(key))
        await wait_for(lambda: "WATCHDOG=1" in _received(sock), what="the watchdog fed again after SIGCONT")
        print(f"\nfrozen leader: standby active after {took_over_s:.2f} s, breakeven stop after {breakeven_s:.2f} s")

        assert first.terminate() == 0
        assert "STOPPING=1\nSTATUS=stopping" in _received(sock)
    finally:
        if first.alive():
            os.kill(first.pid, signal.SIGCONT)
        first.kill()
        second.kill()
        await desk.exchange.aclose()


async def test_cutting_every_database_connection_never_makes_a_second_leader(
    sim_thread: SimServerThread, db: Database, tmp_path: Path
) -> None:
    env = monitor_env(
        sim_thread.rest_url,
        sim_thread.ws_url,
        db,
        tmp_path,
        ATS_MONITOR__WATCHDOG_INTERVAL_S="0.5",  # also the heartbeat
    )
    first = MonitorProcess(env, tmp_path / "first.log", fast=True)
    second = MonitorProcess(env, tmp_path / "second.log", fast=True)
    desk = Desk(client(sim_thread.rest_url, sim_thread.api_key, sim_thread.api_secret), db)
    try:
        first.start()
        wait_role(db, first, "active", timeout_s=30)
        second.start()
        wait_role(db, second, "standby", timeout_s=30)
        holder, epoch, _ = _lease(db)
        key = await desk.open(SYMBOL)
        position = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
        assert position.levels is not None

        with db.engine.connect() as conn:  # a network cut, a DBA, a PostgreSQL failover: every session ends
            cut = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)), now() FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).one()
        assert cut[0] >= 2
        sim_thread.control.set_price(SYMBOL, position.levels.tp1 + 2 * position.policy.rules.tick_size)
        await desk.wait(key, breakeven_up, "the breakeven stop placed by the leader", timeout_s=30)
        await wait_for(lambda: _lease(db)[2] > cut[1], timeout_s=20, what="the lease renewed after the cut")
        for process in (first, second):
            await wait_for(lambda: _beat_after(db, process, cut[1]), timeout_s=20, what="heartbeats after the cut")  # noqa: B023

        assert _lease(db)[:2] == (holder, epoch)
        assert detail(db, first, "epoch") == epoch
        assert (_role(db, first), _role(db, second)) == ("active", "standby")
        assert first.log_path.read_text().count("leader lease acquired") == 1
        assert "leader lease acquired" not in second.log_path.read_text()
        assert "stepping down" not in first.log_path.read_text()
        sent = await asyncio.to_thread(sim_thread.call, _sim_orders)
        assert [cid for cid, n in Counter(sent).items() if n > 1 and is_own_client_id(cid)] == []
    finally:
        first.kill()
        second.kill()
        await desk.exchange.aclose()


def _beat_after(db: Database, process: MonitorProcess, moment: datetime) -> bool:
    row = heartbeat(db, process.pid)
    return row is not None and row.heartbeat_at > moment


def _role(db: Database, process: MonitorProcess) -> str | None:
    row = heartbeat(db, process.pid)
    return None if row is None else row.role
