"""Positions in PostgreSQL: the `ats.execution.Journal` implementation and the records each transition carries.

A transition is one transaction: the position row is locked (SELECT ... FOR UPDATE), the state machine runs on
the stored state, and the new state is written together with what its actions record: an order row (status
PENDING) for each placement *before* it is sent, fills, the daily risk ledger, outbox notifications and the
append-only event log. The flow and the monitor can therefore drive the same position concurrently.

The monitor's journal carries its fence (ats.leadership): a transition is recorded only while the monitor still
holds the lease under its epoch, checked in the same transaction, so a leader that was frozen past its lease
records nothing when it wakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from ats.clock import ms_to_datetime, utc_day_start_ms
from ats.codec import from_jsonable, to_jsonable
from ats.domain import parse_client_id
from ats.execution import JournalUnavailable, OrderOutcome, UnknownPosition
from ats.leadership import Fence
from ats.lifecycle import (
    Action,
    CancelOrder,
    Event,
    FundingPaid,
    MarketClose,
    Notify,
    PlaceEntry,
    PlaceStop,
    PlaceTakeProfit,
    Position,
    RecordAnomaly,
    RecordFill,
    RecordResult,
    RequestReconcile,
    Role,
    event_to_jsonable,
    transition,
)
from ats.messages import Language
from ats.notify import Notification, render
from db.lease import hold
from db.models import (
    EventRow,
    FillRow,
    NotificationRow,
    OrderIntentRow,
    OrderRow,
    OrderStatusRow,
    PositionRow,
    RiskLedgerRow,
)
from db.session import Database

ZERO = Decimal(0)
# Where an order or an algo order ends: the exchange's final statuses, and REJECTED for a refused placement.
FINAL_ORDER_STATUSES = frozenset({"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED", "FINISHED"})


class PostgresJournal:
    """The journal of one account's positions (see ats.execution.Journal)."""

    def __init__(self, database: Database, account: str, *, language: Language, fence: Fence | None = None) -> None:
        """`fence`: record transitions only while it holds (the monitor's); None for everyone else. `language`:
        of the messages its transitions queue (settings.language)."""
        self._db = database
        self.account = account
        self._fence = fence
        self._language = language

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction; the database unreachable (or dropping the connection) is JournalUnavailable, on which
        the executor still sends the stops it could not record."""
        try:
            with self._db.session() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise JournalUnavailable(f"the journal's database is unavailable: {type(exc.orig).__name__}") from exc

    def _hold(self, session: Session, what: str) -> None:
        """Refuse a transition (NotLeader) unless this journal's fence holds, here and in the database."""
        if self._fence is not None:
            epoch = self._fence.check(what)
            hold(session, self.account, self._fence.holder, epoch)

    # ------------------------------------------------------------------------------------------ Journal

    def apply(self, key: str, event: Event, *, source: str) -> tuple[Position, list[Action]]:
        with self._session() as session:
            self._hold(session, f"{key}: {type(event).__name__}")
            row = session.scalars(select(PositionRow).where(PositionRow.key == key).with_for_update()).one_or_none()
            if row is None:
                raise UnknownPosition(key)
            before: Position = from_jsonable(Position, row.lifecycle)
            after, actions = transition(before, event)
            if after == before and not actions:
                return after, actions
            write_position(row, after)
            if isinstance(event, FundingPaid) and after.funding != before.funding:
                add_to_ledger(session, self.account, event.time_ms, funding=after.funding - before.funding)
            record_actions(session, self.account, row, after, actions, source, self._language)
            log_event(
                session,
                self.account,
                "position_event",
                source,
                symbol=after.symbol,
                position_id=row.id,
                key=key,
                data=event_to_jsonable(event),
            )
            return after, actions

    def position(self, key: str) -> Position | None:
        with self._session() as session:
            stored = session.scalar(select(PositionRow.lifecycle).where(PositionRow.key == key))
        return None if stored is None else from_jsonable(Position, stored)

    def record_attempt(self, client_id: str) -> bool:
        with self._session() as session:
            attempts = session.scalar(
                update(OrderRow)
                .where(OrderRow.account == self.account, OrderRow.client_id == client_id)
                .values(
                    attempts=OrderRow.attempts + 1,
                    sent_at=func.coalesce(OrderRow.sent_at, func.now()),
                    updated_at=func.now(),
                )
                .returning(OrderRow.attempts)
            )
        return attempts is None or attempts > 1

    def record_outcome(self, client_id: str, outcome: OrderOutcome) -> None:
        with self._session() as session:
            order = session.scalars(
                select(OrderRow)
                .where(OrderRow.account == self.account, OrderRow.client_id == client_id)
                .with_for_update()
            ).one_or_none()
            if order is None:
                return
            # Answers arrive out of order (a late lookup saying NEW after the stream said FILLED): a final status
            # is never replaced by one that is not, and the history keeps what was said either way.
            stale = order.status in FINAL_ORDER_STATUSES and outcome.status not in FINAL_ORDER_STATUSES
            changed = order.status != outcome.status
            if not stale:
                order.status = outcome.status
            if outcome.exchange_order_id is not None:
                order.exchange_order_id = outcome.exchange_order_id
            if outcome.algo_id is not None:
                order.algo_id = outcome.algo_id
            if outcome.actual_order_id is not None:
                order.actual_order_id = outcome.actual_order_id
            if outcome.executed_qty is not None:
                order.executed_qty = max(order.executed_qty, outcome.executed_qty)
            if outcome.avg_price is not None:
                order.avg_price = outcome.avg_price
            order.last_error = outcome.error
            order.updated_at = func.now()
            if changed or outcome.error:
                session.add(OrderStatusRow(order_id=order.id, status=outcome.status, detail=_outcome_detail(outcome)))

    # ------------------------------------------------------------------------------------------ queries

    def open_positions(self) -> list[Position]:
        """Every position not yet closed or failed (the monitor's working set)."""
        with self._session() as session:
            stored = session.scalars(
                select(PositionRow.lifecycle)
                .where(PositionRow.account == self.account, PositionRow.closed_at.is_(None))
                .order_by(PositionRow.id)
            ).all()
        return [from_jsonable(Position, data) for data in stored]

    def client_id_for_order(self, exchange_order_id: int) -> str | None:
        """Our client id for an exchange order id: a normal order's, or the algo order that created it."""
        with self._session() as session:
            return session.scalar(
                select(OrderRow.client_id).where(
                    OrderRow.account == self.account,
                    (OrderRow.exchange_order_id == exchange_order_id) | (OrderRow.actual_order_id == exchange_order_id),
                )
            )

    def recorded_trade_ids(self, symbol: str, since_ms: int) -> set[int]:
        """Trade ids of the symbol's fills already recorded at or after `since_ms` (reconciliation skips them)."""
        with self._session() as session:
            ids = session.scalars(
                select(FillRow.trade_id).where(
                    FillRow.account == self.account, FillRow.symbol == symbol, FillRow.time_ms >= since_ms
                )
            ).all()
        return set(ids)

    def order_ages_s(self, client_ids: Sequence[str]) -> dict[str, float]:
        """Seconds since each order was recorded (its placement decided), by the database's clock."""
        if not client_ids:
            return {}
        age = func.extract("epoch", func.now() - OrderRow.created_at)
        with self._session() as session:
            rows = session.execute(
                select(OrderRow.client_id, age).where(
                    OrderRow.account == self.account, OrderRow.client_id.in_(list(client_ids))
                )
            ).all()
        return {client_id: float(seconds) for client_id, seconds in rows}

    def create(self, position: Position, actions: Sequence[Action], *, source: str) -> None:
        """Record a position that has no intent row (adopted from the exchange) with its first actions."""
        with self._session() as session:
            self._hold(session, f"{position.key}: adopting the position")
            record_new_position(session, self.account, position, actions, source=source, language=self._language)

    def note(self, kind: str, source: str, *, symbol: str | None = None, **data: Any) -> None:
        """Append one entry to the event log in its own transaction."""
        with self._session() as session:
            log_event(session, self.account, kind, source, symbol=symbol, data=to_jsonable(data))


# ---------------------------------------------------------------------------------------------- session helpers


def record_new_position(
    session: Session,
    account: str,
    position: Position,
    actions: Sequence[Action],
    *,
    source: str,
    intent: OrderIntentRow | None = None,
    language: Language,
) -> PositionRow:
    """Insert a new position (and its intent) inside the caller's transaction, with its first actions' records."""
    if intent is not None:
        session.add(intent)
    row = PositionRow(
        account=account,
        key=position.key,
        symbol=position.symbol,
        direction=position.direction.value,
        opened_at=ms_to_datetime(position.opened_ms),
    )
    write_position(row, position)
    session.add(row)
    session.flush()
    record_actions(session, account, row, position, actions, source, language)
    log_event(
        session,
        account,
        "position_opened" if not position.adopted else "position_adopted",
        source,
        symbol=position.symbol,
        position_id=row.id,
        key=position.key,
        data={"direction": position.direction.value, "quantity": str(position.requested_qty)},
    )
    return row


def write_position(row: PositionRow, position: Position) -> None:
    """Copy the state machine's figures into the row's columns (for queries and people) and keep the state."""
    levels = position.levels
    row.state = position.phase.value
    row.leverage = position.leverage
    row.entry_qty = position.entry_qty
    row.quantity = max(position.open_qty, ZERO)
    row.entry_price = position.entry_price if position.entry_qty > 0 else None
    row.stop_price = position.stop_price
    row.tp1_price = levels.tp1 if levels else None
    row.tp2_price = levels.tp2 if levels else None
    row.tp1_qty = levels.tp1_qty if levels else None
    row.tp2_qty = levels.tp2_qty if levels else None
    row.tp1_done = position.tp1_done
    row.stop_client_id = _current_client_id(position, Role.STOP)
    row.tp1_client_id = _current_client_id(position, Role.TP1)
    row.tp2_client_id = _current_client_id(position, Role.TP2)
    row.realized_pnl = position.realized_pnl
    row.fees = position.fees
    row.funding = position.funding
    row.exit_reason = position.exit_reason.value if position.exit_reason else None
    row.lifecycle = to_jsonable(position)
    row.closed_at = ms_to_datetime(position.closed_ms) if position.is_terminal and position.closed_ms else None
    row.updated_at = func.now()


def record_actions(
    session: Session,
    account: str,
    row: PositionRow,
    position: Position,
    actions: Sequence[Action],
    source: str,
    language: Language,
) -> None:
    for action in actions:
        match action:
            case PlaceEntry() | MarketClose():
                request = action.request()
                _add_order(
                    session,
                    account,
                    row,
                    action.client_id,
                    kind="order",
                    side=request.side.value,
                    type_=request.type.value,
                    quantity=request.quantity,
                    reduce_only=request.reduce_only,
                )
            case PlaceStop() | PlaceTakeProfit():
                algo = action.request()
                _add_order(
                    session,
                    account,
                    row,
                    action.client_id,
                    kind="algo",
                    side=algo.side.value,
                    type_=algo.type.value,
                    quantity=algo.quantity or ZERO,
                    trigger_price=algo.trigger_price,
                    reduce_only=algo.reduce_only,
                    close_position=algo.close_position,
                )
            case CancelOrder():
                order_id = session.scalar(
                    select(OrderRow.id).where(OrderRow.account == account, OrderRow.client_id == action.client_id)
                )
                if order_id is not None:
                    session.add(OrderStatusRow(order_id=order_id, status="CANCEL_REQUESTED", detail={"by": source}))
            case Notify():
                enqueue_notification(session, account, action.key, action.note, language=language)
            case RecordFill():
                _add_fill(session, account, row, action)
            case RecordResult():
                log_event(
                    session,
                    account,
                    "position_closed",
                    source,
                    symbol=position.symbol,
                    position_id=row.id,
                    key=position.key,
                    data=to_jsonable(action.result),
                )
            case RecordAnomaly():
                log_event(
                    session,
                    account,
                    "anomaly",
                    source,
                    symbol=position.symbol,
                    position_id=row.id,
                    key=position.key,
                    data={"event": action.event, "detail": action.detail},
                )
            case RequestReconcile():
                log_event(
                    session,
                    account,
                    "reconcile_requested",
                    source,
                    symbol=action.symbol,
                    position_id=row.id,
                    key=position.key,
                    data={"reason": action.reason},
                )


def enqueue_notification(
    session: Session, account: str, dedupe_key: str, note: Notification, *, language: Language
) -> bool:
    """Put one message in the outbox, once per dedupe key (scoped to the account), in the caller's transaction,
    rendered in `language` (settings.language).

    Returns whether it is new (False: that key was queued before)."""
    inserted = session.scalar(
        insert(NotificationRow)
        .values(
            account=account,
            kind=note.kind.value,
            dedupe_key=f"{account}:{dedupe_key}",
            payload=to_jsonable(note),
            text=render(note, language),
        )
        .on_conflict_do_nothing(constraint="uq_notifications_dedupe_key")
        .returning(NotificationRow.id)
    )
    return inserted is not None


def add_to_ledger(
    session: Session,
    account: str,
    time_ms: int,
    *,
    realized_pnl: Decimal = ZERO,
    fees: Decimal = ZERO,
    funding: Decimal = ZERO,
) -> None:
    """Add to the UTC day's risk ledger (what the daily loss limit counts), creating the day's row if needed."""
    day = ms_to_datetime(utc_day_start_ms(time_ms))
    table = RiskLedgerRow.__table__
    statement = insert(RiskLedgerRow).values(
        account=account, day=day, realized_pnl=realized_pnl, fees=fees, funding=funding
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["account", "day"],
            set_={
                "realized_pnl": table.c.realized_pnl + statement.excluded.realized_pnl,
                "fees": table.c.fees + statement.excluded.fees,
                "funding": table.c.funding + statement.excluded.funding,
                "updated_at": func.now(),
            },
        )
    )


def log_event(
    session: Session,
    account: str,
    kind: str,
    source: str,
    *,
    symbol: str | None = None,
    position_id: int | None = None,
    key: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        EventRow(
            account=account,
            kind=kind,
            source=source,
            symbol=symbol,
            position_id=position_id,
            intent_key=key,
            data=data or {},
        )
    )


def _add_order(
    session: Session,
    account: str,
    row: PositionRow,
    client_id: str,
    *,
    kind: str,
    side: str,
    type_: str,
    quantity: Decimal,
    trigger_price: Decimal | None = None,
    reduce_only: bool = False,
    close_position: bool = False,
) -> None:
    parsed = parse_client_id(client_id)
    inserted = session.scalar(
        insert(OrderRow)
        .values(
            account=account,
            position_key=row.key,
            position_id=row.id,
            client_id=client_id,
            leg=parsed[1] if parsed else "?",
            kind=kind,
            symbol=row.symbol,
            side=side,
            type=type_,
            quantity=quantity,
            trigger_price=trigger_price,
            reduce_only=reduce_only,
            close_position=close_position,
        )
        .on_conflict_do_nothing(constraint="uq_orders_account_client_id")
        .returning(OrderRow.id)
    )
    if inserted is not None:
        session.add(OrderStatusRow(order_id=inserted, status="PENDING", detail={}))


def _add_fill(session: Session, account: str, row: PositionRow, record: RecordFill) -> None:
    fill = record.fill
    exchange_order_id = session.scalar(
        select(func.coalesce(OrderRow.actual_order_id, OrderRow.exchange_order_id)).where(
            OrderRow.account == account, OrderRow.client_id == fill.client_id
        )
    )
    inserted = session.scalar(
        insert(FillRow)
        .values(
            account=account,
            symbol=row.symbol,
            trade_id=fill.trade_id,
            exchange_order_id=exchange_order_id,
            client_id=fill.client_id,
            position_id=row.id,
            side=fill.side.value,
            price=fill.price,
            qty=fill.qty,
            quote_qty=fill.qty * fill.price,
            realized_pnl=fill.realized_pnl,
            commission=fill.fee,
            commission_asset="USDT",
            maker=False,
            liquidation=fill.liquidation,
            time_ms=fill.time_ms,
        )
        .on_conflict_do_nothing(constraint="uq_fills_trade")
        .returning(FillRow.id)
    )
    if inserted is not None:
        add_to_ledger(session, account, fill.time_ms, realized_pnl=fill.realized_pnl, fees=fill.fee)


def _current_client_id(position: Position, role: Role) -> str | None:
    order = position.current_order(role)
    return order.client_id if order else None


def _outcome_detail(outcome: OrderOutcome) -> dict[str, Any]:
    return {k: v for k, v in to_jsonable(outcome).items() if v is not None and k != "status"}
