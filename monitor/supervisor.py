"""Leader election and supervision: one active monitor per account, any number of hot standbys.

The active monitor holds a PostgreSQL session-level advisory lock (`monitor:<account>`) on a dedicated
connection. A standby polls for it every `STANDBY_POLL_S`; when the active process dies its connection drops,
PostgreSQL releases the lock and a standby takes over within seconds. The active monitor checks every watchdog
interval that its lock connection is still alive and steps down at once when it is not (another process may
hold the lock by then). Every process writes a heartbeat row (worker_heartbeats) with its role and readiness.

Every process, standby or active, also runs the watchdog's checks (db.health.check_health) every
`ATS_WATCHDOG__CHECK_INTERVAL_S`: a monitor that stays not ready with positions open, a leader that died or hung
(a standby sees its heartbeat go stale) and trading cycles that stopped completing reach a person through the
outbox and are delivered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.dialects.postgresql import insert

from ats.clock import Clock
from ats.health import HealthPolicy, monitor_lock_name
from ats.log import get_logger
from db.health import check_health
from db.models import WorkerHeartbeatRow
from db.session import Database, SessionLock
from monitor.health import HealthServer
from monitor.metrics import MonitorMetrics

log = get_logger(__name__)

STANDBY_POLL_S = 1.0
LOCK_KEEPALIVE_S = 10  # a dead leader's host frees the lock within about 20 s (a dead process: at once)
ALIVE_TICK_S = 1.0


class Runnable(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class Supervisor:
    """Runs the health endpoint and heartbeats always, and the monitor whenever this process is the leader."""

    def __init__(
        self,
        *,
        account: str,
        database: Database,
        build: Callable[[], Awaitable[Runnable]],
        metrics: MonitorMetrics,
        clock: Clock,
        health_host: str,
        health_port: int,
        heartbeat_s: float = 5.0,
        standby_poll_s: float = STANDBY_POLL_S,
        health_policy: HealthPolicy | None = None,
        health_check_s: float = 15.0,
        deliver: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._account = account
        self._database = database
        self._build = build
        self._metrics = metrics
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._standby_poll_s = standby_poll_s
        self._health_policy = health_policy or HealthPolicy()
        self._health_check_s = health_check_s
        self._deliver = deliver
        self._lock = SessionLock(database.engine, monitor_lock_name(account), keepalive_s=LOCK_KEEPALIVE_S)
        self._health = HealthServer(
            metrics, host=health_host, port=health_port, live_within_s=5 * ALIVE_TICK_S, monotonic=clock.monotonic
        )
        self._started_at = datetime.now(UTC)
        self._beat_lock = asyncio.Lock()
        self.name = f"monitor:{account}:{socket.gethostname()}:{os.getpid()}"

    @property
    def health_port(self) -> int:
        return self._health.port

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: stand by, lead when the lock is free, step down if it is lost."""
        await self._health.start()
        beating = asyncio.create_task(self._heartbeats(stop), name="monitor-heartbeat")
        ticking = asyncio.create_task(self._alive(stop), name="monitor-alive")
        watching = asyncio.create_task(self._health_checks(stop), name="monitor-health-checks")
        try:
            while not stop.is_set():
                if not await self._wait_for_leadership(stop):
                    break
                await self._lead(stop)
        finally:
            self._set_role("stopping")
            await self._release()
            for task in (beating, ticking, watching):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._set_role("stopped")
            await self._beat()
            await self._health.stop()
            log.info("monitor process stopped", name=self.name)

    async def _wait_for_leadership(self, stop: asyncio.Event) -> bool:
        announced = False
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._lock.try_acquire):
                    return True
            except Exception as exc:
                log.warning("cannot reach the database for the leader lock; retrying", error=str(exc))
            if not announced:
                self._set_role("standby")
                log.info("standing by: another monitor is active for this account", account=self._account)
                announced = True
                await self._beat()
            await _pause(stop, self._standby_poll_s)
        return False

    async def _lead(self, stop: asyncio.Event) -> None:
        self._metrics.state.set_problems(["starting"], self._clock.now_ms())
        self._set_role("active")
        log.info("leader lock acquired: this monitor is active", account=self._account, name=self.name)
        await self._beat()
        leading = asyncio.Event()
        watch = asyncio.create_task(self._hold(stop, leading), name="monitor-leader-lock")
        try:
            monitor = await self._build()
            await monitor.run(leading)
        except Exception:
            log.exception("the active monitor failed; stepping down")
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await self._release()
            self._metrics.state.set_problems([], self._clock.now_ms())
            if not stop.is_set():
                self._set_role("standby")
                await _pause(stop, self._standby_poll_s)

    async def _hold(self, stop: asyncio.Event, leading: asyncio.Event) -> None:
        """Ends leadership on request or as soon as the lock's connection is gone."""
        while not stop.is_set():
            await _pause(stop, self._heartbeat_s)
            if stop.is_set():
                break
            try:
                held = await asyncio.to_thread(self._lock.still_held)
            except Exception:
                held = False
            if not held:
                log.error("leader lock lost (database connection gone): stepping down", account=self._account)
                break
        leading.set()

    async def _release(self) -> None:
        """Give the lock back (a dead connection has released it already)."""
        try:
            await asyncio.to_thread(self._lock.release)
        except Exception as exc:
            log.warning("leader lock connection already gone", error=str(exc))

    def _set_role(self, role: str) -> None:
        self._metrics.state.role = role

    async def _alive(self, stop: asyncio.Event) -> None:
        """Proves the event loop runs (for /livez)."""
        while not stop.is_set():
            self._metrics.state.alive_mono = self._clock.monotonic()
            await _pause(stop, ALIVE_TICK_S)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._beat()
            await _pause(stop, self._heartbeat_s)

    async def _health_checks(self, stop: asyncio.Event) -> None:
        """The watchdog's checks, every few seconds; each change is recorded once and queued for delivery."""
        while not stop.is_set():
            await _pause(stop, self._health_check_s)
            if stop.is_set():
                break
            try:
                told = await asyncio.to_thread(
                    check_health, self._database, self._account, self._health_policy, self._clock.now_ms()
                )
            except Exception as exc:
                log.warning("cannot run the health checks", error=str(exc))
                continue
            for change in told:
                (log.error if change.failing else log.info)(
                    "health check changed", check=change.check.value, title=change.note.title
                )
            if told and self._deliver is not None:  # a standby has no outbox loop: tell the news now
                try:
                    await self._deliver()
                except Exception as exc:
                    log.warning("cannot deliver the health messages now; they stay in the outbox", error=str(exc))

    async def _beat(self) -> None:
        """Write the heartbeat row; one write at a time, so a role change is never overwritten by an older one."""
        async with self._beat_lock:
            state = self._metrics.state
            details: dict[str, Any] = {
                "health_port": self.health_port,
                "open_positions": state.open_positions,
                "last_reconcile_ms": state.last_reconcile_ms,
                "problems": list(state.problems),
                "unready_since_ms": state.unready_since_ms,
            }
            try:
                await asyncio.to_thread(self._write_heartbeat, state.role, details)
            except Exception as exc:
                log.warning("cannot write the heartbeat", error=str(exc))

    def _write_heartbeat(self, role: str, details: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        values = {
            "name": self.name,
            "account": self._account,
            "role": role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._started_at,
            "heartbeat_at": now,
            "details": details,
        }
        statement = insert(WorkerHeartbeatRow).values(**values)
        with self._database.session() as session:
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"role": role, "heartbeat_at": now, "details": details},
                )
            )


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
