"""The emergency stop (close-all) as plain async functions: the close-all flow runs its steps as tasks, and
`ats close-all` runs the same steps directly, without Prefect.

It needs nothing but the exchange. When PostgreSQL answers (within a few seconds), the halt of new entries is
recorded, the positions this system manages are closed through their lifecycle (which records the results) and
the alert goes through the outbox; when it does not, every order is still cancelled and every position still
closed on the exchange, the report says that nothing was recorded, and the alert is sent directly. Prefect is
never needed: this module imports it only to read Secret blocks or leave a best-effort record, and only when a
Prefect server is configured (PREFECT_API_URL); it never starts one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from ats.clock import Clock, WallClock
from ats.config import ConfigError, Settings
from ats.emergency import CloseAllReport, close_all_alert, closing_orders, symbols_to_cancel
from ats.exchange.binance import BinanceFutures
from ats.exchange.budget import FallbackBudgetStore, Priority
from ats.exchange.errors import ExchangeError
from ats.execution import ExecutionDeferred, Executor
from ats.lifecycle import CloseRequested
from ats.log import redact
from ats.notify import AlertNote, make_notifier, render
from ats.operator import close_all_halter
from db import risk_state
from db.journal import PostgresJournal, enqueue_notification
from db.outbox import deliver_pending
from db.rate_limits import PostgresBudgetStore
from db.session import Database

T = TypeVar("T")

DATABASE_WAIT_S = 8.0  # the longest wait for the database (the embedded one may have to start) before going on
CONNECT_TIMEOUT_S = 3  # per connection attempt, so a database that goes away mid-run costs seconds, not minutes
NOTIFY_WAIT_S = 15.0  # the direct alert (no database): Telegram answers or not within this
PREFECT_WAIT_S = 5.0  # the whole best-effort record in Prefect (a refused connection fails at once)


def why(exc: BaseException) -> str:
    """One short line naming an error (the database driver's own message for SQLAlchemy errors), no secret."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    cause = getattr(exc, "orig", None) or exc
    text = redact(str(cause)).strip()
    first_line = text.splitlines()[0][:300] if text else ""
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


class Emergency:
    """What the emergency stop works with. `database` is None when it could not be reached (`database_error`
    says why): then the exchange alone is used and nothing is recorded. Not a dataclass: Prefect must not walk
    into it."""

    def __init__(
        self,
        settings: Settings,
        exchange: BinanceFutures,
        clock: Clock,
        database: Database | None,
        database_error: str | None,
        *,
        source: str,
        log: Any,
    ) -> None:
        self.settings = settings
        self.exchange = exchange
        self.clock = clock
        self.database = database
        self.database_error = database_error
        self.source = source  # "flow" or "cli": who did it, in the records
        self.log = log  # the flow's run logger (lines on its run page), or a plain logger

    @property
    def account(self) -> str:
        return self.settings.account

    def executor(self, database: Database) -> Executor:
        journal = PostgresJournal(database, self.account, language=self.settings.language)
        return Executor(self.exchange, journal, self.clock, source=self.source)


async def open_database(settings: Settings, wait_s: float = DATABASE_WAIT_S) -> tuple[Database | None, str | None]:
    """The database, or None and why not, within `wait_s`: a refused connection answers at once, a server that
    does not answer costs CONNECT_TIMEOUT_S, and an embedded one that cannot start is given up after `wait_s`
    (its start goes on in a daemon thread that does not hold up the exit)."""
    done: concurrent.futures.Future[Database] = concurrent.futures.Future()

    def connect() -> None:
        try:
            database = Database.open(settings, connect_timeout_s=CONNECT_TIMEOUT_S)
        except BaseException as exc:  # handed to the waiting side, which reports it
            if done.set_running_or_notify_cancel():
                done.set_exception(exc)
            return
        if done.set_running_or_notify_cancel():
            done.set_result(database)
        else:  # nobody waits for it any more
            database.dispose()

    threading.Thread(target=connect, name="close-all-database", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.wrap_future(done), wait_s), None
    except TimeoutError:
        return None, f"no answer within {wait_s:.0f} s"
    except Exception as exc:
        return None, why(exc)


@asynccontextmanager
async def open_emergency(
    settings: Settings, *, source: str, log: Any, database_wait_s: float = DATABASE_WAIT_S
) -> AsyncIterator[Emergency]:
    """The database if it answers in time, and an exchange client whose request budget is shared through it (or
    kept in this process without it, or from the moment it stops answering)."""
    database, error = await open_database(settings, database_wait_s)
    if error is not None:
        log.warning(f"database unavailable ({error}): closing through the exchange alone, nothing is recorded")
    clock = WallClock()
    store = FallbackBudgetStore(PostgresBudgetStore(database.engine) if database is not None else None)
    # Everything an emergency stop sends is protective: it never waits behind scans for the request budget.
    exchange = BinanceFutures.from_settings(settings, clock=clock, budget_store=store, priority=Priority.PROTECTIVE)
    try:
        yield Emergency(settings, exchange, clock, database, error, source=source, log=log)
    finally:
        await exchange.aclose()
        if database is not None:
            database.dispose()


# ---------------------------------------------------------------------------------------------- the steps


async def record_halt(em: Emergency, database: Database, reason: str) -> None:
    """Halt new entries until 00:00 UTC, so the next cycle does not open new positions."""
    with database.session() as session:
        risk_state.record_halt(
            session, em.account, em.clock.now_ms(), f"close-all: {reason}", by=close_all_halter(em.source)
        )


async def close_managed_positions(em: Emergency, database: Database, reason: str) -> tuple[list[str], dict[str, str]]:
    """CloseRequested for every position we manage: the lifecycle cancels its orders and closes at market.

    An emergency stop goes on whatever one position's close raises: the plain cancel and the reduce-only close
    that follow still cover that position, and the report names it.
    """
    executor = em.executor(database)
    closed: list[str] = []
    deferred: dict[str, str] = {}
    for position in PostgresJournal(database, em.account, language=em.settings.language).open_positions():
        try:
            await executor.apply(position.key, [CloseRequested(reason, em.clock.now_ms())])
        except ExecutionDeferred as exc:
            deferred[position.symbol] = str(exc)
            continue
        except Exception as exc:
            em.log.exception(f"{position.symbol}: the close through its lifecycle failed")
            deferred[position.symbol] = f"{type(exc).__name__}: {redact(str(exc))}"
            continue
        closed.append(position.symbol)
    em.log.info(f"close requested for {len(closed) + len(deferred)} managed positions ({len(deferred)} deferred)")
    return closed, deferred


async def cancel_all_orders(em: Emergency) -> tuple[list[str], dict[str, str]]:
    """Every symbol with an open order, an open algo order or a position: cancel all its orders of both kinds."""
    orders = await em.exchange.open_orders()
    algos = await em.exchange.open_algo_orders()
    positions = await em.exchange.positions()
    done: list[str] = []
    failures: dict[str, str] = {}
    for symbol in symbols_to_cancel(orders, algos, positions):
        try:
            await em.exchange.cancel_all_orders(symbol)
        except ExchangeError as exc:
            failures[symbol] = f"cancel: {exc}"
            continue
        done.append(symbol)
    em.log.info(f"orders cancelled on {len(done)} symbols ({len(orders)} orders, {len(algos)} algo orders)")
    return done, failures


async def close_remaining_positions(em: Emergency) -> tuple[list[str], dict[str, str]]:
    """Whatever position is still open (not ours, or ours whose close did not go through): reduce-only market
    orders, split by the symbol's largest market order so a big position is not refused as a whole."""
    positions = await em.exchange.positions()
    largest = {}
    if positions:
        try:
            rules = await em.exchange.exchange_info()
        except ExchangeError as exc:  # close in one order each; the exchange says so if one is too large
            em.log.warning(f"exchange rules unavailable ({exc}): each position is closed in one order")
            rules = {}
        largest = {p.symbol: rules[p.symbol].market_max_qty for p in positions if p.symbol in rules}
    closed: list[str] = []
    failures: dict[str, str] = {}
    for symbol, requests in closing_orders(positions, largest, em.clock.now_ms()):
        try:
            for request in requests:
                await em.exchange.new_order(request)
        except ExchangeError as exc:
            failures[symbol] = f"market close: {exc}"
            continue
        closed.append(symbol)
    if closed:
        em.log.warning(f"closed with plain reduce-only market orders: {', '.join(closed)}")
    return closed, failures


async def notify(em: Emergency, note: AlertNote) -> str | None:
    """Tell the user: through the outbox (recorded, and delivered now) when the database is there, else straight
    through the notifier. Returns what went wrong, if anything."""
    if em.database is not None:
        try:
            with em.database.session() as session:
                enqueue_notification(
                    session, em.account, f"close-all:{em.clock.now_ms()}", note, language=em.settings.language
                )
        except Exception as exc:
            em.log.warning(f"the alert could not be recorded ({why(exc)}): sending it directly")
        else:
            notifier = make_notifier(em.settings.telegram, venue=em.settings.venue)
            try:
                sent = await deliver_pending(em.database, em.account, notifier, em.clock)
            except Exception as exc:  # the row is recorded: the monitor delivers it
                return f"the alert is in the outbox but could not be sent now ({why(exc)})"
            finally:
                await notifier.aclose()
            em.log.info(f"{sent} notifications sent")
            return None
    notifier = make_notifier(em.settings.telegram, venue=em.settings.venue)
    try:
        await asyncio.wait_for(notifier.send(render(note, em.settings.language)), NOTIFY_WAIT_S)
    except Exception as exc:
        em.log.warning(f"the alert could not be sent: {why(exc)}")
        return f"the alert could not be sent ({why(exc)})"
    finally:
        await notifier.aclose()
    return None


# ---------------------------------------------------------------------------------------------- the whole


class StepRunner(Protocol):
    """How a step runs: directly (the CLI) or as a Prefect task (the flow, so its run page shows the steps)."""

    def __call__(self, name: str, work: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


async def run_directly(name: str, work: Callable[[], Awaitable[T]]) -> T:
    return await work()


async def close_everything(em: Emergency, reason: str, halt: bool, step: StepRunner = run_directly) -> CloseAllReport:
    """EMERGENCY: cancel every order and algo order and close every position at market, then tell the user.

    With the database: halt new entries (when `halt`), close the managed positions through their lifecycle.
    Then, database or not: cancel everything left and close everything left with reduce-only market orders.
    A database step that fails is reported and the exchange work goes on; an exchange that cannot be reached at
    all raises (ExchangeError): nothing can be done then.
    """
    await em.exchange.sync_time()
    notes: list[str] = []
    halted = False
    managed: list[str] = []
    deferred: dict[str, str] = {}
    database = em.database
    if database is not None and halt:
        try:
            await step("record-halt", lambda: record_halt(em, database, reason))
            halted = True
        except Exception as exc:
            em.log.error(f"the halt could not be recorded: {why(exc)}")
            notes.append(f"new entries NOT halted: the halt could not be recorded ({why(exc)})")
    if database is not None:
        try:
            managed, deferred = await step(
                "close-managed-positions", lambda: close_managed_positions(em, database, reason)
            )
        except Exception as exc:
            em.log.error(f"managed positions could not be closed through their lifecycle: {why(exc)}")
            notes.append(f"managed positions not closed through their lifecycle ({why(exc)}): closed at market")
    cancelled, cancel_failures = await step("cancel-all-orders", lambda: cancel_all_orders(em))
    unmanaged, close_failures = await step("close-remaining-positions", lambda: close_remaining_positions(em))
    still_open = sorted(p.symbol for p in await em.exchange.positions())
    report = CloseAllReport(
        managed_closed=managed,
        managed_deferred=deferred,
        cancelled_symbols=cancelled,
        unmanaged_closed=unmanaged,
        failures={**cancel_failures, **close_failures},
        still_open=still_open,
        halted=halted,
        not_recorded=em.database_error,
        notes=notes,
    )
    problem = await step("notify", lambda: notify(em, close_all_alert(report, reason)))
    return report if problem is None else replace(report, notes=[*notes, problem])


# ---------------------------------------------------------------------------------------------- Prefect, if any


def prefect_api_url() -> str | None:
    """The configured Prefect server (PREFECT_API_URL, from the environment or the Prefect profile), if any."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


async def with_secret_blocks_if_reachable(settings: Settings, wait_s: float = PREFECT_WAIT_S) -> tuple[Settings, str]:
    """The settings with secrets kept in Prefect Secret blocks read, when the configured Prefect server answers
    within `wait_s`, and a warning ("" if none). Never starts a Prefect server.

    Raises ConfigError when the exchange keys are in blocks that cannot be read: nothing can be done without them.
    A Telegram token that cannot be read only sends the alert to the log.
    """
    wanted = settings.secret_blocks()
    if not wanted:
        return settings, ""
    try:
        if prefect_api_url() is None:
            reason = "PREFECT_API_URL is not set, and close-all does not start a Prefect server"
        else:
            from db.secrets import with_secret_blocks

            return await asyncio.wait_for(with_secret_blocks(settings), wait_s), ""
    except ConfigError as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"Prefect unreachable: {why(exc)}"
    blocks = ", ".join(sorted(wanted.values()))
    if any(section == "exchange" for section, _ in wanted):
        raise ConfigError(
            f"the exchange API key is kept in Prefect Secret blocks ({blocks}) that cannot be read ({reason}); "
            "give it with ATS_EXCHANGE__API_KEY_FILE and ATS_EXCHANGE__API_SECRET_FILE so the emergency stop "
            "needs nothing but the exchange"
        )
    return settings, (
        f"the Telegram token's Prefect Secret block ({blocks}) cannot be read ({reason}): alerts go to the log only"
    )


async def record_in_prefect(markdown: str, wait_s: float = PREFECT_WAIT_S) -> str | None:
    """Best effort: leave the report on the configured Prefect server as the markdown artifact `close-all`.

    Returns a line to show (where it was recorded, or why not), or None when no Prefect server is configured.
    Never raises, never starts a Prefect server, never takes longer than `wait_s`.
    """
    try:
        url = prefect_api_url()
        if url is None:
            return None
        from prefect.client.orchestration import get_client

        async def create() -> None:
            # The plain API call: the client's create_artifact also queues an event, which would be sent at exit.
            async with get_client() as client:
                payload = {"key": "close-all", "type": "markdown", "data": markdown, "description": "ats close-all"}
                response = await client.request("POST", "/artifacts/", json=payload)
                response.raise_for_status()

        await asyncio.wait_for(create(), wait_s)
    except Exception as exc:
        return f"warning: not recorded in Prefect ({why(exc)}); the report above is the record"
    return f"recorded in Prefect ({url}) as the artifact close-all"
