"""The active monitor: exchange streams -> the position lifecycle -> orders on the exchange and rows in PostgreSQL.

It protects money between trading cycles. Everything it does goes through `ats.execution.Executor` (idempotent,
journaled actions) and `ats.reconcile` (the exchange is the truth), so it can be killed at any instant and a new
instance finishes the work: every order is recorded before it is sent and looked up before it is sent again.

Event sources, all serialised per position (one asyncio.Lock per position key):
- the user data stream: fills, order and algo-order updates, account updates (funding, positions going flat);
  a triggered algo order's fills are reported under the algo's client id (by client id, else by the order id
  recorded from its ALGO_UPDATE); after every stream gap the REST reconciliation fills the hole;
- mark prices (@1s) of symbols with open positions: a tick reaches the lifecycle only when it crossed the stop
  (client-side supervision closes at market if the exchange stop does not fire); a tick that reached a live stop
  or take-profit starts a short wait for its fill, after which the symbol is reconciled at once (a user stream
  that stalled silently would otherwise hide the fill until the next periodic pass);
- closed bars of those symbols: the factor scorer re-scores the position and an opposite signal tightens the
  stop (never loosens it) or closes, as configured;
- timers: reconciliation (on start, after gaps, every `reconcile_interval_s`), re-driving legs whose outcome is
  unknown, a 5-second watchdog (stream freshness, listenKey age, readiness), the notification outbox, and while
  positions are open a cheap probe of the exchange's positions (a difference that outlasts the grace is a fill
  the user stream did not deliver).

The user stream's liveness: WebSocket pings (a missing pong drops the connection within seconds) prove the socket;
a fill found over REST that the stream never delivered proves it stalled, and its connection is replaced.

Stopping finishes the work in progress, closes the streams and leaves every protective order on the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ats.clock import Clock
from ats.config import Settings
from ats.domain import parse_client_id
from ats.exchange.base import (
    AccountUpdate,
    AlgoUpdate,
    Exchange,
    KlineUpdate,
    ListenKeyExpired,
    MarketStream,
    MarkPriceUpdate,
    OrderUpdate,
    StreamGap,
    UserEvent,
    UserStream,
)
from ats.exchange.budget import protective
from ats.exchange.errors import ExchangeError, RateLimited
from ats.exchange.streams import ListenKeyApi
from ats.execution import (
    ExecutionDeferred,
    Executor,
    UnknownPosition,
    events_from_algo_update,
    events_from_order_update,
    fill_from_update,
    key_of,
    owner,
)
from ats.factors import IncrementalScorer
from ats.lifecycle import (
    Event,
    ExitTrigger,
    Fill,
    MarkPrice,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    Position,
    RequestReconcile,
    awaiting_fills,
)
from ats.log import get_logger
from ats.reconcile import (
    PENDING_AGE_S,
    ExchangeSnapshot,
    ReconcileJournal,
    ReconcileReport,
    due_for_redrive,
    mismatched_symbols,
    reconcile,
    recovered_fills,
    sync_funding,
)
from db.session import database_outage
from monitor.metrics import MonitorMetrics
from monitor.view import Book, Watch, bar_of, market_streams, reversal_signal

log = get_logger(__name__)


def _log_failure(message: str, **fields: Any) -> None:
    """Inside an except block: a database outage (the bench cuts it; PostgreSQL ends the transaction of a process
    frozen inside it) is expected and logged in one line; anything else keeps its traceback."""
    error = sys.exc_info()[1]
    outage = None if error is None else database_outage(error)
    if outage is not None:
        log.warning(message, database=outage, **fields)
    else:
        log.exception(message, **fields)


class ListenKeyTracker:
    """The REST listenKey calls the user stream makes, remembering when the key was last created or extended,
    so the watchdog can tell a keepalive that silently stopped (the key would expire after 60 minutes)."""

    def __init__(self, api: ListenKeyApi, clock: Clock) -> None:
        self._api = api
        self._clock = clock
        self.refreshed_ms: int | None = None

    @property
    def listen_key(self) -> str | None:
        return self._api.listen_key

    async def create_listen_key(self) -> str:
        key = await self._api.create_listen_key()
        self.refreshed_ms = self._clock.now_ms()
        return key

    async def keepalive_listen_key(self) -> None:
        await self._api.keepalive_listen_key()
        self.refreshed_ms = self._clock.now_ms()

    async def close_listen_key(self) -> None:
        await self._api.close_listen_key()

    def age_s(self) -> float | None:
        return None if self.refreshed_ms is None else (self._clock.now_ms() - self.refreshed_ms) / 1000


@dataclass(frozen=True, slots=True)
class Tuning:
    """Timings that are not worth a configuration knob; tests shorten them."""

    pending_interval_s: float = 2.0  # how often legs without an outcome are checked
    pending_age_s: float = PENDING_AGE_S  # re-drive a placement once it is this old without an outcome
    redrive_backoff_max_s: float = 60.0
    reconcile_retry_s: float = 15.0  # the longest wait after failed passes (exchange or database down)
    reconcile_first_retry_s: float = 1.0  # the first retry: a short outage costs seconds, not the full wait
    reconcile_min_gap_s: float = 1.0  # requests closer than this are merged into one pass
    outbox_interval_s: float = 3.0
    flat_check_s: float = 2.0  # an account update says flat: reconcile if the position is still open by then
    funding_delay_s: float = 2.0  # a FUNDING_FEE account update: read the income after this (it lands later)
    fill_grace_s: float = 1.5  # a level reached (or the exchange's position changed) without a fill: then ask
    recheck_s: float = 15.0  # the same levels of a position are asked about again only after this
    probe_interval_s: float = 15.0  # while positions are open: compare the exchange's positions with the record
    warm_bars: int = 300  # closed bars fetched to warm the factor scorer of a newly watched symbol
    connect_timeout_s: float = 10.0
    shutdown_grace_s: float = 10.0


def reconcile_retry_delay_s(failures: int, tuning: Tuning) -> float:
    """The wait after `failures` (>= 1) failed passes in a row: doubling from the first retry up to the longest.

    A database or exchange outage of a few seconds at TP1 then delays the breakeven stop by about as much,
    not by the full retry wait (a 3 s database outage took 15 s to repair before)."""
    return min(tuning.reconcile_first_retry_s * 2.0 ** (failures - 1), tuning.reconcile_retry_s)


class Monitor:
    """One account's active monitor. `run(stop)` returns after `stop` is set and the work in progress is done."""

    def __init__(
        self,
        *,
        settings: Settings,
        exchange: Exchange,
        journal: ReconcileJournal,
        user_stream: UserStream,
        market_stream: MarketStream,
        clock: Clock,
        metrics: MonitorMetrics,
        listen_keys: ListenKeyTracker | None = None,
        outbox: Callable[[], Awaitable[int]] | None = None,
        weight_used: Callable[[], Awaitable[int]] | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        self._settings = settings
        self._exchange = exchange
        self._journal = journal
        self._user = user_stream
        self._market = market_stream
        self._clock = clock
        self._metrics = metrics
        self._listen_keys = listen_keys
        self._outbox = outbox
        self._weight_used = weight_used
        self._tuning = tuning or Tuning()
        self._executor = Executor(exchange, journal, clock, source="monitor")
        self._scorer = IncrementalScorer(settings.bar_interval)
        self._book = Book()
        self._locks: dict[str, asyncio.Lock] = {}  # kept for the process's life: replacing one could let two run
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._reconcile_wanted = asyncio.Event()
        self._passes = asyncio.Lock()  # one reconciliation pass at a time (full, or a few symbols')
        self._streams_dirty = asyncio.Event()
        self._since_ms: int | None = None  # start of the last clean reconciliation
        self._subscribed: frozenset[str] = frozenset()
        self._warmed: set[str] = set()
        self._marks: dict[str, Decimal] = {}
        self._mark_busy: set[str] = set()
        self._checking: dict[str, set[str]] = {}  # key -> legs whose reached level is being checked
        self._checked: dict[str, dict[str, float]] = {}  # key -> {leg checked: monotonic time to recheck it}
        self._redrive_after: dict[str, tuple[float, float]] = {}  # key -> (monotonic not before, backoff)
        self._problems: frozenset[str] = frozenset()  # found by the last watchdog check
        self._reported: frozenset[str] = frozenset()  # logged as lasting, not yet recovered

    @property
    def scoring(self) -> frozenset[str]:
        """Symbols whose closed bars are re-scored (their factor state is warm)."""
        return frozenset(self._warmed)

    # ------------------------------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._metrics.state.set_problems(["starting"], self._clock.now_ms())
        log.info("monitor active", account=self._settings.account, venue=self._settings.venue.value)
        consumers = [
            asyncio.create_task(self._consume_user(), name="monitor-user"),
            asyncio.create_task(self._consume_market(), name="monitor-market"),
        ]
        loops: list[asyncio.Task[None]] = []
        try:
            if not await self._user.wait_connected(self._tuning.connect_timeout_s):
                log.warning("user stream not connected yet: reconciling over REST meanwhile")
            self._refresh_all()
            self._reconcile_wanted.set()
            loops.append(asyncio.create_task(self._reconcile_loop(), name="monitor-reconcile"))
            loops.append(asyncio.create_task(self._subscriptions_loop(), name="monitor-subscriptions"))
            loops.append(asyncio.create_task(self._pending_loop(), name="monitor-pending"))
            loops.append(asyncio.create_task(self._watchdog_loop(), name="monitor-watchdog"))
            loops.append(asyncio.create_task(self._probe_loop(), name="monitor-probe"))
            if self._outbox is not None:
                loops.append(asyncio.create_task(self._outbox_loop(), name="monitor-outbox"))
            await stop.wait()
        finally:
            await self._shutdown(consumers, loops)

    async def _shutdown(self, consumers: list[asyncio.Task[None]], loops: list[asyncio.Task[None]]) -> None:
        """Stop taking new work, let the work in progress finish, close the streams; orders stay on the exchange."""
        self._stop.set()
        log.info("monitor stopping: finishing the work in progress", in_flight=len(self._tasks))
        for task in consumers:
            task.cancel()
        busy = [*loops, *self._tasks]
        unfinished: set[asyncio.Task[None]] = set()
        if busy:
            _, unfinished = await asyncio.wait(busy, timeout=self._tuning.shutdown_grace_s)
        for task in unfinished:
            log.warning("work still running at shutdown: cancelled (redone on the next start)", task=task.get_name())
            task.cancel()
        await asyncio.gather(*consumers, *busy, return_exceptions=True)
        for close in (self._user.aclose, self._market.aclose, self._exchange.aclose):
            try:
                await close()
            except Exception:
                log.exception("closing a connection failed")
        log.info("monitor stopped; protective orders stay on the exchange")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._stop.is_set():  # stopping: no new work (the next start redoes whatever this was)
            work.close()
            return
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            trace = "".join(traceback.format_exception(error))
            log.error("background work failed", task=task.get_name(), error=repr(error), traceback=trace)

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopping; True when it is time to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()

    async def _wait_either(self, event: asyncio.Event, timeout_s: float) -> None:
        """Until `event` is set, the monitor stops, or the timeout passes."""
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def request_reconcile(self, reason: str) -> None:
        if not self._reconcile_wanted.is_set():
            log.info("reconciliation requested", reason=reason)
        self._reconcile_wanted.set()

    # ------------------------------------------------------------------------------------------ the view

    def _refresh(self, key: str) -> None:
        """Re-read one position into the view after a change; logs what changed for an operator."""
        position = self._journal.position(key)
        before, after = self._book.put(key, position)
        if position is not None:
            _log_change(before, after, position)
        if (before is None) != (after is None):
            self._streams_dirty.set()
        if after is None:
            self._redrive_after.pop(key, None)
            self._checked.pop(key, None)
        else:
            self._levels_since_last_tick(after)
        self._metrics.state.open_positions = len(self._book)

    def _refresh_all(self) -> None:
        positions = self._journal.open_positions()
        known = {w.key for w in self._book}
        for p in positions:
            if p.key not in known and not p.is_terminal:
                log.info("watching a position", symbol=p.symbol, key=p.key, phase=p.phase.value, qty=p.open_qty)
        symbols = self._book.symbols()
        self._book.replace_all(positions)
        if self._book.symbols() != symbols or self._book.symbols() != self._subscribed:
            self._streams_dirty.set()
        for watch in self._book:
            self._levels_since_last_tick(watch)
        self._metrics.state.open_positions = len(self._book)

    def _levels_since_last_tick(self, watch: Watch) -> None:
        """The last mark against levels the view has just learnt: a stop placed by other work (a reconciliation, a
        flow) may have been reached by a tick that came before the view knew it. With the user stream mute, that
        stop's fill was found only by the next full pass or probe (up to 24 s in the chaos runs)."""
        mark = self._marks.get(watch.symbol)
        if mark is not None:
            self._watch_levels(watch, mark)

    # ------------------------------------------------------------------------------------------ user stream

    async def _consume_user(self) -> None:
        async for event in self._user.events():
            try:
                self._on_user_event(event, self._clock.monotonic())
            except Exception:  # e.g. the database is down: the event is lost, the exchange still has it
                _log_failure("skipping a user event that failed to dispatch", kind=type(event).__name__)
                self.request_reconcile(f"a {type(event).__name__} failed to dispatch")

    def _on_user_event(self, event: UserEvent, received: float) -> None:
        match event:
            case OrderUpdate():
                self._on_order_update(event, received)
            case AlgoUpdate():
                self._on_algo_update(event, received)
            case AccountUpdate():
                self._on_account_update(event)
            case StreamGap():
                self._metrics.events.labels("gap").inc()
                log.warning(
                    "user stream was down: filling the gap over REST",
                    down_s=round((event.reconnected_at_ms - event.down_since_ms) / 1000, 1),
                    reason=event.reason,
                )
                self.request_reconcile("user stream gap")
            case ListenKeyExpired():
                log.warning("listenKey expired: the user stream reconnects with a new one")

    def _on_order_update(self, update: OrderUpdate, received: float) -> None:
        watch = self._book.on_symbol(update.symbol)
        found = owner(
            update.client_order_id,
            update.order_id,
            update.symbol,
            recorded=self._journal.client_id_for_order,
            holders={} if watch is None else {watch.symbol: watch.key},
        )
        if found is None:
            return
        key, cid = found.key, found.client_id
        if found.ours:
            self._executor.record_update(cid, update)
            events = events_from_order_update(update, cid)
        else:
            fill = fill_from_update(update, cid)
            if fill is None:
                return
            if update.is_triggered and not update.is_liquidation:
                # Probably one of our stops or targets whose ALGO_UPDATE (naming this order) has not been seen:
                # reconciliation looks the legs up first, so the fill is reported under the right leg.
                self.request_reconcile(f"{update.symbol}: fill of triggered order {update.order_id} not attributed")
                return
            events = [fill]
            log.warning(
                "fill by an order that is not ours",
                symbol=update.symbol,
                key=key,
                client_id=cid,
                qty=fill.qty,
                price=fill.price,
                liquidation=fill.liquidation,
            )
        for event in events:
            _log_event(update.symbol, key, event)
        if events:
            kind = "fill" if isinstance(events[0], Fill) else "order"
            self._metrics.events.labels(kind).inc()
            self._spawn(self._handle(key, events, kind, received), f"monitor-{kind}-{key}")

    def _on_algo_update(self, update: AlgoUpdate, received: float) -> None:
        cid = update.client_algo_id
        key = key_of(cid)
        if key is None:
            return
        self._executor.record_update(cid, update)
        parsed = parse_client_id(cid)
        log.info(
            "algo order update",
            symbol=update.symbol,
            key=key,
            leg=parsed[1] if parsed else "?",
            status=update.status.value,
            trigger=update.trigger_price,
        )
        events = events_from_algo_update(update)
        if events:
            self._metrics.events.labels("algo").inc()
            self._spawn(self._handle(key, events, "algo", received), f"monitor-algo-{key}")

    def _on_account_update(self, update: AccountUpdate) -> None:
        if update.reason == "FUNDING_FEE":
            self._spawn(self._funding_later(), "monitor-funding")
        for change in update.positions:
            watch = self._book.on_symbol(change.symbol)
            if change.amount == 0 and watch is not None and watch.open_qty > 0:
                self._spawn(self._flat_check_later(change.symbol), f"monitor-flat-{change.symbol}")

    async def _handle(self, key: str, events: Sequence[Event], kind: str, received: float) -> None:
        try:
            async with self._lock(key):
                requests = await self._executor.apply(key, events)
                self._refresh(key)
        except UnknownPosition:
            log.warning("event for a position this account never recorded: ignored", key=key, kind=kind)
            return
        except ExecutionDeferred as exc:
            log.warning("exchange unreachable: the position's pending work is retried", key=key, error=str(exc))
            self._refresh(key)
            return
        except Exception:
            _log_failure("handling an event failed; reconciliation will repair it", key=key, kind=kind)
            self.request_reconcile(f"failed to handle a {kind} event of {key}")
            return
        self._metrics.event_to_action.labels(kind).observe(self._clock.monotonic() - received)
        self._follow_up(requests)

    def _follow_up(self, requests: Sequence[RequestReconcile]) -> None:
        for request in requests:
            self.request_reconcile(f"{request.symbol}: {request.reason}")

    async def _funding_later(self) -> None:
        if await self._pause(self._tuning.funding_delay_s):
            return
        start = self._clock.now_ms() - 3_600_000
        try:
            await sync_funding(
                self._exchange, self._journal, self._executor, self._clock, start_ms=start, guard=self._lock
            )
        except Exception:
            _log_failure("reading funding payments failed; the next reconciliation reads them")

    async def _flat_check_later(self, symbol: str) -> None:
        if await self._pause(self._tuning.flat_check_s):
            return
        watch = self._book.on_symbol(symbol)
        if watch is not None and watch.open_qty > 0:
            self.request_reconcile(f"the exchange reports {symbol} flat while {watch.open_qty} is recorded open")

    # ------------------------------------------------------------------------------------------ market streams

    async def _consume_market(self) -> None:
        async for event in self._market.events():
            try:
                match event:
                    case MarkPriceUpdate():
                        self._on_mark(event, self._clock.monotonic())
                    case KlineUpdate() if event.closed:
                        self._on_closed_bar(event)
                    case StreamGap():
                        self._metrics.events.labels("market_gap").inc()
                        log.warning("market stream reconnected", reason=event.reason)
            except Exception:
                _log_failure("skipping a market event that failed to dispatch", kind=type(event).__name__)

    def _on_mark(self, update: MarkPriceUpdate, received: float) -> None:
        self._marks[update.symbol] = update.mark_price
        watch = self._book.on_symbol(update.symbol)
        if watch is None:
            return
        self._watch_levels(watch, update.mark_price)
        if watch.key in self._mark_busy or not watch.wants_mark(update.mark_price, update.event_time_ms):
            return
        self._mark_busy.add(watch.key)
        self._spawn(self._handle_mark(watch.key, update, received), f"monitor-mark-{watch.key}")

    async def _handle_mark(self, key: str, update: MarkPriceUpdate, received: float) -> None:
        try:
            async with self._lock(key):
                watch = self._book.get(key)
                if watch is None or not watch.wants_mark(update.mark_price, update.event_time_ms):
                    return
                if watch.stop_crossed_ms is None:
                    log.info(
                        "mark price reached the stop: the exchange stop should fire now",
                        symbol=watch.symbol,
                        key=key,
                        mark=update.mark_price,
                        stop=watch.stop_price,
                    )
                event = MarkPrice(update.mark_price, update.event_time_ms)
                requests = await self._executor.apply(key, [event])
                self._refresh(key)
            self._metrics.tick_to_action.observe(self._clock.monotonic() - received)
            self._follow_up(requests)
        except ExecutionDeferred as exc:
            log.warning("exchange unreachable while supervising a stop", key=key, error=str(exc))
        except Exception:
            _log_failure("supervising a stop failed", key=key)
        finally:
            self._mark_busy.discard(key)

    def _watch_levels(self, watch: Watch, mark: Decimal) -> None:
        """A tick that reached a live stop or take-profit: the exchange fires it now and its fill must follow.

        Each leg is checked on its own: a tick that reaches the breakeven stop while TP1's check is still in its
        grace is checked too (skipped, the stop's fill waited for the 15 s probe when the stream was mute)."""
        reached = watch.reached(mark)
        if not reached:
            return
        now = self._clock.monotonic()
        checking = self._checking.get(watch.key, set())
        recheck_at = self._checked.get(watch.key, {})
        new = tuple(t for t in reached if t.client_id not in checking and now >= recheck_at.get(t.client_id, 0.0))
        if not new:
            return
        self._checking[watch.key] = checking | {t.client_id for t in new}
        self._spawn(self._check_levels(watch, new, mark), f"monitor-levels-{watch.key}")

    async def _check_levels(self, watch: Watch, reached: tuple[ExitTrigger, ...], mark: Decimal) -> None:
        """No fill within the grace after its level was reached: reconcile the symbol now, not minutes later."""
        try:
            if await self._pause(self._tuning.fill_grace_s):
                return
            waiting = awaiting_fills(self._journal.position(watch.key), reached)
            if not waiting:
                return
            log.warning(
                "the mark price reached a level and no fill came: asking the exchange",
                symbol=watch.symbol,
                key=watch.key,
                legs=[t.leg for t in waiting],
                mark=mark,
                waited_s=self._tuning.fill_grace_s,
            )
            await self._verify(frozenset({watch.symbol}), "level")
        finally:
            legs = {t.client_id for t in reached}
            checking = self._checking.get(watch.key, set()) - legs
            if checking:
                self._checking[watch.key] = checking
            else:
                self._checking.pop(watch.key, None)
            if self._book.get(watch.key) is not None:  # (a closed position's are forgotten)
                recheck_at = self._clock.monotonic() + self._tuning.recheck_s
                self._checked.setdefault(watch.key, {}).update(dict.fromkeys(legs, recheck_at))

    async def _verify(self, symbols: frozenset[str], trigger: str, *, after_gap: bool = False) -> None:
        """Reconcile these symbols now. Fills the pass finds that the user stream never delivered (though it had
        time to) prove the stream stalled: its connection is replaced (a StreamGap and a full pass follow). Not
        `after_gap`: a gap explains them, and each replacement would call for another full pass."""
        try:
            async with self._passes:
                before = [p for p in self._journal.open_positions() if p.symbol in symbols]  # after any other pass
                report = await self._reconcile(symbols)
        except ExchangeError as exc:
            self._metrics.fill_checks.labels(trigger, "failed").inc()
            log.warning("cannot ask the exchange now; the next pass will", symbols=sorted(symbols), error=str(exc))
            return
        except Exception:
            self._metrics.fill_checks.labels(trigger, "failed").inc()
            _log_failure("reconciling a symbol failed; the next pass will", symbols=sorted(symbols))
            return
        after = {p.key: self._journal.position(p.key) for p in before}
        self._refresh_all()
        missed = recovered_fills(before, after)
        self._metrics.fill_checks.labels(trigger, "missed" if missed else "clean").inc()
        if report.paused:
            self.request_reconcile("a close that reduced nothing awaits the exchange")
        if missed and not after_gap:
            log.warning(
                "the user stream missed fills the exchange made: replacing its connection",
                symbols=sorted(symbols),
                fills=missed,
            )
            self._user.reconnect(f"{missed} fills missed")

    def _on_closed_bar(self, update: KlineUpdate) -> None:
        watch = self._book.on_symbol(update.symbol)
        if watch is None or update.symbol not in self._warmed or update.interval != self._scorer.interval:
            return
        self._spawn(self._rescore(watch, update), f"monitor-bar-{update.symbol}")

    async def _rescore(self, watch: Watch, update: KlineUpdate) -> None:
        try:
            row = self._scorer.update(bar_of(update), as_of_ms=update.close_time_ms + 1)
        except ValueError as exc:  # a bar already scored (a replayed event)
            log.debug("bar not re-scored", symbol=update.symbol, reason=str(exc))
            return
        self._metrics.events.labels("bar").inc()
        mark = self._marks.get(update.symbol, update.close)
        event = reversal_signal(watch, row, mark, self._clock.now_ms())
        if event is None:
            return
        log.warning(
            "opposite signal on a closed bar",
            symbol=update.symbol,
            key=watch.key,
            signal=event.direction.value,
            strength=round(event.strength, 1),
            on_reversal=watch.on_reversal,
            mark=mark,
            stop=watch.stop_price,
        )
        await self._handle(watch.key, [event], "reversal", self._clock.monotonic())

    async def _subscriptions_loop(self) -> None:
        """Keep the market subscriptions equal to the symbols with open positions."""
        while not self._stop.is_set():
            await self._wait_either(self._streams_dirty, 60.0)
            if not self._streams_dirty.is_set() or self._stop.is_set():
                continue
            self._streams_dirty.clear()
            want = self._book.symbols()
            added, dropped = want - self._subscribed, self._subscribed - want
            interval = self._settings.bar_interval
            try:
                if dropped:
                    await self._market.unsubscribe(
                        [s for sym in sorted(dropped) for s in market_streams(sym, interval)]
                    )
                    for symbol in dropped:
                        self._scorer.forget(symbol)
                        self._warmed.discard(symbol)
                        self._marks.pop(symbol, None)
                    log.info("stopped watching symbols", symbols=sorted(dropped))
                if added:
                    await self._market.subscribe([s for sym in sorted(added) for s in market_streams(sym, interval)])
                    for symbol in added:
                        self._spawn(self._warm(symbol), f"monitor-warm-{symbol}")
                    log.info("watching mark prices and bars", symbols=sorted(added))
                self._subscribed = want
            except Exception:
                log.exception("updating market subscriptions failed; retrying")
                self._streams_dirty.set()
                await self._pause(1.0)

    async def _warm(self, symbol: str) -> None:
        try:
            bars = await self._exchange.klines(symbol, self._settings.bar_interval, limit=self._tuning.warm_bars)
        except ExchangeError as exc:
            log.warning("cannot warm the factor scorer; bars will not be re-scored", symbol=symbol, error=str(exc))
            return
        if len(bars) == 0 or symbol not in self._book.symbols():
            return
        self._scorer.warm([bars], as_of_ms=int(bars.close_time[-1]) + 1)
        self._warmed.add(symbol)

    # ------------------------------------------------------------------------------------------ timers

    async def _reconcile_loop(self) -> None:
        interval = self._settings.monitor.reconcile_interval_s
        delay = interval
        failures = 0
        while not self._stop.is_set():
            await self._wait_either(self._reconcile_wanted, delay)
            if self._stop.is_set():
                return
            self._reconcile_wanted.clear()
            failures = 0 if await self._reconcile_once() else failures + 1
            delay = interval if failures == 0 else min(interval, reconcile_retry_delay_s(failures, self._tuning))
            if await self._pause(self._tuning.reconcile_min_gap_s):
                return

    async def _reconcile(self, symbols: frozenset[str] | None = None) -> ReconcileReport:
        """One reconciliation pass (of these symbols, or all); the caller holds `self._passes`."""
        return await reconcile(
            self._exchange,
            self._journal,
            self._executor,
            self._clock,
            self._settings,
            since_ms=self._since_ms,
            guard=self._lock,
            source="monitor",
            pending_age_s=self._tuning.pending_age_s,
            symbols=symbols,
        )

    async def _reconcile_once(self) -> bool:
        """One full pass; False when the next should come soon (it failed, or a paused close awaits the exchange)."""
        started = self._clock.now_ms()
        try:
            async with self._passes:
                report = await self._reconcile()
        except RateLimited as exc:
            # The budget refused the account-wide reads (a sweep), or the exchange said 429. The positions' own
            # symbols cost little and may use what the sweeps leave: a gap's unheard fills are found now, not when
            # the next weight minute lets a full pass through (up to 35 s in the chaos runs).
            self._metrics.reconciles.labels("failed").inc()
            log.warning("full reconciliation refused by the request budget: reconciling the positions", error=str(exc))
            symbols = frozenset(p.symbol for p in self._journal.open_positions())
            if symbols:
                await self._verify(symbols, "sweep", after_gap=True)
            return False
        except ExchangeError as exc:
            self._metrics.reconciles.labels("failed").inc()
            log.warning("reconciliation failed: the exchange cannot be read; retrying", error=str(exc))
            return False
        except Exception:
            self._metrics.reconciles.labels("failed").inc()
            _log_failure("reconciliation failed; retrying")
            return False
        self._metrics.reconciles.labels("clean" if report.clean else "repaired").inc()
        if not report.errors and not report.deferred:
            self._since_ms = started
        self._metrics.state.last_reconcile_ms = self._clock.now_ms()
        self._refresh_all()
        self._assess()
        return not report.paused

    async def _pending_loop(self) -> None:
        """Re-drive positions whose legs have had no outcome for a while (a crashed peer, an outage)."""
        while not await self._pause(self._tuning.pending_interval_s):
            try:
                self._refresh_all()
                for watch in self._book:
                    if watch.pending and self._redrive_due(watch.key):
                        ages = self._journal.order_ages_s(watch.pending)
                        if due_for_redrive(watch.pending, ages, self._tuning.pending_age_s):
                            await self._redrive(watch)
            except Exception:
                _log_failure("checking pending legs failed")

    def _redrive_due(self, key: str) -> bool:
        not_before, _ = self._redrive_after.get(key, (0.0, 0.0))
        return self._clock.monotonic() >= not_before

    async def _redrive(self, watch: Watch) -> None:
        legs = [parse_client_id(cid) for cid in watch.pending]
        log.warning(
            "re-driving legs without an outcome",
            symbol=watch.symbol,
            key=watch.key,
            legs=[p[1] for p in legs if p],
        )
        self._metrics.redrives.inc()
        deferred = False
        try:
            async with self._lock(watch.key):
                requests = await self._executor.redrive(watch.key, resend_entries=False)
                self._refresh(watch.key)
            self._follow_up(requests)
        except ExecutionDeferred as exc:
            log.warning("exchange unreachable: re-drive postponed", key=watch.key, error=str(exc))
            deferred = True
        except Exception:  # one position's trouble must not hold up the re-drives of the others
            _log_failure("re-driving failed; retried later", key=watch.key)
            deferred = True
        still = self._book.get(watch.key)
        _, backoff = self._redrive_after.get(watch.key, (0.0, 0.0))
        if deferred or (still is not None and still.pending == watch.pending):
            backoff = min(max(backoff * 2, self._tuning.pending_interval_s), self._tuning.redrive_backoff_max_s)
            self._redrive_after[watch.key] = (self._clock.monotonic() + backoff, backoff)
        else:
            self._redrive_after.pop(watch.key, None)

    async def _probe_loop(self) -> None:
        """While positions are open: does the exchange hold what the record says (one cheap request)? A difference
        that outlasts the grace is a fill the user stream did not deliver: those symbols are reconciled."""
        while not await self._pause(self._tuning.probe_interval_s):
            if not len(self._book):
                continue
            try:
                suspects = await self._probe()
                if suspects and not await self._pause(self._tuning.fill_grace_s):
                    suspects &= await self._probe()
                    if suspects:
                        log.warning(
                            "the exchange's positions differ from the record and no fill came: asking the exchange",
                            symbols=sorted(suspects),
                        )
                        await self._verify(suspects, "probe")
            except ExchangeError as exc:
                log.warning("probing the exchange's positions failed", error=str(exc))
            except Exception:
                log.exception("probing the exchange's positions failed")

    @protective  # (it finds fills nobody heard of: a scan using up its share must not hold it up)
    async def _probe(self) -> frozenset[str]:
        snapshot = ExchangeSnapshot(tuple(await self._exchange.positions()), (), ())
        return mismatched_symbols(self._journal.open_positions(), snapshot)

    async def _watchdog_loop(self) -> None:
        """Every few seconds: stream freshness, the listenKey's age, readiness and the request weight used."""
        interval = self._settings.monitor.watchdog_interval_s
        while True:
            started = self._clock.monotonic()
            try:
                await self._watchdog_once()
            except Exception:
                _log_failure("watchdog check failed")
            if await self._pause(interval):
                return
            late = self._clock.monotonic() - started - interval
            if late > 1.0:
                log.warning("event loop was blocked", late_s=round(late, 2))

    async def _watchdog_once(self) -> None:
        self._assess()
        await self._check_listen_key()
        if self._weight_used is not None:
            self._metrics.state.weight_used = await self._weight_used()

    def _assess(self) -> None:
        """Readiness: streams up and fresh, a recent successful reconciliation."""
        state = self._metrics.state
        user, market = self._user.health(), self._market.health()
        state.streams = {"user": user, "market": market}
        now = self._clock.now_ms()
        problems: set[str] = set()
        if not user.connected:
            problems.add("user stream disconnected")
        if self._subscribed:
            stale_ms = self._settings.monitor.stream_stale_after_s * 1000
            if not market.connected:
                problems.add("market stream disconnected")
            elif market.last_message_ms is not None and now - market.last_message_ms > stale_ms:
                problems.add("market stream silent")
        last = state.last_reconcile_ms
        if last is None or now - last > 2_000 * self._settings.monitor.reconcile_interval_s + 60_000:
            problems.add("no recent successful reconciliation")
        # Logged once a problem outlasts one check: the first check runs while the streams still connect.
        lasting = problems & self._problems
        for problem in sorted(lasting - self._reported):
            log.warning("monitor not ready", problem=problem)
        for problem in sorted(self._reported - problems):
            log.info("monitor recovered", problem=problem)
        self._reported = (self._reported & problems) | lasting
        self._problems = frozenset(problems)
        state.set_problems(sorted(problems), now)

    async def _check_listen_key(self) -> None:
        """The user stream extends its listenKey itself; should that have stopped, extend it here."""
        if self._listen_keys is None:
            return
        age = self._listen_keys.age_s()
        if age is None or age <= self._settings.monitor.listen_key_keepalive_s + 60:
            return
        log.warning("listenKey keepalive overdue: extending it now", age_s=round(age))
        try:
            await self._listen_keys.keepalive_listen_key()
        except ExchangeError as exc:
            log.warning("listenKey keepalive failed", error=str(exc))

    async def _outbox_loop(self) -> None:
        assert self._outbox is not None
        while not await self._pause(self._tuning.outbox_interval_s):
            try:
                sent = await self._outbox()
            except Exception:
                _log_failure("delivering notifications failed; retrying")
                continue
            if sent:
                log.info("notifications sent", count=sent)


# ---------------------------------------------------------------------------------------------- operator logs


def _log_event(symbol: str, key: str, event: Event) -> None:
    parsed = parse_client_id(getattr(event, "client_id", ""))
    leg = parsed[1] if parsed else getattr(event, "client_id", "")
    if isinstance(event, Fill):
        log.info(
            "fill",
            symbol=symbol,
            key=key,
            leg=leg,
            side=event.side.value,
            qty=event.qty,
            price=event.price,
            done=event.order_done,
            trade_id=event.trade_id,
        )
    elif isinstance(event, OrderRejected):
        log.warning("order rejected", symbol=symbol, key=key, leg=leg, code=event.code, reason=event.message)
    elif isinstance(event, OrderCanceled):
        log.info("order expired" if event.expired else "order cancelled", symbol=symbol, key=key, leg=leg)
    elif isinstance(event, OrderAccepted):
        log.info("order acknowledged", symbol=symbol, key=key, leg=leg)


def _log_change(before: Watch | None, after: Watch | None, position: Position) -> None:
    fields: dict[str, object] = {"symbol": position.symbol, "key": position.key}
    if after is None:
        if before is not None:
            log.info(
                "position closed",
                **fields,
                phase=position.phase.value,
                reason=position.exit_reason.value if position.exit_reason else position.error,
                entry=position.entry_price,
                exit=position.exit_price,
                qty=position.entry_qty,
                net_pnl=position.net_pnl,
            )
        return
    if before is None or before.phase is not after.phase:
        log.info("position phase", **fields, phase=after.phase.value, open_qty=after.open_qty, stop=after.stop_price)
    if before is not None and before.stop_price != after.stop_price:
        if before.stop_price is None:
            log.info("stop set", **fields, stop=after.stop_price)
        else:
            log.info("stop moved", **fields, old=before.stop_price, new=after.stop_price)
