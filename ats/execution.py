"""Carries out lifecycle actions on the exchange, once per client id, and feeds every outcome back.

The position state machine (ats.lifecycle) decides; this module acts. It is the one place where orders are
sent, shared by the order-placement flow and the monitor, so both behave the same under retries and restarts:

- Look before you place. Every placement is recorded as an attempt (in the journal) before it is sent. A later
  attempt for the same client id first asks the exchange whether the earlier one landed, and adopts it if so.
- An answer that never came, or one that is not Binance refusing the order with an error code (timeout,
  dropped connection, any 5xx, a 403, an HTML page), is not a failure: the order is looked up by client id. Only
  "could not connect" is re-sent blindly. A market order not found stays "requested" and the next re-drive (task
  retry, monitor, reconciliation) looks again before sending it again. A stop or take-profit not found is re-sent
  at once under the same client id (it stays open until it triggers, so the exchange's duplicate check refuses a
  second copy), a few times; a stop that still cannot be placed is reported refused (the position is closed).
- The exchange being unreachable or rate limiting is not a refusal either: nothing is reported to the state
  machine (a stop that "failed" because the network is down must not trigger a market close into the same
  outage); `ExecutionDeferred` tells the caller to try again later.
- Refusals (-2021 would trigger, -2019 margin, filters, ...) are reported as OrderRejected: the state machine
  decides (a refused stop closes the position at market and alerts).
- A protective stop outranks its bookkeeping. Should the journal fail (the database is down) after an entry was
  sent, or while a stop is being recorded, the stops the lifecycle calls for are sent anyway, unrecorded, under
  their deterministic client ids, and the failure propagates. Whoever records the position later (reconciliation
  replaying the fill once the database is back) gets the same client ids from the same transition, and because
  that path is late (`execute(..., late=True)`: replays and look-ups) it looks every stop up before placing it:
  the one sent ahead is adopted, never doubled, even if it already triggered (a re-send would then land, as
  client ids are unique among *open* orders only). Sending the stop before or with the entry is not an option:
  its trigger comes from the entry's fill price, and one placed before an entry that then fails would be left
  behind to close the next position on the symbol.
- Everything sent from here is protective work for the shared request budget (ats.exchange.budget), except an
  entry itself: scans and entries that used up their share of the minute never delay a stop or a close.

The journal (db/journal.py) persists each transition with its records (orders, fills, outbox, events) in one
transaction, under a row lock, so the flow and the monitor can both drive the same position safely.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

from ats.clock import Clock
from ats.domain import parse_client_id
from ats.exchange.base import (
    AlgoOrder,
    AlgoStatus,
    AlgoUpdate,
    Exchange,
    Order,
    OrderStatus,
    OrderUpdate,
    Trade,
    is_liquidation_client_id,
)
from ats.exchange.budget import Priority, protective, request_priority
from ats.exchange.errors import (
    DefiniteFailure,
    DuplicateClientId,
    ExchangeError,
    ExchangeUnavailable,
    IpBanned,
    RateLimited,
    Throttled,
    UnknownOutcome,
)
from ats.lifecycle import (
    Action,
    CancelOrder,
    Event,
    Fill,
    LegOrder,
    MarketClose,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderState,
    PlaceEntry,
    PlaceStop,
    PlaceTakeProfit,
    Position,
    RequestReconcile,
    Role,
    transition,
)
from ats.log import get_logger
from ats.notify import ExitReason

log = get_logger(__name__)
T = TypeVar("T")
ZERO = Decimal(0)
QUOTE_ASSET = "USDT"
_NOT_NOW = (ExchangeUnavailable, RateLimited, IpBanned, Throttled)


class ExecutionDeferred(Exception):
    """The exchange could not be reached (or asked us to wait); the action stays pending for a later re-drive."""


class JournalUnavailable(Exception):
    """The journal could not be read or written (the database is unreachable): nothing was recorded."""


class UnknownPosition(KeyError):
    """No position with this key is recorded."""


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """What the exchange said about one of our orders, for the orders table."""

    status: str  # the exchange's status (NEW, FILLED, ...), REJECTED, or UNKNOWN
    exchange_order_id: int | None = None
    algo_id: int | None = None
    actual_order_id: int | None = None
    executed_qty: Decimal | None = None
    avg_price: Decimal | None = None
    error: str | None = None


class Journal(Protocol):
    """Where positions live (PostgreSQL in db/journal.py). Each call is one committed transaction; a call that
    cannot reach its store raises JournalUnavailable."""

    def apply(self, key: str, event: Event, *, source: str) -> tuple[Position, list[Action]]:
        """Lock the position, run `lifecycle.transition` with the event, persist the new state and the records its
        actions carry (order rows for placements, fills, results, outbox, event log), commit, return both."""
        ...

    def position(self, key: str) -> Position | None: ...

    def record_attempt(self, client_id: str) -> bool:
        """Count a send attempt; True when an earlier attempt may have reached the exchange (look it up first)."""
        ...

    def record_outcome(self, client_id: str, outcome: OrderOutcome) -> None: ...


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    lookup_attempts: int = 4  # lookups by client id after an unknown outcome
    lookup_delay_s: float = 0.5  # doubled after each lookup
    send_retries: int = 2  # extra sends after a failure that certainly executed nothing (connect error)
    send_retry_delay_s: float = 0.5
    protective_resends: int = 3  # re-sends of a stop or target whose answer was lost and that was not found
    protective_resend_delay_s: float = 0.25  # before the second re-send (the first goes at once), then doubled
    trade_window_ms: int = 120_000  # how far before an order's last update to look for its fills
    stale_entry_ms: int = 60_000  # an entry not confirmed after this long is abandoned, never re-sent
    stuck_trigger_ms: int = 30_000  # an algo order triggered this long ago without creating an order is dead


# ---------------------------------------------------------------------------------------------- pure mapping


def fills_of(client_id: str, order: Order, trades: Sequence[Trade]) -> list[Fill]:
    """Lifecycle fills for an order's trades, with cumulative quantities and the finishing flag."""
    own = sorted((t for t in trades if t.order_id == order.order_id), key=lambda t: (t.time_ms, t.trade_id))
    fills: list[Fill] = []
    cumulative = ZERO
    for trade in own:
        cumulative += trade.qty
        done = order.status is OrderStatus.FILLED and cumulative >= order.executed_qty
        fills.append(
            Fill(
                client_id=client_id,
                trade_id=trade.trade_id,
                side=trade.side,
                qty=trade.qty,
                price=trade.price,
                fee=trade.commission if trade.commission_asset == QUOTE_ASSET else ZERO,
                time_ms=trade.time_ms,
                realized_pnl=trade.realized_pnl,
                order_done=done,
                order_filled_qty=cumulative,
            )
        )
    return fills


def fill_from_update(update: OrderUpdate, client_id: str) -> Fill | None:
    """The fill an ORDER_TRADE_UPDATE carries, reported under `client_id`: execution type TRADE, or CALCULATED
    (how Binance reports a liquidation's executions)."""
    if update.execution_type not in ("TRADE", "CALCULATED") or update.last_filled_qty <= 0:
        return None
    return Fill(
        client_id=client_id,
        trade_id=update.trade_id,
        side=update.side,
        qty=update.last_filled_qty,
        price=update.last_filled_price,
        fee=update.commission if update.commission_asset in (QUOTE_ASSET, "") else ZERO,
        time_ms=update.transaction_time_ms,
        realized_pnl=update.realized_pnl,
        order_done=update.status is OrderStatus.FILLED,
        order_filled_qty=update.cum_filled_qty,
        liquidation=update.is_liquidation,
    )


def events_from_order_update(update: OrderUpdate, client_id: str) -> list[Event]:
    """Lifecycle events for one ORDER_TRADE_UPDATE of a normal order (or of a triggered algo's order)."""
    time_ms = update.transaction_time_ms or update.event_time_ms
    fill = fill_from_update(update, client_id)
    if fill is not None:
        return [fill]
    if update.status is OrderStatus.REJECTED:
        return [OrderRejected(client_id, time_ms, None, "rejected by the exchange")]
    if update.execution_type in ("CANCELED", "EXPIRED") or update.status in (
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.EXPIRED_IN_MATCH,
    ):
        expired = update.execution_type == "EXPIRED" or update.status is not OrderStatus.CANCELED
        return [OrderCanceled(client_id, time_ms, expired=expired, filled_qty=update.cum_filled_qty)]
    if update.execution_type == "NEW" and client_id == update.client_order_id:
        return [OrderAccepted(client_id, time_ms)]
    return []


def events_from_algo_update(update: AlgoUpdate) -> list[Event]:
    """Lifecycle events for one ALGO_UPDATE; fills of the triggered order come as order updates."""
    cid, time_ms = update.client_algo_id, update.transaction_time_ms or update.event_time_ms
    match update.status:
        case AlgoStatus.NEW:
            return [OrderAccepted(cid, time_ms)]
        case AlgoStatus.CANCELED:
            return [OrderCanceled(cid, time_ms)]
        case AlgoStatus.EXPIRED:
            return [OrderCanceled(cid, time_ms, expired=True)]
        case AlgoStatus.REJECTED:
            return [OrderRejected(cid, time_ms, None, update.reject_reason or "rejected by the exchange")]
    return []


@dataclass(frozen=True, slots=True)
class Resend:
    """Send the placement again, under the same client id, after `delay_s`."""

    delay_s: float


def after_not_found(
    action: PlaceStop | PlaceTakeProfit, resends: int, settings: ExecutionSettings
) -> Resend | Literal["defer", "give_up"]:
    """What to do with a conditional order whose send had an unknown outcome and that a look-up did not find:
    a `Resend`, "defer" (leave it requested for the next re-drive) or "give_up" (report it refused).

    A conditional order stays open until it triggers, so if the lost send landed after all the exchange refuses a
    re-send as a duplicate client id (-4116): re-sending at once is safe, and every second without a stop is money
    at risk. After `protective_resends` re-sends a stop is given up, so that the state machine closes the position
    and alerts; a take-profit waits for the next re-drive (the stop protects meanwhile). Market orders are never
    re-sent this way: one that filled is no longer open, so the duplicate check would not stop a second one.
    """
    if resends < settings.protective_resends:
        return Resend(0.0 if resends == 0 else settings.protective_resend_delay_s * 2 ** (resends - 1))
    return "give_up" if isinstance(action, PlaceStop) else "defer"


def action_for_leg(position: Position, leg: LegOrder) -> Action | None:
    """The action that (re)sends a live leg whose outcome is not known: placements and cancels."""
    p, cid = position, leg.client_id
    if leg.state is OrderState.CANCELING:
        return CancelOrder(cid, p.symbol, leg.algo)
    if leg.state is not OrderState.REQUESTED:
        return None
    exit_side = p.direction.exit_side
    match leg.role:
        case Role.ENTRY:
            return PlaceEntry(cid, p.symbol, p.direction.entry_side, leg.qty or p.requested_qty)
        case Role.STOP if leg.trigger is not None:
            return PlaceStop(cid, p.symbol, exit_side, leg.trigger, leg.qty)
        case Role.TP1 | Role.TP2 if leg.algo and leg.trigger is not None and leg.qty is not None:
            target: Literal["T1", "T2"] = "T1" if leg.role is Role.TP1 else "T2"
            return PlaceTakeProfit(cid, p.symbol, exit_side, target, leg.trigger, leg.qty)
        case Role.TP1 | Role.TP2 | Role.CLOSE if leg.qty is not None:
            reason = {Role.TP1: ExitReason.TP1, Role.TP2: ExitReason.TP2}.get(leg.role)
            return MarketClose(cid, p.symbol, exit_side, leg.qty, reason or p.close_reason or ExitReason.MANUAL)
    return None


def stops_called_for(position: Position, events: Sequence[Event]) -> list[PlaceStop]:
    """The stops the lifecycle places when `events` reach `position` (what must go out when they cannot be
    recorded)."""
    stops: list[PlaceStop] = []
    for event in events:
        position, actions = transition(position, event)
        stops.extend(action for action in actions if isinstance(action, PlaceStop))
    return stops


def key_of(client_id: str) -> str | None:
    parsed = parse_client_id(client_id)
    return parsed[0] if parsed else None


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose execution an exchange order is: the position it changes and the client id to report it under."""

    key: str
    client_id: str
    ours: bool  # placed by us; else someone else's order (a liquidation, a manual trade) on the symbol held


def owner(
    client_id: str,
    order_id: int,
    symbol: str,
    *,
    recorded: Callable[[int], str | None],
    holders: Mapping[str, str],
) -> Owner | None:
    """Whose execution this is, for the monitor's stream and reconciliation's replay alike; None: nobody's here.

    Ours by our client id, or by the order id we recorded (the order a triggered stop or target created carries
    a client id the exchange made up; `recorded` looks it up, never for a liquidation). Anyone else's order
    changed the position that holds its symbol (`holders`: symbol -> key; one position per symbol).
    """
    cid, key = client_id, key_of(client_id)
    if key is None and not is_liquidation_client_id(client_id):
        mapped = recorded(order_id)
        if mapped is not None:
            cid, key = mapped, key_of(mapped)
    if key is not None:
        return Owner(key, cid, ours=True)
    holder = holders.get(symbol)
    return None if holder is None else Owner(holder, cid, ours=False)


def outcome_of_update(update: OrderUpdate | AlgoUpdate) -> OrderOutcome:
    """What a stream update says for the orders table (ids, status, executed quantity), as a REST answer does."""
    if isinstance(update, AlgoUpdate):
        # The order id it triggered lets the fills that follow be reported under this algo's client id.
        return OrderOutcome(
            status=update.status.value,
            algo_id=update.algo_id,
            actual_order_id=update.actual_order_id,
            error=update.reject_reason or None,
        )
    triggered = update.is_triggered  # the order an algo order created when it triggered
    return OrderOutcome(
        status=update.status.value if update.status.is_final or not triggered else "TRIGGERED",
        exchange_order_id=None if triggered else update.order_id,
        actual_order_id=update.order_id if triggered else None,
        executed_qty=update.cum_filled_qty,
        avg_price=update.avg_price if update.cum_filled_qty > 0 else None,
    )


def _describe(action: PlaceEntry | PlaceStop | PlaceTakeProfit | CancelOrder | MarketClose) -> str:
    match action:
        case PlaceEntry():
            return "sending the entry order"
        case PlaceStop():
            return "placing a stop"
        case PlaceTakeProfit():
            return "placing a take-profit"
        case CancelOrder():
            return "cancelling an order"
    return "closing at market"


def _fields(action: PlaceEntry | PlaceStop | PlaceTakeProfit | CancelOrder | MarketClose) -> dict[str, object]:
    """What an operator needs to read an order decision: symbol, position key, leg, side, prices, quantity."""
    client_id = getattr(action, "client_id", "")
    parsed = parse_client_id(client_id)
    fields: dict[str, object] = {"symbol": getattr(action, "symbol", "")}
    if parsed:
        fields.update(key=parsed[0], leg=parsed[1])
    for name in ("side", "trigger", "quantity", "reason"):
        value = getattr(action, name, None)
        if value is not None:
            fields[name] = value
    if isinstance(action, PlaceStop) and action.quantity is None:
        fields["quantity"] = "closePosition"
    return fields


# ---------------------------------------------------------------------------------------------- the executor


class Executor:
    """Executes a position's actions against the exchange and applies their outcomes through the journal."""

    def __init__(
        self,
        exchange: Exchange,
        journal: Journal,
        clock: Clock,
        *,
        source: str,
        settings: ExecutionSettings | None = None,
    ) -> None:
        self._exchange = exchange
        self._journal = journal
        self._clock = clock
        self._source = source
        self._settings = settings or ExecutionSettings()

    async def apply(self, key: str, events: Sequence[Event], *, late: bool = False) -> list[RequestReconcile]:
        """Apply events to a position (fills, order outcomes, marks, requests), then carry out what they ask for
        (`late`: as `execute`'s)."""
        return await self.execute(key, self._applied(key, events), late=late)

    def record_update(self, client_id: str, update: OrderUpdate | AlgoUpdate) -> None:
        """Keep the orders table current from the user stream, as every REST answer does."""
        self._journal.record_outcome(client_id, outcome_of_update(update))

    @protective
    async def execute(self, key: str, actions: Sequence[Action], *, late: bool = False) -> list[RequestReconcile]:
        """Carry out actions in order, applying each outcome at once (which may ask for more).

        Records and notifications were persisted with the transition that produced them; requests to reconcile
        are returned for the caller to schedule. Raises ExecutionDeferred when the exchange cannot be reached,
        and JournalUnavailable when the journal fails, after sending the stops it could not record.
        `late`: the outcomes were found after the fact (replayed, looked up), so every stop that follows is
        looked up before it is placed: whoever saw them first may have sent it ahead of its record.
        """
        pending: deque[Action] = deque(actions)
        reconciles: list[RequestReconcile] = []
        while pending:
            action = pending.popleft()
            if isinstance(action, RequestReconcile):
                reconciles.append(action)
                continue
            before = self._journal.position(key) if isinstance(action, PlaceEntry) else None
            try:
                pending.extend(self._applied(key, await self._perform(action, late)))
            except JournalUnavailable:
                stops = [a for a in (action, *pending) if isinstance(a, PlaceStop)]
                if isinstance(action, PlaceEntry) and before is not None:
                    stops += await self._entry_stops(before, action)
                await self._send_ahead(stops)
                raise
        return reconciles

    def _applied(self, key: str, events: Sequence[Event]) -> list[Action]:
        """Each event through the journal (one transaction each), in order; the actions they ask for."""
        actions: list[Action] = []
        for event in events:
            actions.extend(self._journal.apply(key, event, source=self._source)[1])
        return actions

    @protective
    async def redrive(self, key: str, *, resend_entries: bool = True) -> list[RequestReconcile]:
        """Finish what a crash, a timeout or an outage left open: every live leg whose outcome is unknown.

        Protection and closes are re-sent (after a lookup); an entry older than `stale_entry_ms` is only looked
        up: found, it is adopted; not found, it is abandoned (reported expired), never sent late.

        `resend_entries=False` is for anyone but the entry's owner (the monitor, reconciliation): a younger entry
        is only looked up too, never sent. Binance keeps client ids unique among *open* orders only, so a second
        send of a market entry that already filled would open a second position.
        """
        position = self._journal.position(key)
        if position is None:
            raise UnknownPosition(key)
        actions: list[Action] = []
        outcomes: list[Event] = []
        for leg in position.orders:
            action = action_for_leg(position, leg)
            if action is None:
                continue
            if isinstance(action, PlaceEntry):
                stale = self._clock.now_ms() - position.opened_ms >= self._settings.stale_entry_ms
                if stale:
                    outcomes.extend(await self._stale_entry(action))
                    continue
                if not resend_entries:
                    outcomes.extend(await self._entry_if_placed(action))
                    continue
            actions.append(action)
        # The outcomes are applied before anything is sent; what they ask for follows the re-sends.
        follow_ups = self._applied(key, outcomes)
        return await self.execute(key, [*actions, *follow_ups], late=True)

    @protective
    async def refresh(self, key: str, legs: Sequence[LegOrder]) -> list[RequestReconcile]:
        """Look up acknowledged legs the exchange no longer lists as open and apply what became of them.

        A triggered stop or target reports its fills (it was not cancelled); an order the exchange does not
        know at all is reported cancelled. Every fill is applied before any ending: a reduce-only target that
        expired because the stop's fill closed the position must not look like a surprise (an alert, a
        replacement), as it would if its expiry came first.
        """
        position = self._journal.position(key)
        if position is None:
            raise UnknownPosition(key)
        outcomes: list[Event] = []
        for leg in legs:
            outcomes.extend(await self._lookup(position.symbol, leg))
        outcomes.sort(key=lambda event: isinstance(event, OrderCanceled))  # stable: each leg's order is kept
        return await self.apply(key, outcomes, late=True)

    # ------------------------------------------------------------------------------------------ actions

    async def _perform(self, action: Action, late: bool = False) -> list[Event]:
        match action:
            case PlaceEntry() | MarketClose():
                log.info(_describe(action), **_fields(action), source=self._source)
                return await self._place_order(action)
            case PlaceStop() | PlaceTakeProfit():
                log.info(_describe(action), **_fields(action), source=self._source)
                return await self._place_algo(action, look_first=late and isinstance(action, PlaceStop))
            case CancelOrder():
                log.info(_describe(action), **_fields(action), source=self._source)
                return await self._cancel(action)
        return []

    async def _place_order(self, action: PlaceEntry | MarketClose) -> list[Event]:
        request = action.request()
        cid = request.client_order_id
        order: Order | None = None
        if self._journal.record_attempt(cid):
            order = await self._guard(self._exchange.get_order(request.symbol, client_order_id=cid))
        if order is None:
            # Sending an entry is normal work; whatever follows it (its look-ups, fills, stop) is protective.
            level = Priority.NORMAL if isinstance(action, PlaceEntry) else Priority.PROTECTIVE
            try:
                with request_priority(level):
                    order = await self._send(lambda: self._exchange.new_order(request))
            except DuplicateClientId:
                order = await self._find(lambda: self._exchange.get_order(request.symbol, client_order_id=cid))
            except UnknownOutcome as exc:
                log.warning("order outcome unknown, looking it up", client_id=cid, error=str(exc))
                order = await self._find(lambda: self._exchange.get_order(request.symbol, client_order_id=cid))
            except DefiniteFailure as exc:
                return self._rejected(cid, exc)
            if order is None:
                return self._unknown(cid)
        return await self._order_events(cid, order)

    async def _place_algo(self, action: PlaceStop | PlaceTakeProfit, *, look_first: bool = False) -> list[Event]:
        request = action.request()
        cid = request.client_algo_id
        algo: AlgoOrder | None = None
        if self._journal.record_attempt(cid) or look_first:
            algo = await self._guard(self._exchange.get_algo_order(client_algo_id=cid))
        resends = 0
        while algo is None:
            try:
                algo = await self._send(lambda: self._exchange.new_algo_order(request))
            except DuplicateClientId:
                algo = await self._find(lambda: self._exchange.get_algo_order(client_algo_id=cid))
                if algo is None:
                    return self._unknown(cid)
            except UnknownOutcome as exc:
                log.warning("algo order outcome unknown, looking it up", client_id=cid, error=str(exc))
                algo = await self._guard(self._exchange.get_algo_order(client_algo_id=cid))
                if algo is not None:
                    break
                match after_not_found(action, resends, self._settings):
                    case Resend(delay_s=delay):
                        log.warning("algo order not found after an unknown outcome: sending it again", client_id=cid)
                        await self._clock.sleep(delay)
                        resends += 1
                        self._journal.record_attempt(cid)
                    case "give_up":
                        return self._unplaceable(cid, resends + 1)
                    case _:
                        return self._unknown(cid)
            except DefiniteFailure as exc:
                if resends and not isinstance(exc, _NOT_NOW):
                    # The lost send may have landed after all and caused this refusal (-4130: a stop exists).
                    algo = await self._guard(self._exchange.get_algo_order(client_algo_id=cid))
                if algo is None:
                    return self._rejected(cid, exc)
        return await self._algo_events(cid, algo)

    async def _cancel(self, action: CancelOrder) -> list[Event]:
        cid = action.client_id
        if action.algo:
            algo = await self._guard(self._exchange.cancel_algo_order(client_algo_id=cid))
            if algo is None:
                algo = await self._guard(self._exchange.get_algo_order(client_algo_id=cid))
            if algo is None:
                return [OrderCanceled(cid, self._clock.now_ms())]
            return await self._algo_events(cid, algo)
        order = await self._guard(self._exchange.cancel_order(action.symbol, client_order_id=cid))
        if order is None:
            order = await self._guard(self._exchange.get_order(action.symbol, client_order_id=cid))
        if order is None:
            return [OrderCanceled(cid, self._clock.now_ms())]
        return await self._order_events(cid, order)

    async def _lookup(self, symbol: str, leg: LegOrder) -> list[Event]:
        cid = leg.client_id
        if leg.algo:
            algo = await self._guard(self._exchange.get_algo_order(client_algo_id=cid))
            if algo is not None:
                return await self._algo_events(cid, algo)
        else:
            order = await self._guard(self._exchange.get_order(symbol, client_order_id=cid))
            if order is not None:
                return await self._order_events(cid, order)
        log.warning("the exchange no longer knows an order: reporting it cancelled", symbol=symbol, client_id=cid)
        return [OrderCanceled(cid, self._clock.now_ms())]

    async def _entry_if_placed(self, action: PlaceEntry) -> list[Event]:
        order = await self._guard(self._exchange.get_order(action.symbol, client_order_id=action.client_id))
        return [] if order is None else await self._order_events(action.client_id, order)

    async def _stale_entry(self, action: PlaceEntry) -> list[Event]:
        order = await self._guard(self._exchange.get_order(action.symbol, client_order_id=action.client_id))
        if order is not None:
            return await self._order_events(action.client_id, order)
        log.warning("abandoning an entry the exchange never received", client_id=action.client_id)
        self._journal.record_outcome(action.client_id, OrderOutcome("EXPIRED", error="never reached the exchange"))
        return [OrderCanceled(action.client_id, self._clock.now_ms(), expired=True, filled_qty=ZERO)]

    async def _entry_stops(self, before: Position, entry: PlaceEntry) -> list[PlaceStop]:
        """The stops an entry's fills call for, from the exchange's answer alone (the journal failed after the
        entry may have been sent): none if it was never sent or has not filled."""
        try:
            order = await self._guard(self._exchange.get_order(entry.symbol, client_order_id=entry.client_id))
            if order is None or order.executed_qty <= 0:
                return []
            return stops_called_for(before, await self._order_events(entry.client_id, order, record=False))
        except (ExecutionDeferred, ExchangeError) as exc:
            log.error("the entry's fills cannot be read: its stop waits for the journal", error=str(exc))
            return []

    async def _send_ahead(self, stops: Sequence[PlaceStop]) -> None:
        """Place stops the journal could not record: the position must not wait for the database unprotected.
        Client ids are deterministic, so the late recording finds each one by its id (and adopts it)."""
        for cid, stop in {stop.client_id: stop for stop in stops}.items():
            log.warning("placing a stop ahead of its record: the journal is unavailable", **_fields(stop))
            try:
                await self._send(functools.partial(self._exchange.new_algo_order, stop.request()))
            except DuplicateClientId:
                pass  # already on the exchange
            except ExchangeError as exc:
                log.error("a stop sent ahead of its record failed", client_id=cid, error=str(exc))

    # ------------------------------------------------------------------------------------------ outcomes

    async def _order_events(self, cid: str, order: Order, *, record: bool = True) -> list[Event]:
        if record:
            self._journal.record_outcome(
                cid,
                OrderOutcome(
                    status=order.status.value,
                    exchange_order_id=order.order_id,
                    executed_qty=order.executed_qty,
                    avg_price=order.avg_price if order.executed_qty > 0 else None,
                ),
            )
        if order.status is OrderStatus.REJECTED:
            return [OrderRejected(cid, order.update_time_ms, None, "rejected by the exchange")]
        events: list[Event] = [OrderAccepted(cid, order.update_time_ms)]
        if order.executed_qty > 0:
            events.extend(await self._fills(cid, order))
        if order.status.is_final and order.status is not OrderStatus.FILLED:
            expired = order.status is not OrderStatus.CANCELED
            events.append(OrderCanceled(cid, order.update_time_ms, expired=expired, filled_qty=order.executed_qty))
        return events

    async def _algo_events(self, cid: str, algo: AlgoOrder) -> list[Event]:
        self._journal.record_outcome(
            cid,
            OrderOutcome(status=algo.status.value, algo_id=algo.algo_id, actual_order_id=algo.actual_order_id),
        )
        match algo.status:
            case AlgoStatus.REJECTED:
                return [OrderRejected(cid, algo.update_time_ms, None, "rejected by the exchange")]
            case AlgoStatus.CANCELED | AlgoStatus.EXPIRED:
                expired = algo.status is AlgoStatus.EXPIRED
                return [OrderCanceled(cid, algo.update_time_ms, expired=expired)]
        events: list[Event] = [OrderAccepted(cid, algo.update_time_ms)]
        if algo.status is not AlgoStatus.NEW and algo.actual_order_id is None:
            if self._clock.now_ms() - algo.update_time_ms >= self._settings.stuck_trigger_ms:
                # Seen on Binance: triggered, never handed to the matching engine. It protects nothing any more.
                log.error("algo order triggered but never created an order: replacing it", client_id=cid)
                events.append(OrderCanceled(cid, self._clock.now_ms(), expired=True))
            return events
        if algo.actual_order_id is not None:
            order = await self._guard(self._exchange.get_order(algo.symbol, order_id=algo.actual_order_id))
            if order is not None and order.executed_qty > 0:
                events.extend(await self._fills(cid, order))
            if order is not None and order.status.is_final and order.status is not OrderStatus.FILLED:
                # Triggered, but the order it created ended unfilled (e.g. nothing left to reduce).
                events.append(OrderCanceled(cid, order.update_time_ms, expired=True, filled_qty=order.executed_qty))
        return events

    async def _fills(self, cid: str, order: Order) -> list[Fill]:
        start = order.update_time_ms - self._settings.trade_window_ms
        trades = await self._guard(self._exchange.user_trades(order.symbol, start_ms=start))
        return fills_of(cid, order, trades)

    def _rejected(self, cid: str, exc: ExchangeError) -> list[Event]:
        if isinstance(exc, _NOT_NOW):
            self._journal.record_outcome(cid, OrderOutcome("PENDING", error=str(exc)))
            raise ExecutionDeferred(f"{cid}: {exc}") from None
        log.warning("order refused by the exchange", client_id=cid, code=exc.code, error=exc.msg)
        self._journal.record_outcome(cid, OrderOutcome("REJECTED", error=str(exc)))
        return [OrderRejected(cid, self._clock.now_ms(), exc.code, exc.msg)]

    def _unplaceable(self, cid: str, sends: int) -> list[Event]:
        reason = f"no answer to {sends} sends and not found by client id"
        log.error("stop could not be placed: reporting it refused, the position is closed", client_id=cid, sends=sends)
        self._journal.record_outcome(cid, OrderOutcome("REJECTED", error=reason))
        return [OrderRejected(cid, self._clock.now_ms(), None, reason)]

    def _unknown(self, cid: str) -> list[Event]:
        log.error("order outcome still unknown after lookups; it will be looked up again", client_id=cid)
        self._journal.record_outcome(cid, OrderOutcome("UNKNOWN", error="no answer and not found by client id"))
        raise ExecutionDeferred(f"{cid}: outcome unknown; not found by client id yet")

    # ------------------------------------------------------------------------------------------ transport policy

    async def _send(self, call: Callable[[], Awaitable[T]]) -> T:
        """Send; resend only after failures that certainly executed nothing (could not connect)."""
        delay = self._settings.send_retry_delay_s
        for attempt in range(self._settings.send_retries + 1):
            try:
                return await call()
            except ExchangeUnavailable:
                if attempt == self._settings.send_retries:
                    raise
                await self._clock.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _find(self, lookup: Callable[[], Awaitable[T | None]]) -> T | None:
        delay = self._settings.lookup_delay_s
        for attempt in range(self._settings.lookup_attempts):
            found = await self._guard(lookup())
            if found is not None:
                return found
            if attempt + 1 < self._settings.lookup_attempts:
                await self._clock.sleep(delay)
                delay *= 2
        return None

    async def _guard(self, call: Awaitable[T]) -> T:
        """Reads and cancels: an unreachable exchange defers the work instead of failing the position."""
        try:
            return await call
        except (*_NOT_NOW, UnknownOutcome) as exc:
            raise ExecutionDeferred(str(exc)) from None
