"""Reconciliation: bring the recorded positions in line with the exchange, which is the truth.

Streams lose events (a dropped socket, a silently dead listenKey, a crash between an order and its record), so
the monitor reconciles on start, after every stream gap and every few minutes, and the `reconcile` flow does the
same on a schedule. One pass:

1. Snapshot the exchange (positions, open orders, open algo orders), *then* read the open positions. Every order
   is recorded before it is sent, so anything of ours on the exchange at snapshot time is in that read.
2. Legs the exchange no longer lists as open are looked up: a triggered stop reports its fills (it was not
   cancelled), a cancelled or unknown order is reported cancelled, and the lifecycle replaces what is missing.
3. Fills the journal has not recorded (userTrades since the last pass, per symbol with a position) are replayed;
   the lifecycle deduplicates by trade id. Liquidations and manual fills reduce the position like our own exits.
4. Funding payments (income FUNDING_FEE) are fed to the positions that held through them.
5. Legs whose placement outcome is unknown are re-driven once they are a few seconds old (look before place);
   every stop that a replayed fill or a look-up calls for is looked up before it is placed (it may have been sent
   ahead of its record while the database was down, see ats.execution).
   Entries are only looked up, never re-sent: client ids are unique among *open* orders only.
6. Orders with our client-id prefix that belong to no live leg are cancelled (orphans), except those of an open
   position that does not know them yet (sent ahead of their record: the replay adopts them).
7. A position the exchange no longer holds, even after the replay, is reported vanished (liquidation, ADL, a
   manual close); a position the exchange holds that nobody recorded is adopted and protected, and the user told.
8. A position whose market close was paused (it reduced nothing, -2022) and that the exchange still holds after
   all this is reported held, and its close goes ahead.

A pass may cover a few symbols only (`symbols`): the monitor's quick look when a fill it expected did not come.

The planning steps are pure functions (tested without I/O); `reconcile` is the shell over the Exchange protocol,
the journal and the executor, shared by the monitor and the flow. It imports neither the database nor Prefect.
Its requests are protective work for the shared request budget: a scan using up the minute never holds it up. The
account-wide reads of a full pass are a sweep (ats.exchange.budget): they leave the last of the budget to the work
of single positions and fail instead of waiting, so a full pass never holds up the look-up of a fired stop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from ats.clock import Clock
from ats.config import Settings
from ats.domain import Band, Signal, SymbolRules, is_own_client_id
from ats.exchange.base import AlgoOrder, Exchange, Income, Order, PositionInfo, Trade, is_liquidation_client_id
from ats.exchange.budget import Priority, protective, request_priority
from ats.execution import QUOTE_ASSET, ExecutionDeferred, Executor, Journal, fills_of, key_of, owner
from ats.lifecycle import (
    Action,
    Event,
    Fill,
    FundingPaid,
    LegOrder,
    Notify,
    OrderState,
    Policy,
    Position,
    PositionHeld,
    PositionVanished,
    RequestReconcile,
    adopt_position,
)
from ats.log import get_logger
from ats.messages import text
from ats.notify import AlertNote
from ats.risk import plan_levels

log = get_logger(__name__)

ZERO = Decimal(0)
OVERLAP_MS = 60_000  # windows reach this far before the last pass and a position's opening (clock skew, late rows)
PENDING_AGE_S = 5.0  # a placement this old without an outcome was abandoned by whoever decided it

Guard = Callable[[str], AbstractAsyncContextManager[object]]


class ReconcileJournal(Journal, Protocol):
    """The queries reconciliation needs beyond the executor's (db.journal.PostgresJournal implements them)."""

    def open_positions(self) -> list[Position]: ...

    def client_id_for_order(self, exchange_order_id: int) -> str | None: ...

    def recorded_trade_ids(self, symbol: str, since_ms: int) -> set[int]: ...

    def order_ages_s(self, client_ids: Sequence[str]) -> dict[str, float]: ...

    def create(self, position: Position, actions: Sequence[Action], *, source: str) -> None: ...

    def note(self, kind: str, source: str, *, symbol: str | None = None, **data: Any) -> None: ...


# ---------------------------------------------------------------------------------------------- pure planning


@dataclass(frozen=True, slots=True)
class ExchangeSnapshot:
    positions: tuple[PositionInfo, ...]
    open_orders: tuple[Order, ...]
    open_algo_orders: tuple[AlgoOrder, ...]

    @property
    def listed(self) -> frozenset[str]:
        """Client ids of everything the exchange lists as open (orders and algo orders)."""
        return frozenset(o.client_order_id for o in self.open_orders) | frozenset(
            a.client_algo_id for a in self.open_algo_orders
        )

    def position(self, symbol: str) -> PositionInfo | None:
        return next((p for p in self.positions if p.symbol == symbol and p.amount != 0), None)


@dataclass(frozen=True, slots=True)
class Orphan:
    """An order of ours on the exchange that no live leg of an open position accounts for."""

    client_id: str
    symbol: str
    algo: bool


@dataclass(frozen=True, slots=True)
class Plan:
    lookups: dict[str, tuple[LegOrder, ...]]  # key -> acknowledged legs gone from the open lists (or placed unacked)
    pending: dict[str, tuple[str, ...]]  # key -> client ids whose placement or cancel outcome is unknown
    orphans: tuple[Orphan, ...]
    vanished: tuple[str, ...]  # keys of positions the exchange does not hold (candidates; confirmed later)
    unknown: tuple[PositionInfo, ...]  # exchange positions nobody recorded (candidates for adoption)
    trade_windows: dict[str, int]  # symbol -> first time (ms) of fills to read


def window_start(opened_ms: int, since_ms: int | None) -> int:
    """Where to start reading a position's history: since the last pass, but never before it opened."""
    start = opened_ms - OVERLAP_MS
    return start if since_ms is None else max(start, since_ms - OVERLAP_MS)


def plan(positions: Sequence[Position], snapshot: ExchangeSnapshot, *, since_ms: int | None) -> Plan:
    """What one reconciliation pass must look at, from the open positions and the exchange's snapshot."""
    listed = snapshot.listed
    open_by_key = {p.key: p for p in positions if not p.is_terminal}
    lookups: dict[str, tuple[LegOrder, ...]] = {}
    pending: dict[str, tuple[str, ...]] = {}
    live_ids: set[str] = set()
    vanished: list[str] = []
    windows: dict[str, int] = {}
    for p in positions:
        if p.is_terminal:
            continue
        look: list[LegOrder] = []
        unknown: list[str] = []
        for leg in p.orders:
            if not leg.state.live:
                continue
            live_ids.add(leg.client_id)
            on_exchange = leg.client_id in listed
            if leg.state is OrderState.REQUESTED:
                if on_exchange:
                    look.append(leg)  # placed; the acknowledgement was lost
                else:
                    unknown.append(leg.client_id)  # maybe never sent
            elif leg.state is OrderState.ACTIVE:
                if not on_exchange:
                    look.append(leg)  # filled, triggered or cancelled behind our back
            elif on_exchange:
                unknown.append(leg.client_id)  # CANCELING, still open: the cancel never landed
            else:
                look.append(leg)  # CANCELING and gone: find out whether it filled first
        if look:
            lookups[p.key] = tuple(look)
        if unknown:
            pending[p.key] = tuple(unknown)
        held = snapshot.position(p.symbol)
        if p.open_qty > 0 and not p.vanished and (held is None or held.direction is not p.direction):
            vanished.append(p.key)
        start = window_start(p.opened_ms, since_ms)
        windows[p.symbol] = min(windows.get(p.symbol, start), start)
    recorded_symbols = {p.symbol for p in positions if not p.is_terminal}
    # An order of an open position that the position does not know at all was sent ahead of its record (the
    # journal was down): replaying the fill that called for it adopts it. Cancelling it would unprotect the position.
    live_ids |= {
        cid
        for cid in snapshot.listed
        if (holder := open_by_key.get(key_of(cid) or "")) is not None and holder.order(cid) is None
    }
    orphans = tuple(
        [
            Orphan(o.client_order_id, o.symbol, algo=False)
            for o in snapshot.open_orders
            if is_own_client_id(o.client_order_id) and o.client_order_id not in live_ids
        ]
        + [
            Orphan(a.client_algo_id, a.symbol, algo=True)
            for a in snapshot.open_algo_orders
            if is_own_client_id(a.client_algo_id) and a.client_algo_id not in live_ids
        ]
    )
    unknown_positions = tuple(p for p in snapshot.positions if p.amount != 0 and p.symbol not in recorded_symbols)
    return Plan(lookups, pending, orphans, tuple(vanished), unknown_positions, windows)


def due_for_redrive(pending: Sequence[str], ages_s: Mapping[str, float], min_age_s: float) -> bool:
    """Re-drive once any unknown outcome is old enough that its decider has given up on it (or died).

    Ages count from when the order was recorded (its placement decided), so a cancel left pending is usually
    re-driven at once (cancelling twice is harmless). A leg without a recorded order row (it never got as far as
    the database) is re-driven at once.
    """
    return any(ages_s.get(cid, min_age_s) >= min_age_s for cid in pending)


def orders_with_unseen_trades(trades: Iterable[Trade], recorded: set[int]) -> dict[int, list[Trade]]:
    """Every trade of each order that has at least one trade not recorded yet, by order id.

    All of an order's trades are kept (not only the unseen ones) so that cumulative quantities and the
    finishing flag come out right; `fills_for_order` drops the recorded ones afterwards.
    """
    by_order: dict[int, list[Trade]] = {}
    for trade in trades:
        by_order.setdefault(trade.order_id, []).append(trade)
    return {oid: ts for oid, ts in by_order.items() if any(t.trade_id not in recorded for t in ts)}


def fills_for_order(cid: str, order: Order, trades: Sequence[Trade], recorded: set[int]) -> list[Fill]:
    """The order's unrecorded fills for the lifecycle, marked as liquidations when the exchange closed it."""
    liquidation = is_liquidation_client_id(order.client_order_id)
    return [
        replace(f, liquidation=liquidation) if liquidation else f
        for f in fills_of(cid, order, trades)
        if f.trade_id not in recorded
    ]


def funding_events(incomes: Iterable[Income], positions: Sequence[Position]) -> dict[str, list[FundingPaid]]:
    """Funding payments for the positions that held through them and have not seen them yet."""
    out: dict[str, list[FundingPaid]] = {}
    for income in incomes:
        if income.income_type != "FUNDING_FEE" or income.asset != QUOTE_ASSET or income.income == 0:
            continue
        for p in positions:
            if p.is_terminal or p.symbol != income.symbol or p.entry_qty <= 0 or income.time_ms < p.opened_ms:
                continue
            ref = str(income.tran_id)
            if f"f:{ref}" not in p.seen:
                out.setdefault(p.key, []).append(FundingPaid(income.income, income.time_ms, ref))
    return out


def _held_amount(p: Position, snapshot: ExchangeSnapshot) -> Decimal | None:
    """What the exchange holds of an open position's symbol when it differs from the record (None: they agree)."""
    if p.is_terminal or p.entry_qty <= 0:
        return None
    held = snapshot.position(p.symbol)
    amount = ZERO if held is None else held.amount
    return None if amount == p.direction.sign * max(p.open_qty, ZERO) else amount


def quantity_mismatches(positions: Sequence[Position], snapshot: ExchangeSnapshot) -> list[str]:
    """Open positions whose recorded quantity differs from the exchange's (after a full replay: a human looks)."""
    problems = []
    for p in positions:
        amount = _held_amount(p, snapshot)
        if amount is not None:
            problems.append(f"{p.symbol} {p.key}: recorded {p.direction.value} {p.open_qty}, exchange holds {amount}")
    return problems


def mismatched_symbols(positions: Sequence[Position], snapshot: ExchangeSnapshot) -> frozenset[str]:
    """Symbols whose exchange position differs from the record: a fill the streams have not delivered (yet)."""
    return frozenset(p.symbol for p in positions if _held_amount(p, snapshot) is not None)


def held_closes(positions: Sequence[Position], snapshot: ExchangeSnapshot) -> list[tuple[str, Decimal]]:
    """(key, amount) of the positions whose close is paused and that the exchange still holds in their direction."""
    out = []
    for p in positions:
        held = snapshot.position(p.symbol)
        if p.close_paused and not p.is_terminal and held is not None and held.direction is p.direction:
            out.append((p.key, held.amount))
    return out


def recovered_fills(before: Iterable[Position], after: Mapping[str, Position | None]) -> int:
    """How many fills a pass applied to these positions (compared by key): fills the user stream never delivered."""
    count = 0
    for p in before:
        now = after.get(p.key)
        if now is not None:
            count += sum(1 for seen in now.seen - p.seen if seen.startswith("t:"))
    return count


def adopted_key(account: str, info: PositionInfo) -> str:
    """Deterministic, so two reconcilers adopting the same position agree on its key (and the second fails)."""
    digest = hashlib.sha256(f"adopt|{account}|{info.symbol}|{info.direction.value}|{info.update_time_ms}".encode())
    return digest.hexdigest()[:16]


def adoption(
    info: PositionInfo,
    *,
    key: str,
    rules: SymbolRules,
    leverage: int,
    settings: Settings,
    time_ms: int,
) -> tuple[Position, list[Action]]:
    """A position found on the exchange, protected with the default levels (LevelSettings), and an alert."""
    direction = info.direction
    qty = abs(info.amount)
    neutral = Signal(info.symbol, direction, 0.0, Band.NONE, 0, info.entry_price)
    policy = Policy.build(rules, plan_levels(direction, neutral, settings.levels), settings.monitor)
    position, actions = adopt_position(
        key=key,
        symbol=info.symbol,
        direction=direction,
        quantity=qty,
        entry_price=info.entry_price,
        leverage=leverage,
        policy=policy,
        time_ms=time_ms,
    )
    detail = text(
        "reconcile.adopted_detail",
        direction=direction.value,
        qty=qty,
        price=info.entry_price,
        stop=str(position.stop_price),
    )
    note = AlertNote(text("reconcile.adopted"), (detail,), info.symbol)
    return position, [*actions, Notify(f"{key}:alert:adopted", note)]


# ---------------------------------------------------------------------------------------------- the shell


@dataclass(slots=True)
class ReconcileReport:
    """What one pass found and did, for logs, metrics and the flow's artifact."""

    started_ms: int
    finished_ms: int = 0
    positions: int = 0
    legs_looked_up: int = 0
    fills_replayed: int = 0
    funding_applied: int = 0
    redriven: list[str] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # closes still waiting for the exchange: look again soon

    @property
    def clean(self) -> bool:
        """Nothing was found out of line and nothing failed."""
        return not (
            self.fills_replayed
            or self.redriven
            or self.orphans_cancelled
            or self.vanished
            or self.adopted
            or self.mismatches
            or self.deferred
            or self.errors
        )

    def summary(self) -> str:
        parts = [f"{self.positions} open positions"]
        for label, value in (
            ("legs looked up", self.legs_looked_up),
            ("fills replayed", self.fills_replayed),
            ("funding payments", self.funding_applied),
            ("re-driven", len(self.redriven)),
            ("orphans cancelled", len(self.orphans_cancelled)),
            ("vanished", len(self.vanished)),
            ("adopted", len(self.adopted)),
            ("mismatches", len(self.mismatches)),
            ("deferred", len(self.deferred)),
            ("errors", len(self.errors)),
        ):
            if value:
                parts.append(f"{value} {label}")
        return ", ".join(parts)


def _no_guard(_key: str) -> AbstractAsyncContextManager[object]:
    return contextlib.nullcontext()


@protective
async def reconcile(
    exchange: Exchange,
    journal: ReconcileJournal,
    executor: Executor,
    clock: Clock,
    settings: Settings,
    *,
    since_ms: int | None = None,
    guard: Guard = _no_guard,
    source: str = "reconcile",
    pending_age_s: float = PENDING_AGE_S,
    symbols: frozenset[str] | None = None,
) -> ReconcileReport:
    """One reconciliation pass (see the module docstring). Returns what it did; raises ExchangeError only when
    the exchange cannot even be read (nothing has been changed then).

    `since_ms`: start of the last successful pass (None: read each position's whole history).
    `guard(key)`: an async context manager held around every change to a position (the monitor's per-position
    lock, so a pass and the live streams never interleave on one position).
    `symbols`: only these symbols (their positions, orders and fills; funding waits for a full pass).
    """
    report = ReconcileReport(started_ms=clock.now_ms())
    snapshot = await _snapshot(exchange, symbols)

    def covered(positions: list[Position]) -> list[Position]:
        return positions if symbols is None else [p for p in positions if p.symbol in symbols]

    positions = covered(journal.open_positions())
    report.positions = len(positions)
    work = plan(positions, snapshot, since_ms=since_ms)
    shell = _Pass(exchange, journal, executor, clock, guard, source, report)

    # A position the exchange no longer holds is settled first (its fills replayed, else it vanished): looking up
    # the legs of one that vanished would find them "cancelled" and replace its stop for nothing.
    for key in work.vanished:
        await shell.confirm_vanished(key, since_ms)
    for key, legs in work.lookups.items():
        if key in work.vanished and _settled(journal.position(key)):
            continue
        report.legs_looked_up += len(legs)
        await shell.on_position(key, "looking up legs the exchange no longer lists", executor.refresh, key, legs)
    for symbol, start in sorted(work.trade_windows.items()):
        await shell.replay_fills(symbol, start)
    if positions and symbols is None:
        await shell.apply_funding(min(window_start(p.opened_ms, since_ms) for p in positions))
    for key, cids in work.pending.items():
        if due_for_redrive(cids, journal.order_ages_s(cids), pending_age_s):
            report.redriven.append(key)
            redrive = functools.partial(executor.redrive, resend_entries=False)
            await shell.on_position(key, "re-driving legs without an outcome", redrive, key)
    for orphan in work.orphans:
        await shell.cancel_orphan(orphan)
    for info in work.unknown:
        await shell.adopt(info, settings)

    before = covered(journal.open_positions())
    final = ExchangeSnapshot(tuple(await _positions(exchange, symbols)), (), ())
    unchanged = set(before) & set(journal.open_positions())  # changed while we looked: a fill in flight
    differences = quantity_mismatches([p for p in before if p in unchanged], final)
    for problem in differences:
        log.warning("position differs from the exchange; checked again next pass", detail=problem)
    report.mismatches.extend(differences)
    for key, amount in held_closes(before, final):
        log.warning("the exchange still holds a position whose close reduced nothing: closing again", key=key)
        await shell.on_position(
            key, "resuming a paused close", shell.apply, key, [PositionHeld(clock.now_ms(), amount)]
        )
    report.paused.extend(p.key for p in covered(journal.open_positions()) if p.close_paused)
    report.finished_ms = clock.now_ms()
    scope: dict[str, Any] = {} if symbols is None else {"symbols": sorted(symbols)}
    journal.note("reconciled", source, summary=report.summary(), clean=report.clean, **scope)
    level = log.info if report.clean else log.warning
    level("reconciled", summary=report.summary(), took_ms=report.finished_ms - report.started_ms, **scope)
    return report


def _settled(position: Position | None) -> bool:
    """Closed, or marked vanished: nothing of it is left on the exchange to look up."""
    return position is None or position.is_terminal or position.vanished


async def _snapshot(exchange: Exchange, symbols: frozenset[str] | None) -> ExchangeSnapshot:
    """Positions, open orders and open algo orders: the account's (a sweep), or those of a few symbols."""
    if symbols is None:
        with request_priority(Priority.SWEEP):
            return ExchangeSnapshot(
                positions=tuple(await exchange.positions()),
                open_orders=tuple(await exchange.open_orders()),
                open_algo_orders=tuple(await exchange.open_algo_orders()),
            )
    positions: list[PositionInfo] = []
    orders: list[Order] = []
    algos: list[AlgoOrder] = []
    for symbol in sorted(symbols):
        positions.extend(await exchange.positions(symbol))
        orders.extend(await exchange.open_orders(symbol))
        algos.extend(await exchange.open_algo_orders(symbol))
    return ExchangeSnapshot(tuple(positions), tuple(orders), tuple(algos))


async def _positions(exchange: Exchange, symbols: frozenset[str] | None) -> list[PositionInfo]:
    if symbols is None:
        with request_priority(Priority.SWEEP):
            return await exchange.positions()
    return [info for symbol in sorted(symbols) for info in await exchange.positions(symbol)]


async def sync_funding(
    exchange: Exchange,
    journal: ReconcileJournal,
    executor: Executor,
    clock: Clock,
    *,
    start_ms: int,
    guard: Guard = _no_guard,
    source: str = "reconcile",
) -> ReconcileReport:
    """Only the funding step: after a FUNDING_FEE account update, without waiting for the next full pass."""
    report = ReconcileReport(started_ms=clock.now_ms())
    await _Pass(exchange, journal, executor, clock, guard, source, report).apply_funding(start_ms)
    report.finished_ms = clock.now_ms()
    return report


@dataclass(slots=True)
class _Pass:
    """The I/O of one pass; each step is isolated so one position's trouble never stops the others."""

    exchange: Exchange
    journal: ReconcileJournal
    executor: Executor
    clock: Clock
    guard: Guard
    source: str
    report: ReconcileReport

    async def on_position(self, key: str, what: str, call: Callable[..., Any], *args: Any) -> None:
        try:
            async with self.guard(key):
                await call(*args)
        except ExecutionDeferred as exc:
            log.warning("reconciliation deferred: the exchange cannot be reached", key=key, step=what, error=str(exc))
            self.report.deferred.append(key)
            return
        except Exception as exc:  # one position's trouble must not stop the pass
            log.exception("reconciliation step failed", key=key, step=what)
            self.report.errors.append(f"{key}: {what}: {exc}")

    async def replay_fills(self, symbol: str, start_ms: int) -> None:
        try:
            trades = await self.exchange.user_trades(symbol, start_ms=start_ms)
        except Exception as exc:
            log.warning("cannot read fills", symbol=symbol, error=str(exc))
            self.report.errors.append(f"{symbol}: reading fills: {exc}")
            return
        recorded = self.journal.recorded_trade_ids(symbol, start_ms)
        unseen = orders_with_unseen_trades(trades, recorded)
        if not unseen:
            return
        holders = {p.symbol: p.key for p in self.journal.open_positions() if not p.is_terminal}
        open_keys = set(holders.values())
        for order_id, order_trades in sorted(unseen.items()):
            try:
                order = await self.exchange.get_order(symbol, order_id=order_id)
            except Exception as exc:
                log.warning("cannot look up a filled order", symbol=symbol, order_id=order_id, error=str(exc))
                self.report.errors.append(f"{symbol}: order {order_id}: {exc}")
                continue
            if order is None:
                log.warning("fills of an order the exchange does not know", symbol=symbol, order_id=order_id)
                continue
            found = owner(
                order.client_order_id, order_id, symbol, recorded=self.journal.client_id_for_order, holders=holders
            )
            cid = order.client_order_id if found is None else found.client_id
            if found is None or found.key not in open_keys:
                log.warning(
                    "fills that no open position accounts for",
                    symbol=symbol,
                    client_id=cid,
                    order_id=order_id,
                    trades=[t.trade_id for t in order_trades if t.trade_id not in recorded],
                )
                self.report.mismatches.append(f"{symbol}: fills of {cid} (order {order_id}) belong to no open position")
                continue
            key = found.key
            fills = fills_for_order(cid, order, order_trades, recorded)
            log.warning(
                "replaying fills the streams missed",
                symbol=symbol,
                key=key,
                client_id=cid,
                qty=sum((f.qty for f in fills), ZERO),
                price=order.avg_price,
            )
            self.report.fills_replayed += len(fills)
            await self.on_position(key, "replaying fills", self.apply, key, fills)

    async def apply_funding(self, start_ms: int) -> None:
        try:
            with request_priority(Priority.SWEEP):
                incomes = await self.exchange.income(income_type="FUNDING_FEE", start_ms=start_ms)
        except Exception as exc:
            log.warning("cannot read funding payments", error=str(exc))
            self.report.errors.append(f"reading funding: {exc}")
            return
        for key, events in funding_events(incomes, self.journal.open_positions()).items():
            self.report.funding_applied += len(events)
            await self.on_position(key, "applying funding", self.apply, key, events)

    async def apply(self, key: str, events: Sequence[Event]) -> list[RequestReconcile]:
        return await self.executor.apply(key, events, late=True)

    async def cancel_orphan(self, orphan: Orphan) -> None:
        log.warning("cancelling an orphaned order of ours", symbol=orphan.symbol, client_id=orphan.client_id)
        try:
            if orphan.algo:
                await self.exchange.cancel_algo_order(client_algo_id=orphan.client_id)
            else:
                await self.exchange.cancel_order(orphan.symbol, client_order_id=orphan.client_id)
        except Exception as exc:
            log.warning("cannot cancel an orphaned order", client_id=orphan.client_id, error=str(exc))
            self.report.errors.append(f"orphan {orphan.client_id}: {exc}")
            return
        self.report.orphans_cancelled.append(orphan.client_id)
        self.journal.note("orphan_cancelled", self.source, symbol=orphan.symbol, client_id=orphan.client_id)

    async def confirm_vanished(self, key: str, since_ms: int | None) -> None:
        """Flat on the exchange now means every fill that made it flat exists now: replay them once more (a fill
        may have landed since the first replay), and only a position still open after that has vanished."""
        position = self.journal.position(key)
        if position is None or position.is_terminal or position.open_qty <= 0 or position.vanished:
            return
        symbol = position.symbol
        try:
            if await self._holds(position):
                return
            await self.replay_fills(symbol, window_start(position.opened_ms, since_ms))
            async with self.guard(key):
                position = self.journal.position(key)
                if position is None or position.is_terminal or position.open_qty <= 0 or position.vanished:
                    return
                if await self._holds(position):
                    return
                marks = await self.exchange.premium_index(symbol)
                mark = marks[0].mark_price if marks else None
                log.error(
                    "position vanished from the exchange: marking it closed",
                    symbol=symbol,
                    key=key,
                    open_qty=position.open_qty,
                    mark=mark,
                )
                self.report.vanished.append(key)
                await self.apply(key, [PositionVanished(self.clock.now_ms(), mark)])
        except ExecutionDeferred as exc:
            log.warning("reconciliation deferred: the exchange cannot be reached", key=key, error=str(exc))
            self.report.deferred.append(key)
        except Exception as exc:
            log.warning("cannot confirm a vanished position", symbol=symbol, key=key, error=str(exc))
            self.report.errors.append(f"{key}: confirming vanished: {exc}")

    async def _holds(self, position: Position) -> bool:
        """Whether the exchange holds the position (in its direction) right now."""
        held = ExchangeSnapshot(tuple(await self.exchange.positions(position.symbol)), (), ()).position(position.symbol)
        return held is not None and held.direction is position.direction

    async def adopt(self, info: PositionInfo, settings: Settings) -> None:
        account = settings.account
        key = adopted_key(account, info)
        try:
            confirmed = ExchangeSnapshot(tuple(await self.exchange.positions(info.symbol)), (), ()).position(
                info.symbol
            )
            if confirmed is None or any(p.symbol == info.symbol for p in self.journal.open_positions()):
                return
            rules = (await self.exchange.exchange_info())[info.symbol]
            leverage = (await self.exchange.symbol_config(info.symbol)).leverage
            position, actions = adoption(
                confirmed, key=key, rules=rules, leverage=leverage, settings=settings, time_ms=self.clock.now_ms()
            )
            self.journal.create(position, actions, source=self.source)
        except Exception as exc:
            if any(p.symbol == info.symbol for p in self.journal.open_positions()):
                return  # another reconciler adopted it first (perhaps from an older snapshot, under another key)
            log.exception("cannot adopt a position found on the exchange", symbol=info.symbol)
            self.report.errors.append(f"adopting {info.symbol}: {exc}")
            return
        log.warning(
            "adopted a position nobody recorded",
            symbol=info.symbol,
            key=key,
            direction=position.direction.value,
            qty=position.open_qty,
            entry=position.entry_price,
            stop=position.stop_price,
        )
        self.report.adopted.append(key)
        await self.on_position(key, "protecting an adopted position", self.executor.execute, key, actions)
