"""The PostgreSQL schema (SQLAlchemy 2 ORM). Alembic migrations in db/migrations are the source of truth
for the live schema; a test asserts that these models and the migrations agree.

Money columns are NUMERIC(36, 18) and map to Decimal. Bars are DOUBLE PRECISION: they feed NumPy factor math,
never an order's price or quantity. Constraints protect money where the database can: unique client ids,
at most one open position per (account, symbol), non-negative quantities, an append-only event log.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import (
    text as sa_text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(36, 18)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads this class attribute)
        Decimal: Money,
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        datetime: DateTime(timezone=True),
    }


# ---------------------------------------------------------------------------------------------- market


class SymbolRow(Base):
    """A symbol and its exchange rules, refreshed from exchangeInfo."""

    __tablename__ = "symbols"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    base_asset: Mapped[str] = mapped_column(String(32))
    quote_asset: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    contract_type: Mapped[str] = mapped_column(String(24))
    tick_size: Mapped[Decimal]
    min_price: Mapped[Decimal]
    max_price: Mapped[Decimal]
    step_size: Mapped[Decimal]
    min_qty: Mapped[Decimal]
    max_qty: Mapped[Decimal]
    market_step_size: Mapped[Decimal]
    market_min_qty: Mapped[Decimal]
    market_max_qty: Mapped[Decimal]
    min_notional: Mapped[Decimal]
    price_precision: Mapped[int] = mapped_column(Integer)
    quantity_precision: Mapped[int] = mapped_column(Integer)
    onboard_date_ms: Mapped[int] = mapped_column(BigInteger)
    trigger_protect: Mapped[Decimal]
    updated_at: Mapped[datetime] = _now()


class BarRow(Base):
    """One closed trade kline. Never the forming bar. A NULL volume column is unknown (imported history often
    holds only OHLCV), never 0. `source`: 'live' bars are the trading cycle's cache and pruned by it; 'file'
    (ats data import) and 'rest' (ats data download) bars are history, kept."""

    __tablename__ = "bars"
    __table_args__ = (
        CheckConstraint("source IN ('live', 'file', 'rest')", name="source"),
        Index("ix_bars_live", "interval", "open_time_ms", postgresql_where=sa_text("source = 'live'")),
    )

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    interval: Mapped[str] = mapped_column(String(8), primary_key=True)
    open_time_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float | None] = mapped_column(Float)
    quote_volume: Mapped[float | None] = mapped_column(Float)
    trades: Mapped[float | None] = mapped_column(Float)
    taker_buy_volume: Mapped[float | None] = mapped_column(Float)
    taker_buy_quote_volume: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8), default="live", server_default="live")


class MarkBarRow(Base):
    """One closed mark-price kline (imported history): another price than the trade klines, and no volume."""

    __tablename__ = "mark_bars"
    __table_args__ = (CheckConstraint("source IN ('file', 'rest')", name="source"),)

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    interval: Mapped[str] = mapped_column(String(8), primary_key=True)
    open_time_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))


class FundingRateRow(Base):
    """One funding settlement (imported history), under the hour it settled; the mark price NULL when unknown."""

    __tablename__ = "funding_rates"
    __table_args__ = (CheckConstraint("source IN ('file', 'rest')", name="source"),)

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    funding_time_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    funding_rate: Mapped[Decimal]
    mark_price: Mapped[Decimal | None]
    source: Mapped[str] = mapped_column(String(8))


class PoolRow(Base):
    """One build of the Elite or Overlay pool."""

    __tablename__ = "pools"
    __table_args__ = (
        CheckConstraint("kind IN ('elite', 'overlay')", name="kind"),
        Index("ix_pools_kind_built_at", "kind", "built_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    built_at: Mapped[datetime]
    valid_until: Mapped[datetime]
    interval: Mapped[str] = mapped_column(String(8))
    fell_back: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


class PoolMemberRow(Base):
    __tablename__ = "pool_members"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))


class ScanRow(Base):
    """One factor scan over the universe."""

    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    interval: Mapped[str] = mapped_column(String(8))
    bar_open_time_ms: Mapped[int | None] = mapped_column(BigInteger)
    universe_size: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))
    signal_count: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))
    min_score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="running", server_default="running")
    error: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


class ScanResultRow(Base):
    """Every factor of every symbol of a scan, so a user can see why a signal fired (or did not)."""

    __tablename__ = "scan_results"

    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)
    direction: Mapped[str | None] = mapped_column(String(8))
    strength: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    factors: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))
    insufficient_reason: Mapped[str | None] = mapped_column(Text)


class SignalRow(Base):
    """A scored opportunity at or above min_score, and what became of it."""

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("account", "symbol", "bar_open_time_ms", "direction", name="uq_signals_identity"),
        CheckConstraint("direction IN ('LONG', 'SHORT')", name="direction"),
        CheckConstraint("strength >= 0 AND strength <= 100", name="strength"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))
    symbol: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    strength: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    bar_open_time_ms: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[Decimal]
    factors: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))
    source: Mapped[str] = mapped_column(String(16), default="scan", server_default="scan")  # scan | manual
    status: Mapped[str] = mapped_column(
        String(16), default="new", server_default="new"
    )  # new | accepted | refused | placed | failed
    refusal_code: Mapped[str | None] = mapped_column(String(48))
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    intent_key: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------------------------------------- orders


class OrderIntentRow(Base):
    """What we decided to do for one signal, recorded before anything is sent (deterministic key)."""

    __tablename__ = "order_intents"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        CheckConstraint("leverage >= 1", name="leverage_positive"),
    )

    intent_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    signal_id: Mapped[int | None] = mapped_column(ForeignKey("signals.id", ondelete="SET NULL"))
    symbol: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16), default="entry", server_default="entry")  # entry | manual | adopted
    status: Mapped[str] = mapped_column(String(24), default="recorded", server_default="recorded")
    quantity: Mapped[Decimal]
    leverage: Mapped[int] = mapped_column(Integer)
    reference_price: Mapped[Decimal]
    stop_price: Mapped[Decimal]
    tp1_price: Mapped[Decimal]
    tp2_price: Mapped[Decimal]
    tp1_qty: Mapped[Decimal]
    tp2_qty: Mapped[Decimal]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class OrderRow(Base):
    """Every order and algo order we send (or adopt), keyed by its deterministic client id."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("account", "client_id", name="uq_orders_account_client_id"),
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        CheckConstraint("executed_qty >= 0", name="executed_qty_non_negative"),
        CheckConstraint("kind IN ('order', 'algo')", name="kind"),
        Index("ix_orders_symbol_status", "account", "symbol", "status"),
        Index("ix_orders_exchange_order_id", "exchange_order_id"),
        Index("ix_orders_algo_id", "algo_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    position_key: Mapped[str | None] = mapped_column(String(32), index=True)  # the lifecycle key (= intent key)
    position_id: Mapped[int | None] = mapped_column(ForeignKey("positions.id", ondelete="SET NULL"))
    client_id: Mapped[str] = mapped_column(String(36))
    leg: Mapped[str] = mapped_column(String(8))  # E, S1, S2, T1, T2, X1, ...
    kind: Mapped[str] = mapped_column(String(8))  # order | algo
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(24))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal | None]
    trigger_price: Mapped[Decimal | None]
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))
    close_position: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))
    exchange_order_id: Mapped[int | None] = mapped_column(BigInteger)
    algo_id: Mapped[int | None] = mapped_column(BigInteger)
    actual_order_id: Mapped[int | None] = mapped_column(BigInteger)
    # PENDING until the exchange answers; then the exchange's status (NEW, FILLED, CANCELED, ...) or REJECTED.
    status: Mapped[str] = mapped_column(String(24), default="PENDING", server_default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))  # sends tried
    sent_at: Mapped[datetime | None]  # first send; any later attempt must look the order up before sending
    executed_qty: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    avg_price: Mapped[Decimal | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class OrderStatusRow(Base):
    """Append-only status history of an order."""

    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = _now()
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))


class FillRow(Base):
    """One execution, as reported by the exchange (user stream or userTrades)."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("account", "symbol", "trade_id", name="uq_fills_trade"),
        CheckConstraint("qty > 0", name="qty_positive"),
        CheckConstraint("price > 0", name="price_positive"),
        Index("ix_fills_position", "position_id"),
        Index("ix_fills_time", "account", "time_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    trade_id: Mapped[int] = mapped_column(BigInteger)
    exchange_order_id: Mapped[int | None] = mapped_column(BigInteger)  # unknown for some stream-only fills
    client_id: Mapped[str | None] = mapped_column(String(64))
    position_id: Mapped[int | None] = mapped_column(ForeignKey("positions.id", ondelete="SET NULL"))
    side: Mapped[str] = mapped_column(String(4))
    price: Mapped[Decimal]
    qty: Mapped[Decimal]
    quote_qty: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    commission: Mapped[Decimal]
    commission_asset: Mapped[str] = mapped_column(String(16))
    maker: Mapped[bool] = mapped_column(Boolean)
    liquidation: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------------------------------------- positions


class PositionRow(Base):
    """A position from entry to close, its levels and the links to its protective orders."""

    __tablename__ = "positions"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        CheckConstraint("entry_qty >= 0", name="entry_qty_non_negative"),
        CheckConstraint("direction IN ('LONG', 'SHORT')", name="direction"),
        # At most one open position per symbol and account.
        Index(
            "uq_positions_one_open_per_symbol",
            "account",
            "symbol",
            unique=True,
            postgresql_where=sa_text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    # The lifecycle key: the intent's key for our own entries (order_intents.intent_key), a fresh one for adopted
    # positions. Client ids of every order of the position derive from it.
    key: Mapped[str] = mapped_column(String(32), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(24))
    leverage: Mapped[int] = mapped_column(Integer)
    entry_qty: Mapped[Decimal]  # total filled at entry
    quantity: Mapped[Decimal]  # still open
    entry_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    tp1_price: Mapped[Decimal | None]
    tp2_price: Mapped[Decimal | None]
    tp1_qty: Mapped[Decimal | None]
    tp2_qty: Mapped[Decimal | None]
    tp1_done: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))
    stop_client_id: Mapped[str | None] = mapped_column(String(36))
    tp1_client_id: Mapped[str | None] = mapped_column(String(36))
    tp2_client_id: Mapped[str | None] = mapped_column(String(36))
    realized_pnl: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    fees: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    funding: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    exit_reason: Mapped[str | None] = mapped_column(String(32))
    lifecycle: Mapped[dict[str, Any]] = mapped_column(
        default=dict, server_default=sa_text("'{}'::jsonb")
    )  # the full state machine snapshot
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=sa_text("1"))
    opened_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    closed_at: Mapped[datetime | None]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (optimistic locking)


# ---------------------------------------------------------------------------------------------- risk & account


class RiskLedgerRow(Base):
    """Per account and UTC day: what the daily loss limit counts. Survives restarts by living here."""

    __tablename__ = "risk_ledger"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)  # 00:00 UTC
    realized_pnl: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    fees: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    funding: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    last_unrealized_pnl: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    worst_total_pnl: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default=sa_text("0"))
    halted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))
    halted_reason: Mapped[str | None] = mapped_column(Text)
    halted_by: Mapped[str | None] = mapped_column(Text)  # daily-loss-limit, close-all (cli), telegram @name, ...
    halted_at: Mapped[datetime | None]
    until_resumed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_text("false"))  # a pause
    resumed_by: Mapped[str | None] = mapped_column(Text)  # who lifted the day's last halt
    resumed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _now()


class AccountSnapshotRow(Base):
    __tablename__ = "account_snapshots"
    __table_args__ = (Index("ix_account_snapshots_at", "account", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = _now()
    wallet_balance: Mapped[Decimal]
    unrealized_pnl: Mapped[Decimal]
    margin_balance: Mapped[Decimal]
    available_balance: Mapped[Decimal]
    positions: Mapped[list[Any]] = mapped_column(default=list, server_default=sa_text("'[]'::jsonb"))


# ---------------------------------------------------------------------------------------------- notifications & events


class NotificationRow(Base):
    """The outbox: written in the same transaction as the event it tells of; a sender delivers it."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_notifications_dedupe_key"),
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index("ix_notifications_pending", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(24))  # signal, entry, tp1, tp2, stop, result, alert, report
    dedupe_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))
    next_attempt_at: Mapped[datetime] = _now()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None]


class EventRow(Base):
    """Append-only log of everything that happened (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_at", "at"),
        Index("ix_events_position", "position_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = _now()
    account: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(48))
    symbol: Mapped[str | None] = mapped_column(String(32))
    position_id: Mapped[int | None] = mapped_column(BigInteger)
    intent_key: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(24))  # flow, monitor, cli, reconcile
    data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))


# ---------------------------------------------------------------------------------------------- infrastructure


class RateLimitStateRow(Base):
    """The request-weight budget shared by every process on the host (one row per scope, e.g. an IP)."""

    __tablename__ = "rate_limit_state"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Mirrors ats.exchange.budget.BudgetState field for field.
    window_start_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default=sa_text("0"))
    used_weight: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))
    orders_1m: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))
    orders_10s_start_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default=sa_text("0"))
    orders_10s: Mapped[int] = mapped_column(Integer, default=0, server_default=sa_text("0"))
    backoff_until_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default=sa_text("0"))
    banned_until_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default=sa_text("0"))
    updated_at: Mapped[datetime] = _now()


class WorkerHeartbeatRow(Base):
    """Liveness of long-lived workers (the monitor): the watchdog and the entry guard read it, `ats status` shows it."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))  # active | standby
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa_text("'{}'::jsonb"))


class BotCommandRow(Base):
    """Every Telegram update the monitor took (commands, and messages it ignored), once: the update id is unique
    per account, so a command is never handled twice, and the next poll's offset is the newest id + 1."""

    __tablename__ = "bot_commands"
    __table_args__ = (
        UniqueConstraint("account", "update_id"),
        CheckConstraint("status IN ('answered', 'ignored', 'executing', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    update_id: Mapped[int] = mapped_column(BigInteger)
    chat_id: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    command: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(16))  # a /closeall confirmation code it issued
    received_ms: Mapped[int] = mapped_column(BigInteger)  # by the monitor's clock: the code's 60 s count from it
    code_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()


class MonitorLeaseRow(Base):
    """Who leads an account's monitors (ats.leadership): the holder renews `expires_at` (database time) every few
    seconds; each acquisition increments `epoch`, the fencing token the leader's writes are checked against."""

    __tablename__ = "monitor_lease"
    __table_args__ = (CheckConstraint("epoch >= 0", name="epoch_not_negative"),)

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # a worker_heartbeats name; '' before the first leader
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class FlowRunRow(Base):
    """How each Prefect flow run ended, written by the flows' state hooks: the record of failures, and what the
    watchdog reads to know when a trading cycle last completed (without asking Prefect)."""

    __tablename__ = "flow_runs"
    __table_args__ = (Index("ix_flow_runs_flow_state_ended", "account", "flow", "state", "ended_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # Prefect's flow run id
    account: Mapped[str] = mapped_column(String(32))
    flow: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    subflow: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))  # COMPLETED | FAILED | CRASHED | CANCELLED
    state_name: Mapped[str] = mapped_column(String(32))  # e.g. TimedOut
    message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime]


class HealthCheckRow(Base):
    """The watchdog's checks per account (ats.health.Check): failing or not, since when; one message per change."""

    __tablename__ = "health_checks"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    check: Mapped[str] = mapped_column(String(32), primary_key=True)
    failing: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    checked_at: Mapped[datetime]
    created_at: Mapped[datetime] = _now()  # the check's first run: "watching since"
