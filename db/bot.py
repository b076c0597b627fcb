"""The Telegram commands the monitor took, each once: the record, the next poll's offset, the close-all code.

An update's row is written in the transaction that records its effect and queues its answer (db.journal's
outbox): a command is handled once, whatever restarts or which monitor leads, and its answer is never lost.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ats.operator import Incoming, IssuedCode
from db.models import BotCommandRow


def next_offset(session: Session, account: str) -> int | None:
    """getUpdates' offset: one past the newest update taken (None before the first)."""
    newest = session.scalar(select(func.max(BotCommandRow.update_id)).where(BotCommandRow.account == account))
    return None if newest is None else newest + 1


def take(
    session: Session,
    account: str,
    incoming: Incoming,
    *,
    command: str | None,
    status: str,
    received_ms: int,
    answer: str | None = None,
    code: str | None = None,
) -> bool:
    """Record the update; False when it was taken before (its command must not run again)."""
    inserted = session.scalar(
        insert(BotCommandRow)
        .values(
            account=account,
            update_id=incoming.update_id,
            chat_id=incoming.chat_id,
            sender=incoming.sender,
            text=incoming.text,
            command=command,
            status=status,
            answer=answer,
            code=code,
            received_ms=received_ms,
        )
        .on_conflict_do_nothing(index_elements=["account", "update_id"])
        .returning(BotCommandRow.id)
    )
    return inserted is not None


def finish(session: Session, account: str, update_id: int, *, status: str, answer: str) -> None:
    session.execute(
        update(BotCommandRow)
        .where(BotCommandRow.account == account, BotCommandRow.update_id == update_id)
        .values(status=status, answer=answer)
    )


def latest_code(session: Session, account: str) -> IssuedCode | None:
    """The newest close-all confirmation code, locked until the transaction ends (two confirmations of one code
    cannot both run)."""
    row = session.scalars(
        select(BotCommandRow)
        .where(BotCommandRow.account == account, BotCommandRow.code.is_not(None))
        .order_by(BotCommandRow.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if row is None or row.code is None:
        return None
    return IssuedCode(row.code, row.received_ms, row.code_used_at is not None)


def use_code(session: Session, account: str, code: str) -> None:
    session.execute(
        update(BotCommandRow)
        .where(BotCommandRow.account == account, BotCommandRow.code == code, BotCommandRow.code_used_at.is_(None))
        .values(code_used_at=func.now())
    )
