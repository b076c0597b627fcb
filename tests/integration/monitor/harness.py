"""Test helpers for the monitor: a desk that opens positions the way the order-placement task does, an
in-process monitor against the simulated exchange, waiting and the checks every scenario ends with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import SecretStr
from sqlalchemy import select

from ats.clock import WallClock
from ats.config import ExchangeSettings, LevelSettings, MonitorSettings, RiskLimits, Settings, Venue
from ats.domain import Band, Direction, Signal, intent_key
from ats.exchange.base import MarginType
from ats.exchange.binance import BinanceFutures, budget_scope
from ats.exchange.budget import BudgetLimits, BudgetStore, InMemoryBudgetStore, RequestBudget
from ats.exchange.streams import USER_PING_INTERVAL_S, BinanceMarketStream, BinanceUserStream
from ats.execution import ExecutionSettings, Executor, action_for_leg
from ats.leadership import Fence
from ats.lifecycle import OrderState, Policy, Position, Role, open_position
from ats.risk import AccountSnapshot, Approved, check_entry
from db.journal import PostgresJournal, record_new_position
from db.models import FillRow
from db.session import Database
from monitor.metrics import MonitorMetrics
from monitor.worker import ListenKeyTracker, Monitor, Tuning

ACCOUNT = "main"
FAST_EXECUTION = ExecutionSettings(lookup_attempts=3, lookup_delay_s=0.05, send_retry_delay_s=0.05)
FAST = Tuning(
    pending_interval_s=0.3,
    pending_age_s=1.5,
    reconcile_min_gap_s=0.1,
    outbox_interval_s=0.3,
    flat_check_s=0.3,
    funding_delay_s=0.1,
    warm_bars=100,
    connect_timeout_s=5.0,
    shutdown_grace_s=5.0,
)
# Small positions: many fit in the sim's 10 000 USDT account at once.
LIMITS = RiskLimits(max_position_size_usdt=Decimal(1000), max_concurrent_positions=50)

T = TypeVar("T")


def sim_settings(rest_url: str, ws_url: str, bar_interval: str = "1h", **monitor: Any) -> Settings:
    return Settings(
        venue=Venue.SIM,
        account=ACCOUNT,
        bar_interval=bar_interval,
        exchange=ExchangeSettings(rest_url=rest_url, ws_url=ws_url, timeout_s=3.0),
        monitor=MonitorSettings(**monitor),
    )


def client(
    rest_url: str,
    api_key: str,
    api_secret: str,
    *,
    weight_limit: int = 2400,
    budget_store: BudgetStore | None = None,
    max_wait_s: float = 90.0,
    fence: Fence | None = None,
) -> BinanceFutures:
    """A REST client; `weight_limit` must match the sim's (the client honours the IP weight it reports). Its budget
    is its own unless `budget_store` shares one (db.rate_limits.PostgresBudgetStore: as between processes); its
    writes go through `fence` when given (the active monitor's)."""
    clock = WallClock()
    budget = RequestBudget(
        budget_store or InMemoryBudgetStore(),
        scope=budget_scope(rest_url),
        clock=clock,
        limits=BudgetLimits(weight_limit),
        max_wait_s=max_wait_s,
    )
    return BinanceFutures(
        rest_url,
        SecretStr(api_key),
        SecretStr(api_secret),
        timeout_s=3.0,
        clock=clock,
        budget=budget,
        write_guard=None if fence is None else fence.check_write,
    )


async def wait_for(check: Callable[[], T | None], *, timeout_s: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (short sleeps; the work happens on other tasks)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


class Desk:
    """Opens positions like the place-orders task: risk check, record the intent, then send the entry."""

    def __init__(self, exchange: BinanceFutures, database: Database) -> None:
        self.exchange = exchange
        self.database = database
        self.journal = PostgresJournal(database, ACCOUNT, language="en")
        self.executor = Executor(exchange, self.journal, WallClock(), source="test", settings=FAST_EXECUTION)
        self._bar = 0

    async def open(
        self,
        symbol: str,
        direction: Direction = Direction.LONG,
        *,
        levels: LevelSettings | None = None,
        monitor: MonitorSettings | None = None,
    ) -> str:
        position = await self.record(symbol, direction, levels=levels, monitor=monitor)
        await self.exchange.set_margin_type(symbol, MarginType.ISOLATED)
        await self.exchange.set_leverage(symbol, position.leverage)
        entry = position.entry_order
        assert entry is not None
        action = action_for_leg(position, entry)
        assert action is not None
        await self.executor.execute(position.key, [action])
        return position.key

    async def record(
        self,
        symbol: str,
        direction: Direction = Direction.LONG,
        *,
        levels: LevelSettings | None = None,
        monitor: MonitorSettings | None = None,
    ) -> Position:
        """The first half of `open`: the approved intent recorded, its entry not sent."""
        rules = (await self.exchange.exchange_info())[symbol]
        price = (await self.exchange.premium_index(symbol))[0].mark_price
        self._bar += 1
        signal = Signal(symbol, direction, 72.0, Band.GOOD, self._bar, price)
        snapshot = AccountSnapshot(Decimal(10_000), Decimal(10_000), Decimal(0), Decimal(0))
        decision = check_entry(signal, snapshot, LIMITS, rules=rules, level_settings=levels or LevelSettings())
        assert isinstance(decision, Approved), decision
        key = intent_key(ACCOUNT, symbol, self._bar, direction)
        policy = Policy.build(rules, decision.order.plan, monitor or MonitorSettings())
        position, actions = open_position(key=key, order=decision.order, policy=policy, time_ms=WallClock().now_ms())
        with self.database.session() as session:
            record_new_position(session, ACCOUNT, position, actions, source="test", language="en")
        return position

    def position(self, key: str) -> Position:
        position = self.journal.position(key)
        assert position is not None
        return position

    async def wait(self, key: str, check: Callable[[Position], bool], what: str, timeout_s: float = 10.0) -> Position:
        def probe() -> Position | None:
            position = self.position(key)
            return position if check(position) else None

        return await wait_for(probe, timeout_s=timeout_s, what=f"{key}: {what}")


@dataclass
class RunningMonitor:
    monitor: Monitor
    metrics: MonitorMetrics
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def reconciled(self, after_ms: int = 0, timeout_s: float = 10.0) -> None:
        def done() -> bool:
            last = self.metrics.state.last_reconcile_ms
            return last is not None and last >= after_ms

        await wait_for(done, timeout_s=timeout_s, what="a reconciliation")

    async def reconcile(self) -> None:
        asked = WallClock().now_ms()
        self.monitor.request_reconcile("test")
        await self.reconciled(after_ms=asked)

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=15)


def build_monitor(
    settings: Settings,
    api_key: str,
    api_secret: str,
    database: Database,
    metrics: MonitorMetrics,
    fence: Fence | None = None,
    *,
    budget_store: BudgetStore | None = None,
    tuning: Tuning = FAST,
    user_ping_s: float = USER_PING_INTERVAL_S,
) -> Monitor:
    """A monitor wired like monitor.app's, with the test timings unless given others (and the supervisor's fence,
    when it has one)."""
    clock = WallClock()
    exchange = client(settings.rest_url, api_key, api_secret, budget_store=budget_store, fence=fence)
    listen_keys = ListenKeyTracker(exchange, clock)
    return Monitor(
        settings=settings,
        exchange=exchange,
        journal=PostgresJournal(database, ACCOUNT, fence=fence, language="en"),
        user_stream=BinanceUserStream(listen_keys, settings.ws_url, clock=clock, ping_interval_s=user_ping_s),
        market_stream=BinanceMarketStream(settings.ws_url, clock=clock),
        clock=clock,
        metrics=metrics,
        listen_keys=listen_keys,
        tuning=tuning,
    )


async def start_monitor(
    rest_url: str,
    ws_url: str,
    api_key: str,
    api_secret: str,
    database: Database,
    bar_interval: str = "1h",
    *,
    budget_store: BudgetStore | None = None,
    tuning: Tuning = FAST,
    user_ping_s: float = USER_PING_INTERVAL_S,
    **monitor: Any,
) -> RunningMonitor:
    """The monitor in this event loop (no leader election), after its first reconciliation."""
    settings = sim_settings(rest_url, ws_url, bar_interval, **{"reconcile_interval_s": 600.0, **monitor})
    metrics = MonitorMetrics()
    metrics.state.role = "active"
    monitor_ = build_monitor(
        settings,
        api_key,
        api_secret,
        database,
        metrics,
        budget_store=budget_store,
        tuning=tuning,
        user_ping_s=user_ping_s,
    )
    stop = asyncio.Event()
    running = RunningMonitor(monitor_, metrics, stop, asyncio.create_task(monitor_.run(stop)))
    await running.reconciled()
    return running


def breakeven_up(p: Position) -> bool:
    """TP1 filled, the breakeven stop acknowledged and the original stop gone."""
    stops = [o for o in p.orders if o.role is Role.STOP]
    return p.breakeven_set and stops[-1].state is OrderState.ACTIVE and not any(o.state.live for o in stops[:-1])


def fills_in_db(database: Database) -> set[tuple[str, int, Decimal, Decimal]]:
    with database.session() as session:
        rows = session.execute(select(FillRow.symbol, FillRow.trade_id, FillRow.qty, FillRow.price)).all()
    return {(s, t, q.normalize(), p.normalize()) for s, t, q, p in rows}


def fills_on_exchange(trades: Iterable[dict[str, Any]]) -> set[tuple[str, int, Decimal, Decimal]]:
    return {
        (t["symbol"], int(t["id"]), Decimal(str(t["qty"])).normalize(), Decimal(str(t["price"])).normalize())
        for t in trades
    }
