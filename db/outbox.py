"""The outbox sender: delivers pending notification rows through a Notifier, with retries and back-off.

Rows are written by the transaction that produced the event (db.journal.enqueue_notification), so nothing is
lost when Telegram is down. Each row is delivered inside its own transaction that holds the row lock
(SELECT ... FOR UPDATE SKIP LOCKED) while sending: two senders (the monitor and a flow) never send one row
twice, and a sender that dies mid-send leaves the row pending for the next one.

- NotifyRejected (bad token, unknown chat, malformed text): the row fails at once; retrying cannot help.
- NotifyUnavailable (network, 5xx, 429): the row is retried after a growing delay (at least the service's
  retry_after), and this round stops: the next rows would meet the same outage.
- A row that keeps failing is given up after `RetryPolicy.max_attempts` and marked failed.

Messages never carry the bot token: TelegramNotifier's errors are clean and only they are stored or logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import or_, select

from ats.clock import Clock, ms_to_datetime
from ats.log import get_logger, redact
from ats.notify import Notifier, NotifyError, NotifyRejected
from db.models import NotificationRow
from db.session import Database

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 12  # sends tried before a row is marked failed
    base_delay_s: float = 5.0  # delay after the first failure; doubled after each further one
    max_delay_s: float = 900.0


def retry_delay_s(attempts: int, retry_after_s: float | None, policy: RetryPolicy) -> float:
    """How long to wait before the next send of a row that has failed `attempts` times (>= 1)."""
    backoff = min(policy.base_delay_s * float(2 ** max(attempts - 1, 0)), policy.max_delay_s)
    return max(backoff, retry_after_s or 0.0)


class Delivery(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # given up: rejected, or out of attempts
    RETRY = "retry"  # the service is unavailable; the row waits
    NOTHING = "nothing"  # no row was due


async def deliver_pending(
    database: Database,
    account: str,
    notifier: Notifier,
    clock: Clock,
    *,
    limit: int = 50,
    policy: RetryPolicy | None = None,
) -> int:
    """Send up to `limit` due rows of the account, oldest first; returns how many were sent."""
    policy = policy or RetryPolicy()
    sent = 0
    for _ in range(limit):
        outcome = await deliver_one(database, account, notifier, clock, policy)
        if outcome is Delivery.SENT:
            sent += 1
        elif outcome in (Delivery.NOTHING, Delivery.RETRY):
            break
    return sent


async def deliver_one(
    database: Database, account: str, notifier: Notifier, clock: Clock, policy: RetryPolicy
) -> Delivery:
    """Lock the oldest due row (skipping rows another sender holds), send it and record the outcome."""
    now = ms_to_datetime(clock.now_ms())
    with database.session() as session:
        row = session.scalars(
            select(NotificationRow)
            .where(
                NotificationRow.account == account,
                NotificationRow.status == "pending",
                # New rows are due at once, whatever the database clock says; retries at their time.
                or_(NotificationRow.attempts == 0, NotificationRow.next_attempt_at <= now),
            )
            .order_by(NotificationRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return Delivery.NOTHING
        row.attempts += 1
        try:
            await notifier.send(row.text)
        except NotifyRejected as exc:
            row.status = "failed"
            row.last_error = str(exc)
            log.error("notification rejected; not retried", id=row.id, kind=row.kind, error=str(exc))
            return Delivery.FAILED
        except Exception as exc:  # NotifyUnavailable, or anything unexpected: the row must survive it
            error = str(exc) if isinstance(exc, NotifyError) else f"{type(exc).__name__}: {redact(str(exc))[:200]}"
            row.last_error = error
            if row.attempts >= policy.max_attempts:
                row.status = "failed"
                log.error("notification given up", id=row.id, kind=row.kind, attempts=row.attempts, error=error)
                return Delivery.FAILED
            retry_after = exc.retry_after_s if isinstance(exc, NotifyError) else None
            delay = retry_delay_s(row.attempts, retry_after, policy)
            row.next_attempt_at = now + timedelta(seconds=delay)
            log.warning("notification not delivered, will retry", id=row.id, kind=row.kind, in_s=delay, error=error)
            return Delivery.RETRY
        row.status = "sent"
        row.sent_at = now
        row.last_error = None
        return Delivery.SENT
