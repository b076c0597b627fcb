"""The Telegram bot of the leading monitor: getUpdates long-polling in, answers out through the outbox.

Only the leader polls (the bot runs inside the leader's term, beside the monitor), so one process answers. Each
update is recorded once in bot_commands, in the transaction that records its effect and queues its answer
(db.bot): the next poll's offset is the newest recorded update + 1, so no command is handled twice across
restarts or a change of leader. Messages from any chat but the configured one are recorded and logged, never
obeyed. What a command means and says is decided in ats.operator; reading the account and the emergency stop
are the `Operations` given (tasks/operations.py, wired by `ats monitor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session

from ats.clock import Clock
from ats.config import Settings
from ats.leadership import Fence, NotLeader
from ats.log import get_logger, redact
from ats.messages import say
from ats.notify import AnswerNote, NotifyError, TelegramNotifier, render
from ats.operator import (
    COMMANDS,
    Command,
    Incoming,
    Operations,
    authorised,
    close_all_halter,
    code_refusal,
    confirmation_request,
    new_code,
    parse_command,
    parse_update,
    pause_refusal,
    pools_answer,
    positions_answer,
    resume_refusal,
    status_answer,
)
from ats.placement import LedgerDay
from db import bot, market, risk_state
from db.journal import enqueue_notification
from db.session import Database

log = get_logger(__name__)

RETRY_S = 5.0  # after a failed getUpdates


class Runnable(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class TelegramBot:
    """Answers the configured chat's commands while `run` runs (one leader term)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        operations: Operations,
        clock: Clock,
        *,
        fence: Fence,
        deliver: Callable[[], Awaitable[int]],
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self._settings = settings
        self._account = settings.account
        self._language = settings.language
        self._database = database
        self._operations = operations
        self._clock = clock
        self._fence = fence
        self._deliver = deliver
        self._randbelow = randbelow
        self._api = TelegramNotifier(settings.telegram)
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        offset = await asyncio.to_thread(self._in_session, lambda s: bot.next_offset(s, self._account))
        log.info("telegram commands: polling", chat_id=self._settings.telegram.chat_id, offset=offset)
        try:
            while not stop.is_set():
                try:
                    updates = await _until(stop, self._api.updates(offset, self._settings.telegram.poll_s))
                except NotifyError as exc:
                    log.warning("telegram getUpdates failed; retrying", error=str(exc), in_s=RETRY_S)
                    await _pause(stop, RETRY_S)
                    continue
                if updates is None:
                    break
                for update in updates:
                    incoming = parse_update(update)
                    try:
                        if incoming is not None:
                            self._fence.check("telegram command")
                            await self.handle(incoming)
                    except NotLeader:
                        return  # the term ends; the next leader takes this update from the same offset
                    except Exception as exc:  # the database: the update is taken again once it answers
                        log.warning("cannot record a telegram update; retrying", error=str(exc), in_s=RETRY_S)
                        await _pause(stop, RETRY_S)
                        break
                    update_id = update.get("update_id")
                    if isinstance(update_id, int):
                        offset = max(offset or 0, update_id + 1)
        finally:
            for task in list(self._closing):  # an emergency stop in progress finishes (its steps are short)
                with contextlib.suppress(Exception):
                    await task
            await self._api.aclose()

    # ------------------------------------------------------------------------------------------ one update

    async def handle(self, incoming: Incoming) -> None:
        """Record the update and carry out its command, once."""
        now = self._clock.now_ms()
        if not authorised(incoming, self._settings.telegram.chat_id):
            log.warning(
                "telegram message from another chat ignored",
                chat_id=incoming.chat_id,
                sender=incoming.sender,
                update_id=incoming.update_id,
            )
            await self._ignore(incoming, now)
            return
        command = parse_command(incoming.text)
        if command is None:
            log.info("telegram message without a command ignored", update_id=incoming.update_id)
            await self._ignore(incoming, now)
            return
        log.info("telegram command", command=command.name, sender=incoming.sender, update_id=incoming.update_id)
        try:
            await self._dispatch(incoming, command, now)
        except NotLeader:
            raise
        except Exception as exc:  # the exchange, or a bug: answered, and recorded as failed
            log.exception("telegram command failed", command=command.name)
            text = say(self._language, "bot.unavailable", command=f"/{command.name}", error=_why(exc))
            await self._answer(incoming, command, now, lambda _: text, status="failed")
        with contextlib.suppress(Exception):  # what is not sent now, the outbox loop sends
            await self._deliver()

    async def _dispatch(self, incoming: Incoming, command: Command, now: int) -> None:
        language = self._language
        match command.name:
            case "status":
                status = await self._operations.status()
                ledger = await asyncio.to_thread(self._in_session, self._ledger)
                await self._answer(incoming, command, now, lambda _: status_answer(status, ledger, language))
            case "positions":
                status = await self._operations.status()
                await self._answer(incoming, command, now, lambda _: positions_answer(status.positions, language))
            case "daily":
                report = await self._operations.daily()
                await self._answer(incoming, command, now, lambda _: render(report, language))
            case "pools":
                await self._answer(incoming, command, now, self._pools)
            case "pause":
                await self._answer(incoming, command, now, lambda s: self._pause(s, incoming, now))
            case "resume":
                await self._answer(incoming, command, now, lambda s: self._resume(s, incoming, now))
            case "closeall" if not command.args:
                code = new_code(self._randbelow)
                await self._answer(incoming, command, now, lambda _: confirmation_request(code, language), code=code)
            case "closeall":
                await self._confirm_close_all(incoming, command, now)
            case name if name in COMMANDS:  # help, start
                await self._answer(incoming, command, now, lambda _: say(language, "bot.help"))
            case name:
                await self._answer(incoming, command, now, lambda _: say(language, "bot.unknown", command=f"/{name}"))

    def _ledger(self, session: Session) -> LedgerDay:
        return risk_state.ledger_day(session, self._account, self._clock.now_ms())

    def _pools(self, session: Session) -> str:
        interval = self._settings.bar_interval
        pools = {kind: market.latest_pool(session, kind, interval) for kind in ("elite", "overlay")}
        return pools_answer(pools, self._language)

    def _pause(self, session: Session, incoming: Incoming, now: int) -> str:
        ledger = risk_state.ledger_day(session, self._account, now)
        refusal = pause_refusal(ledger, self._language)
        if refusal is not None:
            return refusal
        by = f"telegram {incoming.sender}"
        risk_state.record_halt(session, self._account, now, f"paused by {by}", by=by, until_resumed=True)
        log.warning("new entries paused", by=by)
        return say(self._language, "bot.paused_now")

    def _resume(self, session: Session, incoming: Incoming, now: int) -> str:
        ledger = risk_state.ledger_day(session, self._account, now)
        refusal = resume_refusal(ledger, self._language)
        if refusal is not None:
            return refusal
        by = f"telegram {incoming.sender}"
        risk_state.record_resume(session, self._account, now, by=by, halt=ledger)
        log.warning("halt lifted", by=by, halt=ledger.halted_reason)
        return say(self._language, "bot.resumed", reason=ledger.halted_reason or "?")

    async def _confirm_close_all(self, incoming: Incoming, command: Command, now: int) -> None:
        confirmed = False

        def decide(session: Session) -> str:
            nonlocal confirmed
            refusal = code_refusal(bot.latest_code(session, self._account), command.args[0], now, self._language)
            if refusal is not None:
                return refusal
            bot.use_code(session, self._account, command.args[0])
            confirmed = True
            return say(self._language, "bot.closeall_started")

        await self._answer(incoming, command, now, decide, status=lambda: "executing" if confirmed else "answered")
        if not confirmed:
            return
        log.error("close-all confirmed on Telegram", sender=incoming.sender)
        task = asyncio.create_task(self._close_all(incoming), name="telegram-close-all")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_all(self, incoming: Incoming) -> None:
        """The emergency stop (it halts the day and sends its own report through the outbox)."""
        source = "telegram"  # the records' short source; the reason names the sender
        try:
            report = await self._operations.close_all(f"/closeall by {incoming.sender}", source)
        except Exception as exc:
            log.exception("close-all from Telegram failed")
            text = say(self._language, "bot.unavailable", command="/closeall", error=_why(exc))
            await asyncio.to_thread(self._in_session, lambda s: self._fail(s, incoming, text))
            with contextlib.suppress(Exception):
                await self._deliver()
            return
        summary = f"{close_all_halter(source)}: {report.summary()}"  # the report itself went out as an alert
        await asyncio.to_thread(self._in_session, lambda s: self._settle(s, incoming, "answered", summary))

    def _settle(self, session: Session, incoming: Incoming, status: str, answer: str) -> None:
        bot.finish(session, self._account, incoming.update_id, status=status, answer=answer)

    def _fail(self, session: Session, incoming: Incoming, text: str) -> None:
        bot.finish(session, self._account, incoming.update_id, status="failed", answer=text)
        enqueue_notification(
            session,
            self._account,
            f"bot:{incoming.update_id}:failed",
            AnswerNote("closeall", text),
            language=self._language,
        )

    # ------------------------------------------------------------------------------------------ recording

    async def _ignore(self, incoming: Incoming, now: int) -> None:
        await asyncio.to_thread(
            self._in_session,
            lambda s: bot.take(s, self._account, incoming, command=None, status="ignored", received_ms=now),
        )

    async def _answer(
        self,
        incoming: Incoming,
        command: Command,
        now: int,
        decide: Callable[[Session], str],
        *,
        status: str | Callable[[], str] = "answered",
        code: str | None = None,
    ) -> bool:
        """In one transaction: take the update (False: taken before, nothing happens), carry out `decide` (its
        effect and its answer's text), record the answer and queue it."""

        def work(session: Session) -> bool:
            if not bot.take(
                session, self._account, incoming, command=command.name, status="executing", received_ms=now, code=code
            ):
                log.info("telegram update handled before; skipped", update_id=incoming.update_id)
                return False
            text = decide(session)
            final = status() if callable(status) else status
            bot.finish(session, self._account, incoming.update_id, status=final, answer=text)
            enqueue_notification(
                session,
                self._account,
                f"bot:{incoming.update_id}",
                AnswerNote(command.name, text),
                language=self._language,
            )
            return True

        return await asyncio.to_thread(self._in_session, work)

    def _in_session(self, work: Callable[[Session], Any]) -> Any:
        with self._database.session() as session:
            return work(session)


def _why(exc: Exception) -> str:
    """An error in an answer: its kind and first line, without secrets, as Telegram HTML."""
    first = redact(str(exc)).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return html.escape(f"{type(exc).__name__}: {first}" if first else type(exc).__name__, quote=False)


async def _until(stop: asyncio.Event, work: Awaitable[Any]) -> Any:
    """`work`'s result, or None once `stop` is set first (the request is cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class WithBot:
    """One leader term: the monitor, and the bot beside it. A bot that fails is logged and the monitor goes on;
    both end with the term."""

    def __init__(self, monitor: Runnable, telegram: TelegramBot) -> None:
        self._monitor = monitor
        self._telegram = telegram

    async def run(self, stop: asyncio.Event) -> None:
        answering = asyncio.create_task(self._answer(stop), name="telegram-bot")
        try:
            await self._monitor.run(stop)
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering

    async def _answer(self, stop: asyncio.Event) -> None:
        try:
            await self._telegram.run(stop)
        except Exception:
            log.exception("the Telegram bot failed; commands are not answered until the next term")


def commands_refusal(settings: Settings, has_operations: bool) -> str | None:
    """Why the leader will not answer Telegram commands, or None: it will."""
    telegram = settings.telegram
    if not telegram.commands:
        return "ATS_TELEGRAM__COMMANDS is false"
    if telegram.token is None or not telegram.chat_id:
        return "no Telegram token and chat id are configured"
    if not has_operations:
        return "this monitor was started without the account operations"
    return None
