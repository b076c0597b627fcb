"""Telegram commands through the real path: `ats monitor`'s serve() leads, runs the monitor and the bot, which
polls a loopback Telegram API, answers through the outbox and acts on the simulated exchange and PostgreSQL; a
restart takes up at the recorded offset and handles nothing twice."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import SecretStr
from sqlalchemy import select

from ats.clock import WallClock
from ats.config import ExchangeSettings, MonitorSettings, Settings, TelegramSettings, Venue, WatchdogSettings
from ats.placement import LedgerDay
from db import risk_state
from db.models import BotCommandRow, NotificationRow
from db.session import Database
from monitor.app import serve
from sim.server import SimServer
from tasks.operations import RuntimeOperations
from tests.fixtures.telegram import CHAT_ID, TOKEN, FakeTelegram
from tests.integration.monitor.harness import ACCOUNT, FAST, Desk, wait_for


def bot_settings(sim: SimServer, db: Database, api_url: str) -> Settings:
    return Settings(
        venue=Venue.SIM,
        account=ACCOUNT,
        database_url=SecretStr(db.engine.url.render_as_string(hide_password=False)),
        exchange=ExchangeSettings(
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            timeout_s=3.0,
            api_key=SecretStr(sim.api_key),
            api_secret=SecretStr(sim.api_secret),
        ),
        monitor=MonitorSettings(reconcile_interval_s=600.0),
        telegram=TelegramSettings(token=SecretStr(TOKEN), chat_id=CHAT_ID, api_url=api_url, poll_s=1.0),
        watchdog=WatchdogSettings(cycle_overdue_min=0),  # no cycle runs here: nothing else to tell
    )


@asynccontextmanager
async def leading(settings: Settings, telegram: FakeTelegram) -> AsyncIterator[None]:
    """`ats monitor` in this event loop (monitor.app.serve, with the operations it is given and the test timings),
    until the block ends; it leads once the bot polls."""
    stop = asyncio.Event()
    polls = len(telegram.offsets())
    running = asyncio.create_task(
        serve(settings, health_host="127.0.0.1", health_port=0, stop=stop, tuning=FAST, operations=RuntimeOperations)
    )
    try:
        await wait_for(lambda: len(telegram.offsets()) > polls or None, what="the leader's first poll")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)


async def ask(telegram: FakeTelegram, text: str, *, answers: int = 1) -> list[str]:
    """Write `text` in the chat; the bot's next `answers` messages."""
    before = len(telegram.sent())
    telegram.write(text)
    sent = await asyncio.to_thread(telegram.wait_sent, before + answers)
    return sent[before:]


def ledger(db: Database) -> LedgerDay:
    with db.session() as session:
        return risk_state.ledger_day(session, ACCOUNT, WallClock().now_ms())


def commands(db: Database) -> list[BotCommandRow]:
    with db.session() as session:
        rows = session.scalars(select(BotCommandRow).order_by(BotCommandRow.update_id)).all()
        session.expunge_all()
        return list(rows)


async def test_each_command_answers_and_acts_once_from_the_configured_chat_only(
    sim: SimServer, db: Database, desk: Desk, fake_telegram: FakeTelegram
) -> None:
    settings = bot_settings(sim, db, fake_telegram.url)
    async with leading(settings, fake_telegram):
        await desk.open("BTCUSDT")
        (entered,) = await asyncio.to_thread(fake_telegram.wait_sent, 1)  # the monitor's outbox sends it
        assert "BTCUSDT</b> entered" in entered
        (help_,) = await ask(fake_telegram, "/help")
        assert "/closeall" in help_

        # Another chat is ignored: recorded and logged, never answered.
        stranger = fake_telegram.write("/closeall", chat_id="-999")
        (status,) = await ask(fake_telegram, "/status")
        assert "Status" in status
        assert "Positions 1/" in status
        assert "New entries allowed" in status
        assert status.startswith("<b>[SIM]</b>")

        (positions,) = await ask(fake_telegram, "/positions")
        assert "BTCUSDT LONG" in positions
        assert "stop " in positions
        assert "TP1 waiting" in positions
        (pools,) = await ask(fake_telegram, "/pools@ats_test_bot")
        assert "elite: not built yet" in pools
        (daily,) = await ask(fake_telegram, "/daily")
        assert "Daily report" in daily
        assert "Open (1)" in daily

        (paused,) = await ask(fake_telegram, "/pause")
        assert "Paused" in paused
        day = ledger(db)
        assert day.halted
        assert day.until_resumed
        assert day.halted_by == "telegram @operator"
        (again,) = await ask(fake_telegram, "/pause")
        assert "Already paused by telegram @operator" in again
        (status,) = await ask(fake_telegram, "/status")
        assert "Paused by telegram @operator" in status
        (resumed,) = await ask(fake_telegram, "/resume")
        assert "Resumed" in resumed
        day = ledger(db)
        assert not day.halted
        assert day.resumed_by == "telegram @operator"

        (confirm,) = await ask(fake_telegram, "/closeall")
        found = re.search(r"/closeall (\d{6})", confirm)
        assert found is not None, confirm
        code = found.group(1)
        (wrong,) = await ask(fake_telegram, f"/closeall {(int(code) + 1) % 1_000_000:06d}")
        assert "Wrong code" in wrong
        assert (await desk.exchange.positions()) != []
        started, *told = await ask(fake_telegram, f"/closeall {code}", answers=3)  # and the close, and the report
        assert "Close-all confirmed" in started
        assert any("Close-all: /closeall by @operator" in m and "BTCUSDT" in m for m in told), told
        assert await desk.exchange.positions() == []
        day = ledger(db)
        assert day.halted
        assert day.halted_by == "close-all (telegram)"
        (used,) = await ask(fake_telegram, f"/closeall {code}")
        assert "used already" in used
        (lifted,) = await ask(fake_telegram, "/resume")
        assert "Resumed" in lifted
        assert "close-all: /closeall by @operator" in lifted
        assert not ledger(db).halted

    rows = commands(db)
    (ignored,) = [r for r in rows if r.status == "ignored"]
    assert ignored.update_id == stranger
    assert ignored.chat_id == "-999"
    assert ignored.answer is None
    assert all(r.status == "answered" and r.answer for r in rows if r is not ignored)
    with db.session() as session:
        answers = session.scalars(select(NotificationRow.status).where(NotificationRow.kind == "answer")).all()
    assert len(answers) == len(rows) - 1
    assert set(answers) == {"sent"}

    # A restart takes up after the newest recorded update: nothing is answered twice.
    sent_before, polls_before = len(fake_telegram.sent()), len(fake_telegram.offsets())
    async with leading(settings, fake_telegram):
        (status,) = await ask(fake_telegram, "/status")
        assert "Halt lifted by telegram @operator" in status
    assert fake_telegram.offsets()[polls_before] == rows[-1].update_id + 1
    assert len(fake_telegram.sent()) == sent_before + 1
