"""market history: bars with unknown volumes and where each bar came from; mark-price klines; funding rates

Imported history (Binance public-data files, the REST history) holds bars whose quote volume, trade count or
taker-buy volumes are unknown: those columns become nullable (NULL = unknown, never 0). `bars.source` says where
a bar came from; the trading cycle prunes only the bars it fetched itself ('live'), never imported history.
Mark-price klines are another price than trade klines and get their own table, as do funding settlements.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNKNOWABLE = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")


def upgrade() -> None:
    for column in UNKNOWABLE:
        op.alter_column("bars", column, existing_type=sa.Float(), nullable=True)
    op.add_column("bars", sa.Column("source", sa.String(length=8), server_default="live", nullable=False))
    op.create_check_constraint(op.f("ck_bars_source"), "bars", "source IN ('live', 'file', 'rest')")
    op.create_index("ix_bars_live", "bars", ["interval", "open_time_ms"], postgresql_where=sa.text("source = 'live'"))
    op.create_table(
        "mark_bars",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("open_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.CheckConstraint("source IN ('file', 'rest')", name=op.f("ck_mark_bars_source")),
        sa.PrimaryKeyConstraint("symbol", "interval", "open_time_ms", name=op.f("pk_mark_bars")),
    )
    op.create_table(
        "funding_rates",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("funding_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("funding_rate", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("mark_price", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.CheckConstraint("source IN ('file', 'rest')", name=op.f("ck_funding_rates_source")),
        sa.PrimaryKeyConstraint("symbol", "funding_time_ms", name=op.f("pk_funding_rates")),
    )


def downgrade() -> None:
    """Back to bars whose every column is known: bars with an unknown volume cannot be kept and are deleted."""
    op.drop_table("funding_rates")
    op.drop_table("mark_bars")
    op.drop_index("ix_bars_live", table_name="bars")
    op.drop_constraint(op.f("ck_bars_source"), "bars", type_="check")
    op.drop_column("bars", "source")
    op.execute("DELETE FROM bars WHERE " + " OR ".join(f"{c} IS NULL" for c in UNKNOWABLE))  # noqa: S608  (constants)
    for column in UNKNOWABLE:
        op.alter_column("bars", column, existing_type=sa.Float(), nullable=False)
