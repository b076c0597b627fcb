"""What every flow run works with: the settings, the database, the exchange client and the clock.

`open_runtime()` builds them from the configuration (ATS_* variables, as the Prefect worker passes them) and
closes the exchange client at the end. The database is opened once per process and shared (it holds a
connection pool); the exchange client belongs to one event loop, so each flow run opens its own. The client
shares the host-wide request-weight budget through PostgreSQL, so flows and the monitor never together exceed
Binance's limits.

Failures that stop a run are turned into one readable sentence (`describe_failure`) for the flow's failed state:
"exchange unreachable: GET /fapi/v1/exchangeInfo: could not connect (ConnectError)" rather than a traceback.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed
from sqlalchemy.exc import SQLAlchemyError

from ats.clock import Clock, WallClock
from ats.config import ConfigError, Settings, load_settings
from ats.exchange.binance import BinanceFutures, quiet_transport_loggers
from ats.exchange.errors import (
    AuthError,
    ExchangeError,
    ExchangeUnavailable,
    IpBanned,
    RateLimited,
    Throttled,
    UnknownOutcome,
)
from ats.execution import ExecutionDeferred, Executor
from ats.log import install_redaction, register_secret
from db.journal import PostgresJournal
from db.rate_limits import PostgresBudgetStore
from db.secrets import with_secret_blocks
from db.session import Database, database_error_line

P = ParamSpec("P")
R = TypeVar("R")

# Tasks that talk to the exchange retry what waiting can fix: the exchange unreachable or throttling us, or an
# answer that never came. Each such task is safe to run again (reads, or writes that look up before they send).
EXCHANGE_RETRY_DELAYS_S = [1.0, 5.0, 20.0]
TRANSIENT = (ExecutionDeferred, UnknownOutcome, ExchangeUnavailable, RateLimited, IpBanned, Throttled)


def retry_when_transient(task: Task[..., object], run: TaskRun, state: State[object]) -> bool:
    """A task's retry condition: retry only a TRANSIENT failure (a refusal or a bug fails at once)."""
    return isinstance(state.data, TRANSIENT)


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def shared_database(settings: Settings) -> Database:
    """The process's Database for these settings (opened, and migrated if empty, on first use)."""
    key = settings.database_url.get_secret_value() if settings.database_url else f"embedded:{settings.data_dir}"
    with _databases_lock:
        database = _databases.get(key)
        if database is None:
            database = Database.open(settings)
            _databases[key] = database
        return database


def close_databases() -> None:
    """Dispose of every shared Database (the next run opens a fresh one, as a new process would)."""
    with _databases_lock:
        for database in _databases.values():
            database.dispose()
        _databases.clear()


def prepare_logging(settings: Settings) -> None:
    """Secrets unprintable, transport loggers quiet, and redaction on the handlers Prefect installed."""
    for value in settings.secret_values():
        register_secret(value)
    quiet_transport_loggers()
    # The system's own loggers at the configured level: with PREFECT_LOGGING_EXTRA_LOGGERS=ats,db (prefect.yaml,
    # the CLI) their lines also reach the run's page in the Prefect UI.
    for name in ("ats", "db"):
        logging.getLogger(name).setLevel(settings.log_level)
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "ats", "db"):
        install_redaction(logging.getLogger(name).handlers)


class Runtime:
    """The resources of one flow run. Not a dataclass on purpose: Prefect must not walk into it."""

    def __init__(self, settings: Settings, database: Database, exchange: BinanceFutures, clock: Clock) -> None:
        self.settings = settings
        self.database = database
        self.exchange = exchange
        self.clock = clock

    @property
    def account(self) -> str:
        return self.settings.account

    def now_ms(self) -> int:
        """The exchange's time (the local clock corrected by the measured offset): bars close by it."""
        return self.exchange.server_now_ms()

    def journal(self) -> PostgresJournal:
        return PostgresJournal(self.database, self.account, language=self.settings.language)

    def executor(self, source: str = "flow") -> Executor:
        return Executor(self.exchange, self.journal(), self.clock, source=source)


@asynccontextmanager
async def open_runtime(settings: Settings | None = None) -> AsyncIterator[Runtime]:
    """Settings (from the environment unless given), the shared database and a fresh exchange client."""
    settings = await with_secret_blocks(settings or load_settings())
    prepare_logging(settings)
    database = shared_database(settings)
    clock = WallClock()
    exchange = BinanceFutures.from_settings(settings, clock=clock, budget_store=PostgresBudgetStore(database.engine))
    try:
        yield Runtime(settings, database, exchange, clock)
    finally:
        await exchange.aclose()


def run_logger() -> Any:
    """Prefect's run logger inside a flow or task run (its lines show in the UI), else a plain logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tasks")


class RunFailed(Exception):
    """A run could not do what it was asked (nothing to scan, an unknown symbol, an entry refused, ...).

    Raised inside a flow wrapped in `readable_failures`, it ends the run Failed with this message, verbatim.
    """


def refused(reason: str, result: R) -> R:
    """End a run Completed with its result, its message saying what was refused and why: nothing broke, so the
    run is not a red Failed, and a person reading the run list sees the refusal. Prefect understands a returned
    state (hence the cast)."""
    return cast(R, Completed(message=f"refused: {reason}", data=result))


def describe_failure(exc: BaseException) -> str | None:
    """One readable sentence for an error that stops a run, or None for an unexpected one (a bug)."""
    if isinstance(exc, RunFailed):
        return str(exc)
    if isinstance(exc, IpBanned):
        return f"exchange banned this IP: {exc}"
    if isinstance(exc, ExchangeUnavailable | RateLimited | Throttled | ExecutionDeferred):
        return f"exchange unreachable: {exc}"
    if isinstance(exc, AuthError):
        return f"exchange refused the API key: {exc}"
    if isinstance(exc, ExchangeError):
        return f"exchange error: {exc}"
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {database_error_line(exc)}"
    return None


def readable_failures(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let a flow end in a Failed state whose message says what went wrong (see `describe_failure`).

    Unexpected errors still raise, so their traceback reaches the run's logs. The Failed state is returned in
    place of the flow's result, which Prefect understands (hence the cast).
    """

    @functools.wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            message = describe_failure(exc)
            if message is None:
                raise
            run_logger().error(message)
            return cast(R, Failed(message=message))

    return guarded
