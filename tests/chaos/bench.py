"""The chaos bench: positions walked through their whole lifecycle while the exchange, the network and the
monitor misbehave, and the figures that say whether the promises held.

One bench holds the simulated exchange (its own thread and event loop, as a real venue is elsewhere), a test
database, a desk that opens positions like the place-orders task and the monitor (in this process, or as the
real `ats monitor` process for the kill and freeze scenarios). A scenario is one kind of fault; each run opens
one position, injects the fault at the scenario's moment and walks the price through TP1 to an exit. Figures
per scenario:

- duplicates: exchange orders beyond one per client id, and entries filled beyond the approved quantity;
- unprotected_seconds: how long an open position had no exchange-side stop covering it (max, total), measured
  on the exchange itself at every change of its state (wall time: this is the system's reaction time);
- lost_events: fills on the exchange that the database does not hold, or holds differently;
- false_alerts: alerts in the outbox that no real problem called for (the scenario names those it expects);
- errors: runs that did not reach their end state (a position left open, a stuck transition);
- limits_exceeded, day_loss_usdt: the scenarios that open several positions at once (tests/chaos/placement.py):
  more positions than allowed or two on a symbol, and each day's loss against the daily loss limit;
- orders_after_vanish: orders sent for a position the exchange forgot (it restarted without its state).

`tests/chaos/test_chaos.py` runs a few runs of each scenario in `make test`; `benchmarks/chaos.py` runs many.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ats.clock import WallClock
from ats.config import RiskLimits
from ats.domain import Direction, is_own_client_id
from ats.exchange.base import MarginType
from ats.exchange.binance import BinanceFutures
from ats.execution import action_for_leg
from ats.lifecycle import CloseRequested, Phase, Position
from db.models import NotificationRow
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from sim.engine import Engine
from sim.server import SimConfig, SimServer, SimServerThread
from tasks.runtime import TRANSIENT
from tests.chaos import placement
from tests.chaos.pgproxy import PgProxy
from tests.chaos.placement import CycleSetup
from tests.fixtures.db import truncate_all
from tests.integration.monitor.harness import (
    LIMITS,
    Desk,
    RunningMonitor,
    breakeven_up,
    client,
    fills_in_db,
    fills_on_exchange,
    start_monitor,
    wait_for,
)
from tests.integration.monitor.processes import MonitorProcess, heartbeat, monitor_env

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "LTCUSDT", "XRPUSDT", "LINKUSDT", "DOTUSDT")
WEIGHT_LIMIT = 1_000_000  # the scenarios that exhaust the budget set their own storm
RUN_TIMEOUT_S = 120.0  # a 429 storm without a Retry-After holds requests to the end of a weight minute, or two
TASK_RETRY_DELAYS_S = (0.2, 0.5, 1.0)  # the place-orders task's retries, shortened


# ------------------------------------------------------------------------------------------- measuring


def _covers(engine: Engine, symbol: str, amount: Decimal) -> bool:
    """An open STOP_MARKET on the closing side that closes the position or at least its size."""
    closing_side = "SELL" if amount > 0 else "BUY"
    return any(
        algo.symbol == symbol
        and algo.order_type == "STOP_MARKET"
        and algo.side == closing_side
        and (algo.close_position or algo.quantity >= abs(amount))
        for algo in engine.open_algos.values()
    )


class ProtectionAudit:
    """Watches one account of the simulated exchange: for each symbol, the spans with an open position and no
    exchange-side stop covering it. Called in the exchange's own thread after every change it publishes."""

    def __init__(self, engine: Engine) -> None:
        self._since: dict[str, float] = {}
        self.spans: list[tuple[str, float]] = []
        self.attach(engine)

    def attach(self, engine: Engine) -> None:
        """Watch `engine` (the same account after the exchange restarted)."""
        self.engine = engine
        self._unsubscribe = engine.subscribe(lambda _event: self.check())
        self.check()

    def check(self) -> None:
        now = time.monotonic()
        for symbol, position in self.engine.positions.items():
            exposed = position.amount != 0 and not _covers(self.engine, symbol, position.amount)
            started = self._since.get(symbol)
            if exposed and started is None:
                self._since[symbol] = now
            elif not exposed and started is not None:
                self.spans.append((symbol, now - started))
                del self._since[symbol]

    def open_spans(self) -> list[tuple[str, float]]:
        now = time.monotonic()
        return [(symbol, now - started) for symbol, started in self._since.items()]

    def close(self) -> None:
        self._unsubscribe()


def heartbeat_role(database: Database, process: MonitorProcess) -> str | None:
    row = heartbeat(database, process.pid)
    return None if row is None else row.role


def duplicate_orders(engine: Engine) -> int:
    """Orders sent twice: more than one exchange order, or more than one algo order, under one of our client ids
    (a triggered algo order's own market order carries the algo's id: the two kinds are counted apart)."""
    orders = Counter(o.client_order_id for o in engine.orders.values() if is_own_client_id(o.client_order_id))
    algos = Counter(a.client_algo_id for a in engine.algo_orders.values() if is_own_client_id(a.client_algo_id))
    return sum(count - 1 for ids in (orders, algos) for count in ids.values() if count > 1)


def lost_events(engine: Engine, database: Database, forgotten: list[dict[str, Any]] | None = None) -> int:
    """Fills the exchange made that the database does not hold exactly (and fills it holds that never were);
    `forgotten`: the fills of an exchange that restarted without its state."""
    return len(fills_on_exchange([*(forgotten or []), *engine.trades]) ^ fills_in_db(database))


def _forget_accounts(config: SimConfig) -> None:
    """Rewrite the exchange's state file with fresh accounts that keep only their id sequences."""
    assert config.state_file is not None
    saved = json.loads(config.state_file.read_text())
    accounts = {
        key: {"wallet": str(config.balance), "ids": account["ids"]} for key, account in saved["accounts"].items()
    }
    config.state_file.write_text(json.dumps({**saved, "accounts": accounts}))


def alert_titles(database: Database) -> list[str]:
    """Each alert as it was told (the payload holds its catalogue id and values, the text is what was sent)."""
    with database.session() as session:
        texts = session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "alert")).all()
    return [text.splitlines()[0] if text else "" for text in texts]


# ------------------------------------------------------------------------------------------- the bench


@dataclass
class Figures:
    """One scenario's result, the JSON the benchmark prints."""

    scenario: str
    runs: int = 0
    faults_injected: int = 0
    duplicates: int = 0
    unprotected_seconds_max: float = 0.0
    unprotected_seconds_total: float = 0.0
    reaction_seconds_max: float = 0.0  # a crossing (TP1, the stop, TP2) to its record in the database
    reaction_seconds_median: float = 0.0
    lost_events: int = 0
    false_alerts: int = 0
    errors: int = 0
    limits_exceeded: int = 0  # runs that ended with more positions than allowed, or two on one symbol
    day_losses: list[DayLoss] = field(default_factory=list)  # the loss-cap scenarios: one per run
    orders_after_vanish: int = 0  # orders sent for positions the exchange forgot (it restarted without state)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def day_loss_beyond_slippage_max(self) -> float:
        """The worst run's loss above the daily limit plus its slippage (<= 0: the cap held)."""
        return max((float(d.beyond_slippage) for d in self.day_losses), default=0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "runs": self.runs,
            "faults_injected": self.faults_injected,
            "duplicates": self.duplicates,
            "unprotected_seconds": {
                "max": round(self.unprotected_seconds_max, 3),
                "total": round(self.unprotected_seconds_total, 3),
            },
            "reaction_seconds": {
                "median": round(self.reaction_seconds_median, 3),
                "max": round(self.reaction_seconds_max, 3),
            },
            "lost_events": self.lost_events,
            "false_alerts": self.false_alerts,
            "errors": self.errors,
            "limits_exceeded": self.limits_exceeded,
            "day_loss_usdt": self._day_loss_json(),
            "orders_after_vanish": self.orders_after_vanish,
            "seconds": round(self.seconds, 1),
            "notes": self.notes[:5],
        }

    def _day_loss_json(self) -> dict[str, Any] | None:
        if not self.day_losses:
            return None
        return {
            "limit": float(max(d.limit for d in self.day_losses)),
            "max": float(max(d.loss for d in self.day_losses)),
            "over_limit_max": float(max(d.loss - d.limit for d in self.day_losses)),
            "slippage_max": float(max(d.slippage for d in self.day_losses)),
            "beyond_slippage_max": self.day_loss_beyond_slippage_max,
            "positions_max": max(d.positions for d in self.day_losses),
        }


@dataclass(frozen=True, slots=True)
class DayLoss:
    """One day of a loss-cap run: what the account lost (wallet, fees included) against the limit, and the slippage
    no cap can size: stops placed from the entries' fills further out than planned from the prices the entries
    were sized at, and exits filled beyond their stops' triggers (a stop-market order fills at the book)."""

    loss: Decimal
    limit: Decimal
    slippage: Decimal
    positions: int

    @property
    def beyond_slippage(self) -> Decimal:
        return self.loss - self.limit - self.slippage


class Bench:
    """The exchange, the database, a desk and a monitor: what every scenario runs against."""

    def __init__(self, sim: SimServerThread, database: Database, data_dir: Path, proxy: PgProxy) -> None:
        self.sim = sim
        self.database = database  # the bench's own view; the monitor reaches the same database through `proxy`
        self.proxy = proxy
        self.monitor_database = Database(proxy.url(database.engine.url.render_as_string(hide_password=False)))
        self.data_dir = data_dir
        # The desk shares the request budget with the monitor, as place-orders and the monitor do in production.
        self.exchange: BinanceFutures = client(
            sim.rest_url,
            sim.api_key,
            sim.api_secret,
            weight_limit=WEIGHT_LIMIT,
            budget_store=PostgresBudgetStore(database.engine),
        )
        self.desk = Desk(self.exchange, database)
        self.monitor: RunningMonitor | None = None
        self.processes: list[MonitorProcess] = []  # the real `ats monitor`: a leader and, with a standby, a second
        self.background: set[asyncio.Task[None]] = set()  # e.g. a killed monitor's restart
        self.disarm: list[Callable[[], None]] = []  # a run's exchange hooks (a fault armed on the next fill)
        self.current_symbol = ""  # the symbol of the run in progress
        self.run_symbols: list[str] = []  # every symbol the run in progress trades (spoiled if it fails)
        self.keys: list[str] = []  # every position the runs opened
        self.audit: ProtectionAudit | None = None
        self.duplicates_before_restart = 0  # an exchange restart forgets finished orders: counted before it
        self.trades_before_restart: list[dict[str, Any]] = []  # the fills an exchange restarted without state forgot
        self.orders_after_vanish = 0  # orders sent for positions the exchange forgot
        self.cycle_failures: list[str] = []  # place-orders cycles that failed (under a fault they may)
        self.reactions: list[tuple[str, float]] = []  # (what, seconds from the crossing to its record)

    @property
    def server(self) -> SimServer:
        assert self.sim.server is not None
        return self.sim.server

    @property
    def engine(self) -> Engine:
        return self.server.engine

    async def on_exchange(self, action: Callable[[SimServer], Coroutine[Any, Any, Any]]) -> Any:
        """Run `action` on the exchange's own event loop (without blocking this one)."""
        return await asyncio.to_thread(self.sim.call, action)

    async def set_price(self, symbol: str, price: Decimal) -> None:
        await self.on_exchange(lambda server: server.set_price(symbol, price))

    async def start_in_process(self) -> None:
        self.monitor = await start_monitor(
            self.sim.rest_url,
            self.sim.ws_url,
            self.sim.api_key,
            self.sim.api_secret,
            self.monitor_database,
            budget_store=PostgresBudgetStore(self.monitor_database.engine),  # shared, as in production
        )

    def start_processes(self, count: int) -> None:
        env = monitor_env(self.sim.rest_url, self.sim.ws_url, self.monitor_database, self.data_dir)
        for index in range(count):
            process = MonitorProcess(env, self.data_dir / f"monitor-{index}.log", fast=True)
            process.start()
            self.processes.append(process)
        self.wait_leader()

    def leader(self) -> MonitorProcess | None:
        """The process whose heartbeat says active (None while nobody leads)."""
        return next((p for p in self.processes if p.alive() and heartbeat_role(self.database, p) == "active"), None)

    def wait_leader(self, timeout_s: float = 30.0) -> MonitorProcess:
        deadline = time.monotonic() + timeout_s
        while (leader := self.leader()) is None:
            if time.monotonic() > deadline:
                tails = "\n".join(p.log_tail(30) for p in self.processes)
                raise AssertionError(f"no monitor process leads after {timeout_s} s:\n{tails}")
            time.sleep(0.05)
        return leader

    async def restart_exchange(self, *, keep_state: bool = True) -> None:
        """Stop the exchange and start it again on the same port, as a venue comes back after maintenance: every
        connection drops. With `keep_state` nothing of the accounts is lost; without, the accounts come back
        fresh (no position, no order, the starting balance: a testnet reset, or a venue that lost its books),
        only the id sequences go on (a real venue never hands out an order or trade id twice)."""
        old = self.server
        prices = {symbol: old.market.mark_price_event(symbol)["p"] for symbol in SYMBOLS}
        self.duplicates_before_restart += duplicate_orders(old.engine)
        await asyncio.to_thread(self.sim.stop)  # saves the accounts to the state file
        if not keep_state:
            self.trades_before_restart.extend(old.engine.trades)
            _forget_accounts(self.sim.config)
        config = replace(self.sim.config, port=old.port)
        self.sim = SimServerThread(config)
        await asyncio.to_thread(self.sim.start)
        for symbol, price in prices.items():
            await self.set_price(symbol, Decimal(price))
        if self.audit is not None:
            audit = self.audit
            await self.on_exchange(lambda server: _attach(audit, server))

    def cycle_setup(self, limits: RiskLimits = LIMITS) -> CycleSetup:
        """Where the bench's place-orders cycles trade: this exchange, the database through the proxy."""
        return CycleSetup(
            self.sim.rest_url,
            self.sim.ws_url,
            self.sim.api_key,
            self.sim.api_secret,
            self.monitor_database.engine.url.render_as_string(hide_password=False),
            limits,
        )

    async def after_run(self) -> None:
        """Wait for what a run left going (a restart), so that the next run starts whole."""
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
            self.background.clear()
        while self.disarm:
            self.disarm.pop()()
        for process in self.processes:
            if not process.alive():
                process.start()
        if self.processes:
            await asyncio.to_thread(self.wait_leader)

    async def aclose(self) -> None:
        if self.monitor is not None:
            await self.monitor.shutdown()
        for process in self.processes:
            process.resume()
            process.kill()
        await self.exchange.aclose()
        self.monitor_database.dispose()


@asynccontextmanager
async def bench(database: Database, *, processes: int = 0) -> AsyncIterator[Bench]:
    """A new exchange and an emptied database: what one scenario left never spoils the next."""
    truncate_all(database)
    proxy = PgProxy.for_url(database.engine.url.render_as_string(hide_password=False))
    proxy.start()
    with tempfile.TemporaryDirectory(prefix="ats-chaos-") as data_dir:
        state_file = Path(data_dir) / "sim-accounts.json"  # what the exchange keeps across its restarts
        config = SimConfig(seed=29, mode="manual", port=0, weight_limit=WEIGHT_LIMIT, state_file=state_file)
        sim = SimServerThread(config)
        sim.start()
        desk_bench = Bench(sim, database, Path(data_dir), proxy)
        try:
            if processes:
                await asyncio.to_thread(desk_bench.start_processes, processes)
            else:
                await desk_bench.start_in_process()
            yield desk_bench
        finally:
            await desk_bench.aclose()
            desk_bench.sim.stop()  # the one running now (a restart replaces it)
            proxy.stop()


# ------------------------------------------------------------------------------------------- one run


def is_open(p: Position) -> bool:
    return p.phase in (Phase.OPEN, Phase.TP1_DONE)


def is_closed(p: Position) -> bool:
    return p.is_terminal


@dataclass(frozen=True, slots=True)
class Moment:
    """Where in a run the fault is injected: before the entry, once the position is protected, after TP1."""

    name: str


BEFORE_ENTRY = Moment("before_entry")
PROTECTED = Moment("protected")
AT_TP1 = Moment("at_tp1")
AT_EXIT = Moment("at_exit")

Inject = Callable[[Bench, random.Random], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a scenario whose runs are not one position's lifecycle (several positions, racing cycles)."""

    index: int
    symbols: list[str]  # the symbols it may use (none spoiled by a failed run)
    rng: random.Random
    figures: Figures


RunBody = Callable[[Bench, Run], Awaitable[list[str]]]  # returns the symbols it traded (each settled after it)


@dataclass(frozen=True)
class Scenario:
    name: str
    moment: Moment
    inject: Inject  # returns how many faults it injected
    heal: Callable[[Bench], Awaitable[None]] | None = None  # after the run: clear what it left
    expected_alerts: tuple[str, ...] = ()  # alert titles (substrings) this fault rightly raises
    exits: tuple[str, ...] = ("tp2", "breakeven", "stop")
    processes: int = 0  # real `ats monitor` processes (1, or 2 with a standby) for kill and freeze scenarios
    slow: bool = False  # waits out a whole minute: the benchmark runs it, make test does not
    by_cycle: bool = False  # the entry is sent by a place-orders cycle (tests/chaos/placement.py), not the desk
    vanishes: bool = False  # the fault makes the exchange forget the position: the run ends when the database does
    body: RunBody | None = None  # a run of its own instead of one position's lifecycle (moment and inject unused)


async def _walk(bench: Bench, key: str, exit_: str, scenario: Scenario, rng: random.Random) -> int:
    """Open, protect, TP1, exit; the fault at its moment. Returns the faults injected."""
    injected = 0
    p = await bench.desk.wait(key, is_open, "open and protected", timeout_s=RUN_TIMEOUT_S)
    assert p.levels is not None
    assert p.stop_price is not None
    tick = p.policy.rules.tick_size
    sign = p.direction.sign
    if scenario.moment is PROTECTED:
        injected += await scenario.inject(bench, rng)
        if scenario.vanishes:
            return injected + await _vanished(bench, key)
    if exit_ == "stop":  # the stop is this run's first crossing: faults meant for TP1 come here
        if scenario.moment in (AT_TP1, AT_EXIT):
            injected += await scenario.inject(bench, rng)
        await bench.set_price(p.symbol, p.stop_price - sign * 2 * tick)
        async with reaction(bench, "stop"):
            await bench.desk.wait(key, is_closed, "stopped out", timeout_s=RUN_TIMEOUT_S)
        return injected
    if scenario.moment is AT_TP1:
        injected += await scenario.inject(bench, rng)
    await bench.set_price(p.symbol, p.levels.tp1 + sign * 2 * tick)
    async with reaction(bench, "breakeven"):
        p = await bench.desk.wait(key, breakeven_up, "TP1 and the breakeven stop in place", timeout_s=RUN_TIMEOUT_S)
    assert p.levels is not None
    assert p.stop_price is not None
    if scenario.moment is AT_EXIT:
        injected += await scenario.inject(bench, rng)
        if scenario.vanishes:
            return injected + await _vanished(bench, key)
    if exit_ == "close":  # closed on request (close-all, an operator): the lifecycle cancels and sells at market
        async with reaction(bench, exit_):
            await _retried(bench, key, lambda: bench.desk.executor.apply(key, [CloseRequested("chaos", _now_ms())]))
            await bench.desk.wait(key, is_closed, "closed on request", timeout_s=RUN_TIMEOUT_S)
        return injected
    exit_price = p.levels.tp2 + sign * 2 * tick if exit_ == "tp2" else p.stop_price - sign * 2 * tick
    await bench.set_price(p.symbol, exit_price)
    async with reaction(bench, exit_):
        await bench.desk.wait(key, is_closed, f"closed by {exit_}", timeout_s=RUN_TIMEOUT_S)
    return injected


async def _vanished(bench: Bench, key: str) -> int:
    """The exchange forgot the position: the database must follow it (closed, marked vanished) without sending
    anything for it; counts what was sent anyway."""
    async with reaction(bench, "vanished"):
        p = await bench.desk.wait(key, is_closed, "closed as vanished", timeout_s=RUN_TIMEOUT_S)
    if not p.vanished:
        raise AssertionError(f"{key} closed without being marked vanished: {p.phase.value} {p.close_note}")
    await asyncio.sleep(1.0)  # what a confused system would send comes now: a stop for nothing, a close
    prefix = f"ats_{key}_"
    engine = bench.engine
    sent = [o.client_order_id for o in engine.orders.values() if o.client_order_id.startswith(prefix)]
    sent += [a.client_algo_id for a in engine.algo_orders.values() if a.client_algo_id.startswith(prefix)]
    bench.orders_after_vanish += len(sent)
    return 0


@asynccontextmanager
async def reaction(bench: Bench, what: str) -> AsyncIterator[None]:
    """Time from a price crossing to the database showing its consequence (seen by polling every 20 ms)."""
    started = time.monotonic()
    yield
    bench.reactions.append((what, time.monotonic() - started))


async def _entry(bench: Bench, symbol: str, direction: Direction, scenario: Scenario, run: int) -> str:
    """Send the entry like the place-orders task: a transient failure is retried by re-driving the position,
    which looks the entry up by client id before anything is sent again."""
    if scenario.by_cycle:
        return await _cycle_entry(bench, symbol, direction, run)
    position = await bench.desk.record(symbol, direction)
    await bench.exchange.set_margin_type(symbol, MarginType.ISOLATED)
    await bench.exchange.set_leverage(symbol, position.leverage)
    entry = position.entry_order
    assert entry is not None
    action = action_for_leg(position, entry)
    await _retried(bench, position.key, lambda: bench.desk.executor.execute(position.key, [action] if action else []))
    return position.key


async def _cycle_entry(bench: Bench, symbol: str, direction: Direction, run: int) -> str:
    """The entry sent by a place-orders cycle over one stored signal. The cycle may fail (its flow run would):
    the monitor and reconciliation must still protect what it opened."""
    marks = {m.symbol: m.mark_price for m in await bench.exchange.premium_index(symbol)}
    s = placement.signal(symbol, direction, placement.bar_of_run(bench.server.server_time_ms(), run), marks[symbol])
    ids = placement.record_scan_signals(bench.database, [s])
    result = await placement.run_cycle(bench.cycle_setup(), ids)
    if result.refused:
        raise AssertionError(f"the cycle refused {symbol}: {result.refused}")
    if result.failure:
        bench.cycle_failures.append(result.failure)
    return placement.key_of(s)


async def _retried(bench: Bench, key: str, attempt: Callable[[], Awaitable[object]]) -> None:
    """Like a Prefect task with retries: a transient failure is followed by re-drives of the position, which look
    every unanswered order up by client id before anything is sent again."""
    try:
        await attempt()
    except TRANSIENT:
        for delay_s in TASK_RETRY_DELAYS_S:
            await asyncio.sleep(delay_s)
            try:
                await bench.desk.executor.redrive(key)
                return
            except TRANSIENT:
                continue


def _now_ms() -> int:
    return WallClock().now_ms()


async def settle(bench: Bench, symbol: str) -> None:
    """The run's symbol flat on the exchange with none of our orders left, and every fill recorded (the monitor's
    last writes land). Other symbols are not this run's: one that a failed run left open spoils only itself."""

    def settled() -> bool:
        engine = bench.engine
        position = engine.positions.get(symbol)
        return (
            (position is None or not position.amount)
            and not any(a.symbol == symbol and is_own_client_id(a.client_algo_id) for a in engine.open_algos.values())
            and lost_events(engine, bench.database, bench.trades_before_restart) == 0
        )

    await wait_for(settled, timeout_s=RUN_TIMEOUT_S, what=f"{symbol} flat on the exchange and every fill recorded")


async def run_scenario(database: Database, scenario: Scenario, runs: int, seed: int, first_exit: int = 0) -> Figures:
    """`runs` lifecycles under `scenario` on a bench of its own, one position at a time, each to its end.

    A run that fails leaves its symbol as it is (the figures count it) and the next run takes another symbol."""
    async with bench(database, processes=scenario.processes) as desk_bench:
        return await _runs(desk_bench, scenario, runs, random.Random(seed), first_exit)


async def _runs(bench: Bench, scenario: Scenario, runs: int, rng: random.Random, first_exit: int) -> Figures:
    figures = Figures(scenario.name)
    audit = await bench.on_exchange(_audit)
    bench.audit = audit
    started = time.monotonic()
    spoiled: set[str] = set()
    try:
        for run in range(runs):
            usable = [s for s in SYMBOLS if s not in spoiled]
            if not usable:
                figures.notes.append(f"stopped after {run} runs: every symbol spoiled by a failed run")
                break
            symbol = usable[run % len(usable)]
            bench.current_symbol = symbol
            bench.run_symbols = [symbol]
            direction = Direction.LONG if rng.random() < 0.5 else Direction.SHORT
            exit_ = scenario.exits[(first_exit + run) % len(scenario.exits)]
            figures.runs += 1
            try:
                if scenario.body is not None:
                    # Several positions at once: the symbols from this run's place in the list on, wrapping.
                    start = run % len(usable)
                    symbols = usable[start:] + usable[:start]
                    for traded in await scenario.body(bench, Run(run, symbols, rng, figures)):
                        await settle(bench, traded)
                    continue
                if scenario.moment is BEFORE_ENTRY:
                    figures.faults_injected += await scenario.inject(bench, rng)
                    key = await _entry(bench, symbol, direction, scenario, run)
                    bench.keys.append(key)
                    figures.faults_injected += await _walk(bench, key, exit_, _after_entry(scenario), rng)
                else:
                    key = await _entry(bench, symbol, direction, scenario, run)
                    bench.keys.append(key)
                    figures.faults_injected += await _walk(bench, key, exit_, scenario, rng)
                await settle(bench, symbol)
            except Exception as error:  # a run that fails is a figure, not the end of the bench
                figures.errors += 1
                spoiled.update(bench.run_symbols)
                figures.notes.append(f"run {run} ({symbol} {direction.value} {exit_}): {error}"[:300])
            finally:
                await bench.after_run()
                if scenario.heal is not None:
                    await scenario.heal(bench)
        figures.duplicates = duplicate_orders(bench.engine) + bench.duplicates_before_restart + _overfilled(bench)
        figures.orders_after_vanish = bench.orders_after_vanish
        figures.notes.extend(f"a cycle failed (expected under this fault): {f}" for f in bench.cycle_failures[:2])
        figures.lost_events = lost_events(bench.engine, bench.database, bench.trades_before_restart)
        spans = audit.spans + audit.open_spans()
        figures.unprotected_seconds_max = max((seconds for _, seconds in spans), default=0.0)
        figures.unprotected_seconds_total = sum(seconds for _, seconds in spans)
        reactions = [seconds for _, seconds in bench.reactions]
        figures.reaction_seconds_max = max(reactions, default=0.0)
        figures.reaction_seconds_median = statistics.median(reactions) if reactions else 0.0
        titles = alert_titles(bench.database)
        false = [t for t in titles if not any(expected in t for expected in scenario.expected_alerts)]
        figures.false_alerts = len(false)
        figures.notes.extend(f"alert: {t}" for t in false)
    finally:
        await bench.on_exchange(lambda _server: _close_audit(audit))
        figures.seconds = time.monotonic() - started
    return figures


async def _audit(server: SimServer) -> ProtectionAudit:
    return ProtectionAudit(server.engine)


async def _close_audit(audit: ProtectionAudit) -> None:
    audit.close()


async def _attach(audit: ProtectionAudit, server: SimServer) -> None:
    audit.close()
    audit.attach(server.engine)


def _after_entry(scenario: Scenario) -> Scenario:
    """The rest of a run whose fault was injected before the entry: nothing more to inject."""
    return Scenario(scenario.name, Moment("none"), _nothing, exits=scenario.exits)


async def _nothing(_bench: Bench, _rng: random.Random) -> int:
    return 0


def _overfilled(bench: Bench) -> int:
    """Positions whose entry filled more than the approved quantity (a duplicate the client ids did not catch)."""
    positions = [bench.desk.journal.position(key) for key in bench.keys]
    return sum(1 for p in positions if p is not None and p.entry_qty > p.requested_qty)
