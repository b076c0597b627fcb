"""The operator's controls, pure: Telegram commands (parsing, who may send them, the close-all confirmation code),
pausing and resuming new entries, and the answers' texts (from the catalogue, ats.messages).

The monitor (monitor/telegram.py) carries updates in and answers out; tasks and db do the reading and recording.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ats.clock import format_utc
from ats.domain import Direction
from ats.emergency import CloseAllReport
from ats.messages import Language, say
from ats.notify import DailyReport, fmt_pct, fmt_price, fmt_qty, fmt_usdt
from ats.placement import LOSS_LIMIT, LedgerDay
from ats.universe import PoolResult

ZERO = Decimal(0)
HUNDRED = Decimal(100)

CODE_TTL_MS = 60_000  # a /closeall confirmation code is good for this long, once
COMMANDS = ("help", "start", "status", "positions", "daily", "pools", "pause", "resume", "closeall")


def close_all_halter(source: str) -> str:
    """Who halted the day by a close-all run from `source` (cli, flow, telegram @name)."""
    return f"close-all ({source})"


class Operations(Protocol):
    """What the bot asks of the rest of the system (tasks/operations.py does it; the monitor only carries)."""

    async def status(self) -> AccountStatus:
        """The account now, as `ats status` shows it."""
        ...

    async def daily(self) -> DailyReport:
        """Today so far, as the daily report tells a finished day."""
        ...

    async def close_all(self, reason: str, source: str) -> CloseAllReport:
        """The emergency stop, as `ats close-all` runs it (it halts the day and sends its own report)."""
        ...


# ---------------------------------------------------------------------------------------------- updates


@dataclass(frozen=True, slots=True)
class Incoming:
    """One Telegram update, as far as the bot cares: who wrote what where."""

    update_id: int
    chat_id: str
    sender: str  # @username, or the user id when there is none
    text: str


def parse_update(update: Mapping[str, Any]) -> Incoming | None:
    """The update's message, or None for an update that carries none this bot reads (it is still consumed)."""
    update_id = update.get("update_id")
    if not isinstance(update_id, int):
        return None
    message = update.get("message") or update.get("edited_message") or {}
    chat = message.get("chat") or {}
    user = message.get("from") or {}
    username = user.get("username")
    sender = f"@{username}" if username else str(user.get("id", "unknown"))
    return Incoming(update_id, str(chat.get("id", "")), sender, str(message.get("text") or ""))


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # without the slash and any @botname, lower case
    args: tuple[str, ...] = ()


def parse_command(text: str) -> Command | None:
    """`/closeall 123456` -> Command("closeall", ("123456",)); None when the text is no command."""
    words = text.strip().split()
    if not words or not words[0].startswith("/") or len(words[0]) < 2:
        return None
    return Command(words[0][1:].split("@", 1)[0].lower(), tuple(words[1:]))


def authorised(incoming: Incoming, chat_id: str | None) -> bool:
    """Only the configured chat commands the bot; everything else is ignored (and recorded)."""
    return bool(chat_id) and incoming.chat_id == str(chat_id)


# ---------------------------------------------------------------------------------------------- confirmation


def new_code(randbelow: Callable[[int], int]) -> str:
    """A six-digit one-time code (`randbelow`: secrets.randbelow, or a seeded stand-in in tests)."""
    return f"{randbelow(1_000_000):06d}"


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    issued_ms: int
    used: bool


def code_refusal(issued: IssuedCode | None, given: str, now_ms: int, language: Language) -> str | None:
    """Why `/closeall <given>` must not run (the newest code issued, if any), or None: it runs."""
    if issued is None:
        return say(language, "bot.code_unknown")
    if given != issued.code:
        return say(language, "bot.code_wrong")
    if issued.used:
        return say(language, "bot.code_used")
    if now_ms - issued.issued_ms > CODE_TTL_MS:
        return say(language, "bot.code_expired", seconds=CODE_TTL_MS // 1000)
    return None


def confirmation_request(code: str, language: Language) -> str:
    return say(language, "bot.closeall_confirm", seconds=CODE_TTL_MS // 1000, code=code)


# ---------------------------------------------------------------------------------------------- pause, resume


def pause_refusal(ledger: LedgerDay, language: Language) -> str | None:
    """Why a pause changes nothing (one is in force already), or None."""
    if ledger.halted and ledger.until_resumed:
        return say(language, "bot.already_paused", by=_e(ledger.halted_by or "?"), at=_at(ledger.halted_ms))
    return None


def resume_refusal(ledger: LedgerDay, language: Language) -> str | None:
    """Why there is nothing to lift, or why it may not be lifted (the daily loss limit's halt), or None."""
    if not ledger.halted:
        return say(language, "bot.not_halted")
    if ledger.halted_by == LOSS_LIMIT:
        return say(language, "bot.loss_limit_stays", reason=_e(ledger.halted_reason or ""))
    return None


def halt_lines(ledger: LedgerDay, language: Language) -> list[str]:
    """Whether new entries are allowed, and why not: who halted them (and when a pause began); a lift today."""
    lines = []
    if ledger.halted and ledger.until_resumed:
        lines.append(say(language, "bot.paused", by=_e(ledger.halted_by or "?"), at=_at(ledger.halted_ms)))
    elif ledger.halted:
        lines.append(
            say(language, "bot.halted", reason=_e(ledger.halted_reason or "?"), by=_e(ledger.halted_by or "?"))
        )
    if ledger.resumed_by is not None and not ledger.halted:
        lines.append(
            say(
                language,
                "bot.lifted",
                by=_e(ledger.resumed_by),
                at=_at(ledger.resumed_ms),
                reason=_e(ledger.halted_reason or "?"),
            )
        )
    return lines or [say(language, "bot.entries_allowed")]


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _at(ms: int | None) -> str:
    return format_utc(ms) if ms is not None else "?"


# ---------------------------------------------------------------------------------------------- the account


@dataclass(frozen=True, slots=True)
class PositionLine:
    symbol: str
    direction: Direction
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    leverage: int | None
    stop: Decimal | None
    tp1: str  # "waiting", "hit", "single target", "not placed yet" or "-" (not managed)
    managed: bool
    tick_size: Decimal | None = None  # the symbol's, for showing prices on its grid (None: not managed)

    @property
    def pnl_pct(self) -> Decimal:
        """Unrealised PnL in percent of the entry notional."""
        notional = self.entry_price * self.quantity
        return self.unrealized_pnl / notional * HUNDRED if notional else ZERO


@dataclass(frozen=True, slots=True)
class AccountStatus:
    time_ms: int
    wallet_balance: Decimal
    unrealized_pnl: Decimal
    margin_balance: Decimal
    available_balance: Decimal
    positions: list[PositionLine]
    max_positions: int
    pending_entries: list[str]  # symbols whose entry is recorded but not filled
    realized_today: Decimal  # net of fees and funding
    halted: str | None
    notes: list[str] = field(default_factory=list)


def status_answer(status: AccountStatus, ledger: LedgerDay, language: Language) -> str:
    lines = [
        say(
            language,
            "bot.status",
            wallet=fmt_usdt(status.wallet_balance),
            equity=fmt_usdt(status.margin_balance),
            unrealized=fmt_usdt(status.unrealized_pnl, signed=True),
            realized=fmt_usdt(status.realized_today, signed=True),
            positions=len(status.positions),
            max_positions=status.max_positions,
        ),
        *halt_lines(ledger, language),
    ]
    if status.pending_entries:
        lines.append(say(language, "bot.pending", symbols=", ".join(status.pending_entries)))
    return "\n".join(lines)


def positions_answer(positions: Sequence[PositionLine], language: Language) -> str:
    if not positions:
        return say(language, "bot.no_positions")
    lines = [say(language, "bot.positions_head", count=len(positions))]
    for p in positions:
        tick = p.tick_size
        lines.append(
            say(
                language,
                "bot.position",
                symbol=p.symbol,
                side=p.direction.value,
                qty=fmt_qty(p.quantity),
                entry=fmt_price(p.entry_price, tick),
                mark=fmt_price(p.mark_price, tick),
                pnl=fmt_usdt(p.unrealized_pnl, signed=True),
                pct=fmt_pct(p.pnl_pct),
                stop=fmt_price(p.stop, tick) if p.stop is not None else "-",
                tp1=p.tp1 if p.managed else say(language, "bot.not_managed"),
            )
        )
    return "\n".join(lines)


def pools_answer(pools: Mapping[str, PoolResult | None], language: Language, *, show: int = 20) -> str:
    """Each pool kind: its symbols (the first `show`), when it was built, or that it fell back or is missing."""
    lines = [say(language, "bot.pools_head")]
    for kind, pool in pools.items():
        if pool is None:
            lines.append(say(language, "bot.pool_none", kind=kind))
            continue
        symbols = ", ".join(pool.symbols[:show]) + (" …" if len(pool.symbols) > show else "")
        lines.append(
            say(
                language,
                "bot.pool",
                kind=kind,
                count=len(pool.symbols),
                built=format_utc(pool.built_at_ms),
                symbols=symbols or "-",
            )
        )
        if pool.fell_back:
            lines.append(say(language, "bot.pool_fell_back", kind=kind, reason=_e(pool.reason)))
    return "\n".join(lines)
