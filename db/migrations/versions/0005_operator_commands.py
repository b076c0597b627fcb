"""the operator's commands: who halted and who lifted a day's halt, a pause that lasts until resumed, and the
Telegram commands the monitor received (each once: the update id is unique per account)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("risk_ledger", sa.Column("halted_by", sa.Text(), nullable=True))
    op.add_column("risk_ledger", sa.Column("halted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "risk_ledger", sa.Column("until_resumed", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.add_column("risk_ledger", sa.Column("resumed_by", sa.Text(), nullable=True))
    op.add_column("risk_ledger", sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True))
    # Halts recorded before: a close-all's reason starts with "close-all:", every other one is the loss limit's.
    op.execute(
        "UPDATE risk_ledger SET halted_by = CASE WHEN halted_reason LIKE 'close-all:%' THEN 'close-all' "
        "ELSE 'daily-loss-limit' END WHERE halted"
    )
    op.create_table(
        "bot_commands",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("code", sa.String(length=16), nullable=True),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("code_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('answered', 'ignored', 'executing', 'failed')", name=op.f("ck_bot_commands_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_commands")),
        sa.UniqueConstraint("account", "update_id", name=op.f("uq_bot_commands_account")),
    )


def downgrade() -> None:
    op.drop_table("bot_commands")
    for column in ("resumed_at", "resumed_by", "until_resumed", "halted_at", "halted_by"):
        op.drop_column("risk_ledger", column)
