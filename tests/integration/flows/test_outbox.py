"""The outbox sender on PostgreSQL: delivery, retries with back-off, give-up, and never one row sent twice.

Uses a recording Notifier (the delivery boundary) for the sender's rules, and the real TelegramNotifier against a
loopback Bot API for the token: it must not reach a log line, the database or an exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from ats.clock import FakeClock, WallClock, ms_to_datetime
from ats.config import TelegramSettings
from ats.log import configure_logging
from ats.messages import data
from ats.notify import AlertNote, NotifyError, NotifyRejected, NotifyUnavailable, TelegramNotifier
from db.journal import enqueue_notification
from db.models import NotificationRow
from db.outbox import RetryPolicy, deliver_pending, retry_delay_s
from db.session import Database

ACCOUNT = "main"
TOKEN = "123456789:AAF-sentinel_token_for_the_outbox_test_xyz"  # a fake: an example token shape


@dataclass
class Recorder:
    """A Notifier that records what it sends and fails as scripted."""

    sent: list[str] = field(default_factory=list)
    failures: list[NotifyError] = field(default_factory=list)
    delay_s: float = 0.0

    async def send(self, message: str) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)

    async def aclose(self) -> None:
        return None


def enqueue(db: Database, *titles: str) -> None:
    with db.session() as session:
        for title in titles:
            enqueue_notification(session, ACCOUNT, f"test:{title}", AlertNote(data(title)), language="en")


def rows(db: Database) -> list[NotificationRow]:
    with db.session() as session:
        return list(session.scalars(select(NotificationRow).order_by(NotificationRow.id)))


def wall_clock_now() -> FakeClock:
    return FakeClock(WallClock().now_ms())


async def test_pending_rows_are_sent_once_in_order(db: Database) -> None:
    enqueue(db, "first", "second", "third")
    enqueue(db, "first")  # the same dedupe key: still one row
    notifier = Recorder()
    assert await deliver_pending(db, ACCOUNT, notifier, wall_clock_now()) == 3
    assert [m.split("</b>: ")[1] for m in notifier.sent] == ["first", "second", "third"]
    assert {r.status for r in rows(db)} == {"sent"}
    assert await deliver_pending(db, ACCOUNT, notifier, wall_clock_now()) == 0
    assert len(notifier.sent) == 3


async def test_an_outage_is_retried_after_the_back_off_and_honours_retry_after(db: Database) -> None:
    enqueue(db, "one", "two")
    clock = wall_clock_now()
    notifier = Recorder(failures=[NotifyUnavailable("telegram: rate limited", retry_after_s=30.0)])
    policy = RetryPolicy(base_delay_s=5.0)
    assert await deliver_pending(db, ACCOUNT, notifier, clock, policy=policy) == 0  # the round stops at the outage
    first, second = rows(db)
    assert (first.status, first.attempts, second.attempts) == ("pending", 1, 0)
    assert first.next_attempt_at == ms_to_datetime(clock.now_ms()) + timedelta(seconds=30)
    assert first.last_error == "telegram: rate limited"

    assert await deliver_pending(db, ACCOUNT, notifier, clock, policy=policy) == 1  # "two" is due, "one" is not
    clock.advance(30)
    assert await deliver_pending(db, ACCOUNT, notifier, clock, policy=policy) == 1
    assert [r.status for r in rows(db)] == ["sent", "sent"]
    assert rows(db)[0].attempts == 2


async def test_a_rejected_message_fails_at_once_and_a_hopeless_one_is_given_up(db: Database) -> None:
    enqueue(db, "rejected", "flaky")
    clock = wall_clock_now()
    policy = RetryPolicy(max_attempts=2, base_delay_s=1.0)
    notifier = Recorder(
        failures=[NotifyRejected("telegram: HTTP 400: chat not found"), NotifyUnavailable("telegram: HTTP 502")]
    )
    assert await deliver_pending(db, ACCOUNT, notifier, clock, policy=policy) == 0
    assert await deliver_pending(db, ACCOUNT, notifier, clock, policy=policy) == 0  # "flaky" waits a second
    clock.advance(1)
    notifier.failures = [NotifyUnavailable("telegram: HTTP 502")]
    assert await deliver_pending(db, ACCOUNT, notifier, clock, policy=policy) == 0
    rejected, flaky = rows(db)
    assert (rejected.status, rejected.attempts, rejected.last_error) == (
        "failed",
        1,
        "telegram: HTTP 400: chat not found",
    )
    assert (flaky.status, flaky.attempts) == ("failed", 2)
    assert notifier.sent == []


def test_the_back_off_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=5.0, max_delay_s=60.0)
    assert [retry_delay_s(n, None, policy) for n in (1, 2, 3, 4, 5)] == [5.0, 10.0, 20.0, 40.0, 60.0]
    assert retry_delay_s(1, 90.0, policy) == 90.0


async def test_two_senders_never_send_one_row_twice(db: Database) -> None:
    titles = [f"message {i}" for i in range(12)]
    enqueue(db, *titles)
    first, second = Recorder(delay_s=0.03), Recorder(delay_s=0.03)

    def sender(notifier: Recorder) -> int:
        return asyncio.run(deliver_pending(db, ACCOUNT, notifier, wall_clock_now()))

    counts = await asyncio.gather(asyncio.to_thread(sender, first), asyncio.to_thread(sender, second))
    assert sum(counts) == len(titles)
    assert first.sent, "both senders should have had work"
    assert second.sent, "both senders should have had work"
    assert sorted(first.sent + second.sent) == sorted(set(first.sent + second.sent))
    assert {r.status for r in rows(db)} == {"sent"}


# ---------------------------------------------------------------------------------------------- the token


@dataclass
class BotApi:
    url: str = ""
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def bot_api() -> Iterator[BotApi]:
    """A loopback stand-in for api.telegram.org answering from a script."""
    api = BotApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            api.paths.append(self.path)
            status, body = api.replies.pop(0) if api.replies else (200, {"ok": True, "result": {}})
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield api
    server.shutdown()
    server.server_close()


class RawRecords(logging.Handler):
    """Collects records as emitted, before any redaction: a leak must not even be there to mask."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(
            f"{r.name} {r.getMessage()} {getattr(r, 'fields', '')} {r.exc_info or ''}" for r in self.records
        )


async def test_the_bot_token_never_reaches_a_log_line_or_the_database(
    db: Database, bot_api: BotApi, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "console")  # the token is deliberately not registered as a secret here
    raw = RawRecords()
    root = logging.getLogger()
    root.addHandler(raw)
    bot_api.replies = [
        (500, {"ok": False, "error_code": 500, "description": f"Internal error for bot{TOKEN}"}),
        (401, {"ok": False, "error_code": 401, "description": "Unauthorized"}),
    ]
    enqueue(db, "first", "second", "third")
    notifier = TelegramNotifier(TelegramSettings(token=SecretStr(TOKEN), chat_id="-100123", api_url=bot_api.url))
    clock = wall_clock_now()
    try:
        await deliver_pending(db, ACCOUNT, notifier, clock)  # 500: retried later
        clock.advance(3600)
        await deliver_pending(db, ACCOUNT, notifier, clock)  # 401 for "first", then the others go through
    finally:
        await notifier.aclose()
        root.removeHandler(raw)
    assert all(TOKEN in path for path in bot_api.paths)  # the token was used, in the URL ...
    assert [r.status for r in rows(db)] == ["failed", "sent", "sent"]
    assert not [r for r in raw.records if r.name.startswith(("httpx", "httpcore"))]  # ... which is never logged
    assert any("notification" in r.getMessage() for r in raw.records)
    printed = capsys.readouterr()
    stored = json.dumps([r.last_error for r in rows(db)])
    for text in (stored, raw.text(), printed.out, printed.err):
        assert TOKEN.split(":")[1] not in text
