"""Leader election and supervision: one active monitor per account, any number of hot standbys.

Leadership is a lease in PostgreSQL (ats.leadership, db.lease), not a lock held by a connection: a frozen process
keeps its connections, a lease runs out by itself. The active monitor renews it from its event loop five times
per `ATS_MONITOR__LEASE_S`; a standby polls every `STANDBY_POLL_S` and takes it once it has expired by the
database's clock, whatever stopped the leader (killed, frozen, its event loop blocked, its host or network gone):
within the lease and a second. A graceful stop releases the lease, so a standby takes over at once.

Each acquisition increments the lease's epoch, the fencing token. The active monitor's exchange writes and the
transitions it records are fenced by it (Fence.check, and db.lease.hold in the same transaction): a leader woken
after its lease ran out, or that could not renew it in time, sends and records nothing and steps down at once.
Every process writes a heartbeat row (worker_heartbeats) with its role, readiness and epoch.

Every process, standby or active, also runs the watchdog's checks (db.health.check_health) every
`ATS_WATCHDOG__CHECK_INTERVAL_S`: a monitor that stays not ready with positions open, a leader that died or hung
(its lease expired, its heartbeat went stale) and trading cycles that stopped completing reach a person through
the outbox and are delivered at once.

Under systemd (`Type=notify`) the process says READY=1 once its health endpoint listens and WATCHDOG=1 every
second from its event loop: with `WatchdogSec=` a frozen or blocked process is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.dialects.postgresql import insert

from ats.clock import Clock
from ats.health import HealthPolicy
from ats.leadership import Busy, Decision, Fence, Held, LeaseTiming, Lost
from ats.log import get_logger
from ats.messages import Language, say_text
from db.health import check_health
from db.lease import claim, release
from db.models import WorkerHeartbeatRow
from db.session import Database
from monitor.health import HealthServer
from monitor.metrics import MonitorMetrics
from monitor.systemd import SystemdNotifier

log = get_logger(__name__)

STANDBY_POLL_S = 1.0
ALIVE_TICK_S = 1.0
RENEW_RETRY_S = 0.5  # after a failed renewal, while the fence still holds


class Runnable(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class Supervisor:
    """Runs the health endpoint and heartbeats always, and the monitor whenever this process holds the lease."""

    def __init__(
        self,
        *,
        account: str,
        database: Database,
        build: Callable[[Fence], Awaitable[Runnable]],
        metrics: MonitorMetrics,
        clock: Clock,
        health_host: str,
        health_port: int,
        heartbeat_s: float = 5.0,
        standby_poll_s: float = STANDBY_POLL_S,
        lease_s: float = 10.0,
        health_policy: HealthPolicy | None = None,
        health_check_s: float = 15.0,
        deliver: Callable[[], Awaitable[int]] | None = None,
        systemd: SystemdNotifier | None = None,
        language: Language,
    ) -> None:
        """`build(fence)`: the active monitor for one term, its exchange writes and transitions behind `fence`."""
        self._account = account
        self._database = database
        self._build = build
        self._metrics = metrics
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._standby_poll_s = standby_poll_s
        self._timing = LeaseTiming(lease_s)
        self._health_policy = health_policy or HealthPolicy()
        self._health_check_s = health_check_s
        self._deliver = deliver
        self._language = language  # of the health checks' messages
        self._systemd = systemd or SystemdNotifier(None)
        self._health = HealthServer(
            metrics, host=health_host, port=health_port, live_within_s=5 * ALIVE_TICK_S, monotonic=clock.monotonic
        )
        self._started_at = datetime.now(UTC)
        self._beat_lock = asyncio.Lock()
        self.name = f"monitor:{account}:{socket.gethostname()}:{os.getpid()}"
        self.fence = Fence(self.name, self._timing, clock.monotonic, on_lapse=self._lapsed)
        self._term: asyncio.Event | None = None  # set to end the current term
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def health_port(self) -> int:
        return self._health.port

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: stand by, lead while the lease is held, step down as soon as it is not."""
        self._loop = asyncio.get_running_loop()
        await self._health.start()
        self._systemd.ready("starting")
        beating = asyncio.create_task(self._heartbeats(stop), name="monitor-heartbeat")
        ticking = asyncio.create_task(self._alive(stop), name="monitor-alive")
        watching = asyncio.create_task(self._health_checks(stop), name="monitor-health-checks")
        try:
            while not stop.is_set():
                epoch = await self._wait_for_leadership(stop)
                if epoch is None:
                    break
                await self._lead(stop, epoch)
        finally:
            self._systemd.stopping()
            self._set_role("stopping")
            for task in (beating, ticking, watching):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._set_role("stopped")
            await self._beat()
            await self._health.stop()
            log.info("monitor process stopped", name=self.name)

    async def _wait_for_leadership(self, stop: asyncio.Event) -> int | None:
        """The epoch of the lease once this process holds it; None when stopped first."""
        seen: str | None = None
        while not stop.is_set():
            asked = self._clock.monotonic()
            decision = await self._claim(None)
            if isinstance(decision, Held):
                self.fence.begin(decision.epoch, asked)
                return decision.epoch
            if self._metrics.state.role != "standby":
                self._set_role("standby")
                await self._beat()
            if isinstance(decision, Busy) and decision.holder != seen:
                seen = decision.holder
                log.info(
                    "standing by: another monitor leads this account",
                    account=self._account,
                    leader=decision.holder,
                    epoch=decision.epoch,
                )
                self._systemd.status(f"standby; {decision.holder} leads (epoch {decision.epoch})")
            await _pause(stop, self._standby_poll_s)
        return None

    async def _claim(self, epoch: int | None) -> Decision | None:
        """One election step; None when the database cannot be asked (logged)."""
        try:
            return await asyncio.to_thread(claim, self._database, self._account, self.name, epoch, self._timing.lease_s)
        except Exception as exc:
            log.warning("cannot reach the database for the leader lease; retrying", error=str(exc).splitlines()[0])
            return None

    async def _lead(self, stop: asyncio.Event, epoch: int) -> None:
        self._metrics.state.set_problems(["starting"], self._clock.now_ms())
        self._set_role("active")
        log.info("leader lease acquired: this monitor is active", account=self._account, name=self.name, epoch=epoch)
        self._systemd.status(f"active (epoch {epoch})")
        await self._beat()
        term = self._term = asyncio.Event()
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: term.set())
        holding = asyncio.create_task(self._hold(epoch, term), name="monitor-leader-lease")
        try:
            monitor = await self._build(self.fence)
            await monitor.run(term)
        except Exception:
            log.exception("the active monitor failed; stepping down")
        finally:
            self._term = None
            self.fence.end()
            for task in (stopping, holding):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._release(epoch)
            self._metrics.state.set_problems([], self._clock.now_ms())
            if not stop.is_set():
                self._set_role("standby")
                await self._beat()
                await _pause(stop, self._standby_poll_s)

    async def _hold(self, epoch: int, term: asyncio.Event) -> None:
        """Renew the lease until cancelled (a graceful stop keeps it while the work in progress finishes); end
        the term at once when it is lost, or when it could not be renewed before the fence lapses."""
        while True:
            wait = min(self._timing.renew_s - self.fence.age_s(), self.fence.remaining_s())
            if wait > 0:
                await asyncio.sleep(wait)
            if self.fence.epoch != epoch:
                return  # a check found the fence lapsed and ended the term
            if self.fence.remaining_s() <= 0:
                self._step_down(term, f"the lease was last renewed {self.fence.age_s():.1f} s ago")
                return
            asked = self._clock.monotonic()
            renewal = asyncio.ensure_future(self._claim(epoch))
            try:
                done, _ = await asyncio.wait({renewal}, timeout=self.fence.remaining_s())
            finally:
                renewal.cancel()  # its thread finishes on its own; a late answer no longer counts
            if not done:
                self._step_down(term, f"the lease could not be renewed within {self._timing.valid_s:g} s")
                return
            match renewal.result():
                case Held():
                    if not self.fence.extend(epoch, asked):
                        return  # a check found the fence lapsed meanwhile and ended the term
                case Lost(reason=reason):
                    self._step_down(term, f"the lease was lost: {reason}")
                    return
                case _:
                    await asyncio.sleep(min(RENEW_RETRY_S, max(self.fence.remaining_s(), 0)))

    def _step_down(self, term: asyncio.Event, reason: str) -> None:
        log.error(
            "no longer the leader: stepping down before sending anything more",
            account=self._account,
            epoch=self.fence.epoch,
            reason=reason,
        )
        self.fence.end()
        term.set()

    def _lapsed(self, reason: str) -> None:
        """A check found the fence lapsed (this process was frozen, or its event loop blocked): end the term."""
        term, loop = self._term, self._loop
        if term is None or loop is None:
            return
        log.error(
            "the leader lease lapsed (was this process frozen or its event loop blocked?): stepping down, "
            "nothing more is sent",
            account=self._account,
            reason=reason,
        )
        loop.call_soon_threadsafe(term.set)

    async def _release(self, epoch: int) -> None:
        """Give the lease back so a standby takes over at once (a no-op when it already has)."""
        try:
            await asyncio.to_thread(release, self._database, self._account, self.name, epoch)
        except Exception as exc:
            log.warning("cannot release the leader lease; it expires by itself", error=str(exc).splitlines()[0])

    def _set_role(self, role: str) -> None:
        self._metrics.state.role = role

    async def _alive(self, stop: asyncio.Event) -> None:
        """Proves the event loop runs: for /livez, and to systemd's watchdog."""
        while not stop.is_set():
            self._metrics.state.alive_mono = self._clock.monotonic()
            self._systemd.watchdog()
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
                    functools.partial(check_health, language=self._language),
                    self._database,
                    self._account,
                    self._health_policy,
                    self._clock.now_ms(),
                )
            except Exception as exc:
                log.warning("cannot run the health checks", error=str(exc))
                continue
            for change in told:
                (log.error if change.failing else log.info)(
                    "health check changed", check=change.check.value, title=say_text(self._language, change.note.title)
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
                "epoch": self.fence.epoch,
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
