"""Notifications: typed payloads, their rendering as short Telegram-HTML messages, and delivery.

Rendering is pure: `render(note)` turns a payload into text; `to_plain_text` strips it for a console. Delivery is
small on purpose: a `Notifier` sends one rendered message or raises a `NotifyError`; retries, ordering and
exactly-once belong to the outbox sender, which stores each message under the dedupe key the lifecycle gives it.

The Telegram bot token lives in the request URL. It never reaches a log line (httpx's request logging is
silenced by ats.log.configure_logging, and this module logs no URL) nor an exception: errors are raised outside
the `except` block that caught httpx's exception, so neither the message nor the exception chain carries it.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol

import httpx
from pydantic import SecretStr

from ats.clock import format_utc
from ats.config import LevelSettings, RiskLimits, TelegramSettings, Venue
from ats.domain import Band, Direction, Levels, Signal, SymbolRules
from ats.log import get_logger, redact
from ats.messages import MESSAGES, Language, Text, data, say, say_text, text
from ats.risk import choose_leverage, level_prices, plan_levels

log = get_logger(__name__)

# Telegram's limit is 4096 characters after entity parsing; stay below it.
MAX_MESSAGE_CHARS = 4000


class NoteKind(StrEnum):
    """The outbox's `kind` column."""

    SIGNAL = "signal"
    ENTRY = "entry"
    TP1 = "tp1"
    TP2 = "tp2"
    STOP = "stop"
    RESULT = "result"
    ALERT = "alert"
    REPORT = "report"
    ANSWER = "answer"  # the bot's answer to a command


class ExitReason(StrEnum):
    """Why a position ended."""

    TP1 = "tp1"  # the position was too small to split; TP1 closed all of it
    TP2 = "tp2"
    STOP = "stop"
    BREAKEVEN_STOP = "breakeven_stop"  # the stop fired after TP1 (at breakeven or tighter)
    STOP_FAILED = "stop_failed"  # a stop could not be placed (e.g. -2021): closed at market
    SUPERVISION = "supervision"  # the mark crossed the stop and the exchange stop did not fire: closed at market
    REVERSAL = "reversal"  # a strong opposite signal: closed at market
    MANUAL = "manual"  # a user or an emergency close
    LIQUIDATION = "liquidation"
    EXTERNAL = "external"  # closed outside the system, or vanished from the exchange


# ---------------------------------------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class SignalPlan:
    """What an entry on the signal would carry, from the signal's price: the fill sets the final levels, and the
    risk check the size (or a refusal, told in its own message)."""

    stop: Decimal
    tp1: Decimal
    tp2: Decimal
    leverage: int


def signal_plan(signal: Signal, rules: SymbolRules, levels: LevelSettings, limits: RiskLimits) -> SignalPlan:
    """The levels and leverage the risk check would give an entry at the signal's price (the same functions)."""
    plan = plan_levels(signal.direction, signal, levels)
    stop, tp1, tp2 = level_prices(plan, signal.price, rules)
    leverage = choose_leverage(signal.strength, limits, abs(signal.price - stop) / signal.price)
    return SignalPlan(stop, tp1, tp2, leverage)


@dataclass(frozen=True, slots=True)
class SignalNote:
    symbol: str
    direction: Direction
    strength: float
    band: Band
    price: Decimal
    bar_open_time_ms: int
    factors: tuple[tuple[str, float], ...] = ()  # (name, score) in display order
    levels: Levels | None = None
    plan: SignalPlan | None = None

    @property
    def kind(self) -> NoteKind:
        return NoteKind.SIGNAL


def signal_note(
    signal: Signal, levels: Levels | None = None, *, plan: SignalPlan | None = None, top: int = 6
) -> SignalNote:
    """The message payload for a signal: its `top` factors by magnitude, strongest first."""
    finite = [(name, score) for name, score in signal.factors.items() if math.isfinite(score)]
    strongest = sorted(finite, key=lambda item: (-abs(item[1]), item[0]))[:top]
    return SignalNote(
        symbol=signal.symbol,
        direction=signal.direction,
        strength=signal.strength,
        band=signal.band,
        price=signal.price,
        bar_open_time_ms=signal.bar_open_time_ms,
        factors=tuple(strongest),
        levels=levels,
        plan=plan,
    )


@dataclass(frozen=True, slots=True)
class EntryNote:
    symbol: str
    direction: Direction
    quantity: Decimal
    entry_price: Decimal
    leverage: int
    strength: float
    band: Band
    levels: Levels
    fees: Decimal

    @property
    def kind(self) -> NoteKind:
        return NoteKind.ENTRY


@dataclass(frozen=True, slots=True)
class TakeProfitNote:
    """TP1 filled and the rest of the position is still open (its stop moved to breakeven)."""

    symbol: str
    direction: Direction
    quantity: Decimal
    price: Decimal
    entry_price: Decimal
    pnl: Decimal  # this leg, after its fees
    remaining_qty: Decimal
    new_stop: Decimal

    @property
    def kind(self) -> NoteKind:
        return NoteKind.TP1


@dataclass(frozen=True, slots=True)
class ResultNote:
    """A closed position: the one message a close sends, whatever closed it."""

    symbol: str
    direction: Direction
    reason: ExitReason
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    gross_pnl: Decimal
    fees: Decimal
    funding: Decimal  # signed: positive received
    net_pnl: Decimal
    leverage: int
    opened_ms: int
    closed_ms: int
    estimated: bool = False  # part of the exit price is an estimate (the position vanished)
    detail: Text | None = None  # why it was closed, when the reason alone does not say

    @property
    def kind(self) -> NoteKind:
        if self.reason is ExitReason.TP2:
            return NoteKind.TP2
        if self.reason in (ExitReason.STOP, ExitReason.BREAKEVEN_STOP):
            return NoteKind.STOP
        return NoteKind.RESULT

    @property
    def pnl_pct(self) -> Decimal:
        """Net PnL in percent of the entry notional."""
        notional = self.entry_price * self.quantity
        return self.net_pnl / notional * 100 if notional else Decimal(0)


@dataclass(frozen=True, slots=True)
class AlertNote:
    """Something a person must know: what, told in the configured language when it is queued (ats.messages.Text)."""

    title: Text
    detail: tuple[Text, ...] = ()  # sentences, told in order
    symbol: str | None = None
    severity: Literal["notice", "warning", "critical", "recovered"] = "warning"

    @property
    def kind(self) -> NoteKind:
        """A notice follows up a signal (nothing is wrong: it was refused by the limits); the rest are alerts."""
        return NoteKind.SIGNAL if self.severity == "notice" else NoteKind.ALERT


CRITICAL_FLOWS = frozenset({"close-all"})  # a failed emergency stop may leave positions open


def flow_run_alert(flow: str, run_name: str, state: str, reason: str | None, where: str) -> AlertNote:
    """A flow run that did not complete, as one alert: the flow, how it ended, why, and where to look.

    `state` is the state's name or type (TimedOut, FAILED, CRASHED, CANCELLED); `where` a link or the run's id.
    """
    outcome = text(f"run.{state}") if f"run.{state}" in MESSAGES else state.lower()
    severity: Literal["warning", "critical"] = "critical" if flow in CRITICAL_FLOWS else "warning"
    why = data(reason) if reason else text("run.no_reason")
    return AlertNote(
        text("run.ended", flow=flow, outcome=outcome),
        (text("run.detail", reason=why, run=run_name, where=where),),
        severity=severity,
    )


@dataclass(frozen=True, slots=True)
class OpenPositionLine:
    symbol: str
    direction: Direction
    quantity: Decimal
    entry_price: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class DailyReport:
    day: str  # YYYY-MM-DD, UTC
    wallet_balance: Decimal
    equity: Decimal
    realized_pnl: Decimal  # gross, closed today
    fees: Decimal
    funding: Decimal  # signed
    trades: int
    wins: int
    losses: int
    open_positions: tuple[OpenPositionLine, ...] = ()
    halted: Text | None = None  # why new entries were halted that day (the daily loss limit, a close-all, ...)
    lifted: Text | None = None  # who lifted that halt, and when
    notes: tuple[Text, ...] = ()

    @property
    def kind(self) -> NoteKind:
        return NoteKind.REPORT

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees + self.funding


@dataclass(frozen=True, slots=True)
class AnswerNote:
    """The bot's answer to a person's command, rendered already (ats.operator builds it)."""

    command: str
    text: str

    @property
    def kind(self) -> NoteKind:
        return NoteKind.ANSWER


Notification = SignalNote | EntryNote | TakeProfitNote | ResultNote | AlertNote | DailyReport | AnswerNote


# ---------------------------------------------------------------------------------------------- formatting

_CENT = Decimal("0.01")


_MAX_DECIMALS = 8  # exchange prices and quantities never have more; computed averages can have 28


def fmt_decimal(value: Decimal) -> str:
    """Digits without an exponent, keeping the value's own precision (a price keeps its tick's decimals);
    a computed value (an average fill price) is cut to 8 significant digits."""
    if not value.is_finite():
        return str(value)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        value = Decimal(format(value, f".{_MAX_DECIMALS}g")).normalize()
    return format(abs(value) if value == 0 else value, "f")


def fmt_price(value: Decimal, tick: Decimal | None) -> str:
    """A price on the symbol's tick grid, with as many decimals as the tick has (a mark price comes with 8, a
    level stored at the tick's full precision with trailing zeros); without a tick, as fmt_decimal does."""
    if tick is None or tick <= 0 or not value.is_finite():
        return fmt_decimal(value)
    exponent = tick.normalize().as_tuple().exponent
    places = Decimal(1).scaleb(min(exponent, 0) if isinstance(exponent, int) else 0)
    return fmt_decimal(((value / tick).to_integral_value(ROUND_HALF_EVEN) * tick).quantize(places))


def fmt_qty(value: Decimal) -> str:
    """A quantity without trailing zeros or exponent: 0.010 -> 0.01, 1E+2 -> 100."""
    return fmt_decimal(value.normalize()) if value.is_finite() and value != 0 else fmt_decimal(value)


def fmt_usdt(value: Decimal, *, signed: bool = False) -> str:
    """Money to the cent with thousands separators; `signed` always shows the sign."""
    cents = value.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    if cents == 0:
        cents = abs(cents)
    return format(cents, "+,.2f" if signed else ",.2f")


def fmt_pct(value: Decimal) -> str:
    cents = value.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    return format(abs(cents) if cents == 0 else cents, "+.2f") + " %"


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _side(direction: Direction, language: Language) -> str:
    return say(language, f"side.{direction.value}")


def _strength(strength: float, band: Band, language: Language) -> str:
    return f"{strength:.0f} ({say(language, f'band.{band.value}')})"


def _distance(price: Decimal, entry: Decimal) -> str:
    return fmt_pct((price - entry) / entry * 100) if entry else ""


def _duration(ms: int, language: Language) -> str:
    minutes = max(ms, 0) // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return say(language, "duration.days", days=days, hours=hours)
    if hours:
        return say(language, "duration.hours", hours=hours, minutes=mins)
    return say(language, "duration.minutes", minutes=mins)


def _levels_lines(levels: Levels, language: Language) -> list[str]:
    lines = [say(language, "levels.stop", price=fmt_decimal(levels.stop), pct=_distance(levels.stop, levels.entry))]
    if levels.single_target:
        lines.append(
            say(
                language,
                "levels.single",
                price=fmt_decimal(levels.tp1),
                pct=_distance(levels.tp1, levels.entry),
                qty=fmt_qty(levels.tp1_qty),
            )
        )
    else:
        for name, price, qty in (("TP1", levels.tp1, levels.tp1_qty), ("TP2", levels.tp2, levels.tp2_qty)):
            lines.append(
                say(
                    language,
                    "levels.target",
                    name=name,
                    price=fmt_decimal(price),
                    pct=_distance(price, levels.entry),
                    qty=fmt_qty(qty),
                )
            )
    if levels.adjustments:
        lines.append(say(language, "levels.adjusted", what=_e(", ".join(levels.adjustments))))
    return lines


# ---------------------------------------------------------------------------------------------- rendering
# Every text comes from the catalogue (ats.messages) in the configured language; only values are filled in.


def render_signal(note: SignalNote, language: Language) -> str:
    lines = [
        say(
            language,
            "signal.head",
            symbol=_e(note.symbol),
            side=_side(note.direction, language),
            strength=_strength(note.strength, note.band, language),
        ),
        say(language, "signal.price", price=fmt_decimal(note.price), bar=format_utc(note.bar_open_time_ms)),
    ]
    if note.levels is not None:
        lines.extend(_levels_lines(note.levels, language))
    elif note.plan is not None:
        p = note.plan
        lines.append(
            say(
                language,
                "signal.plan",
                stop=fmt_decimal(p.stop),
                stop_pct=_distance(p.stop, note.price),
                tp1=fmt_decimal(p.tp1),
                tp1_pct=_distance(p.tp1, note.price),
                tp2=fmt_decimal(p.tp2),
                tp2_pct=_distance(p.tp2, note.price),
                leverage=p.leverage,
            )
        )
    if note.factors:
        factors = " · ".join(f"{_e(name)} {score:+.0f}" for name, score in note.factors)
        lines.append(say(language, "signal.factors", factors=factors))
    return "\n".join(lines)


def render_entry(note: EntryNote, language: Language) -> str:
    notional = note.quantity * note.entry_price
    return "\n".join(
        [
            say(
                language,
                "entry.head",
                side=_side(note.direction, language),
                symbol=_e(note.symbol),
                strength=_strength(note.strength, note.band, language),
            ),
            say(
                language,
                "entry.size",
                qty=fmt_qty(note.quantity),
                price=fmt_decimal(note.entry_price),
                notional=fmt_usdt(notional),
                leverage=note.leverage,
            ),
            *_levels_lines(note.levels, language),
        ]
    )


def render_take_profit(note: TakeProfitNote, language: Language) -> str:
    notional = note.quantity * note.entry_price
    pct = note.pnl / notional * 100 if notional else Decimal(0)
    return "\n".join(
        [
            say(
                language,
                "tp1.head",
                symbol=_e(note.symbol),
                direction=note.direction.value,
                qty=fmt_qty(note.quantity),
                price=fmt_decimal(note.price),
            ),
            say(language, "tp1.pnl", pnl=fmt_usdt(note.pnl, signed=True), pct=fmt_pct(pct)),
            say(language, "tp1.stop", stop=fmt_decimal(note.new_stop), left=fmt_qty(note.remaining_qty)),
        ]
    )


def render_result(note: ResultNote, language: Language) -> str:
    icon = {
        NoteKind.TP2: "🎯",
        NoteKind.STOP: "🛑",
    }.get(note.kind, "🚨" if note.reason is ExitReason.LIQUIDATION else "🏁")
    margin = note.entry_price * note.quantity / note.leverage if note.leverage else Decimal(0)
    roe = say(language, "result.roe", roe=fmt_pct(note.net_pnl / margin * 100)) if margin else ""
    approx = "≈" if note.estimated else ""
    lines = [
        say(
            language,
            "result.head",
            icon=icon,
            symbol=_e(note.symbol),
            direction=note.direction.value,
            exit=say(language, f"exit.{note.reason.value}"),
        ),
        say(
            language,
            "result.prices",
            entry=fmt_decimal(note.entry_price),
            approx=approx,
            exit=fmt_decimal(note.exit_price),
            qty=fmt_qty(note.quantity),
        ),
        say(
            language,
            "result.net",
            approx=approx,
            net=fmt_usdt(note.net_pnl, signed=True),
            pct=fmt_pct(note.pnl_pct),
            roe=roe,
        ),
        say(
            language,
            "result.costs",
            gross=fmt_usdt(note.gross_pnl, signed=True),
            fees=fmt_usdt(-note.fees, signed=True),
            funding=fmt_usdt(note.funding, signed=True),
        ),
        say(language, "result.held", duration=_duration(note.closed_ms - note.opened_ms, language)),
    ]
    if note.detail is not None:
        lines.append(f"<i>{_e(say_text(language, note.detail))}</i>")
    return "\n".join(lines)


def alert_text(note: AlertNote, language: Language) -> tuple[str, str]:
    """The alert's title and detail in `language`, as plain text."""
    return say_text(language, note.title), " ".join(say_text(language, sentence) for sentence in note.detail)


def render_alert(note: AlertNote, language: Language) -> str:
    where = f" {_e(note.symbol)}" if note.symbol else ""
    title, detail = alert_text(note, language)
    head = say(language, f"alert.{note.severity}", where=where, title=_e(title))
    return f"{head}\n{_e(detail)}" if detail else head


def render_daily_report(note: DailyReport, language: Language) -> str:
    lines = [
        say(language, "report.head", day=_e(note.day)),
        say(
            language,
            "report.net",
            net=fmt_usdt(note.net_pnl, signed=True),
            trades=note.trades,
            wins=note.wins,
            losses=note.losses,
        ),
        say(
            language,
            "report.realised",
            realized=fmt_usdt(note.realized_pnl, signed=True),
            fees=fmt_usdt(-note.fees, signed=True),
            funding=fmt_usdt(note.funding, signed=True),
        ),
        say(language, "report.balance", balance=fmt_usdt(note.wallet_balance), equity=fmt_usdt(note.equity)),
    ]
    if note.halted is not None:
        lines.append(say(language, "report.halted", reason=_e(say_text(language, note.halted))))
    if note.lifted is not None:
        lines.append(say(language, "report.lifted", who=_e(say_text(language, note.lifted))))
    if note.open_positions:
        lines.append(say(language, "report.open", count=len(note.open_positions)))
        lines.extend(
            say(
                language,
                "report.position",
                symbol=_e(p.symbol),
                direction=p.direction.value,
                qty=fmt_qty(p.quantity),
                price=fmt_decimal(p.entry_price),
                pnl=fmt_usdt(p.unrealized_pnl, signed=True),
            )
            for p in note.open_positions
        )
    else:
        lines.append(say(language, "report.no_positions"))
    lines.extend(f"<i>{_e(say_text(language, n))}</i>" for n in note.notes)
    return "\n".join(lines)


def render(note: Notification, language: Language) -> str:
    """The Telegram-HTML message for any notification payload, in `language`."""
    match note:
        case SignalNote():
            return render_signal(note, language)
        case EntryNote():
            return render_entry(note, language)
        case TakeProfitNote():
            return render_take_profit(note, language)
        case ResultNote():
            return render_result(note, language)
        case AlertNote():
            return render_alert(note, language)
        case DailyReport():
            return render_daily_report(note, language)
        case AnswerNote():
            return note.text


_TAG_RE = re.compile(r"</?[a-z]+>")


def to_plain_text(message: str) -> str:
    """A rendered message without its HTML tags and entities, for consoles and logs."""
    return html.unescape(_TAG_RE.sub("", message))


def signal_dedupe_key(symbol: str, bar_open_time_ms: int) -> str:
    """The outbox key that makes a signal notify once, however often the scan that found it is rerun
    (the outbox prefixes every key with the account)."""
    return f"signal:{symbol}:{bar_open_time_ms}"


# ---------------------------------------------------------------------------------------------- delivery


class NotifyError(Exception):
    """A message was not delivered. The text never contains the bot token or a request URL.

    The class says whether to retry: NotifyUnavailable (later) or NotifyRejected (never)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotifyUnavailable(NotifyError):
    """The service could not be reached or asked to wait (network, timeout, 5xx, 429): retry later."""


class NotifyRejected(NotifyError):
    """The service refused the message for good (bad token, unknown chat, malformed text): retrying won't help."""


class Notifier(Protocol):
    async def send(self, message: str) -> None:
        """Deliver one rendered (Telegram-HTML) message; raise NotifyError when it was not delivered."""
        ...

    async def aclose(self) -> None: ...


def _fit(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut an over-long message at a line break (every rendered line closes its own tags)."""
    if len(message) <= limit:
        return message
    cut = message.rfind("\n", 0, limit - 2)
    return message[: cut if cut > 0 else limit - 2] + "\n…"


class TelegramNotifier:
    """Bot API sendMessage over httpx. `settings.api_url` may point at a local server in tests."""

    def __init__(
        self,
        settings: TelegramSettings,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.token is None or not settings.chat_id:
            raise ValueError("TelegramNotifier needs telegram.token and telegram.chat_id")
        self._token: SecretStr = settings.token
        self._chat_id = settings.chat_id
        self._api_url = settings.api_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    def __repr__(self) -> str:
        return f"TelegramNotifier(api_url={self._api_url!r}, chat_id={self._chat_id!r})"

    def _clean(self, text: str) -> str:
        return redact(text).replace(self._token.get_secret_value(), "**********")

    async def send(self, message: str) -> None:
        payload: dict[str, Any] = {
            "chat_id": self._chat_id,
            "text": _fit(message),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        await self._call("sendMessage", payload)

    async def _call(self, method: str, payload: dict[str, Any] | None = None, timeout_s: float | None = None) -> Any:
        """One Bot API call (POST with a JSON body, GET without); its checked `result`. NotifyError otherwise."""
        url = f"{self._api_url}/bot{self._token.get_secret_value()}/{method}"
        failure: NotifyError | None = None
        response: httpx.Response | None = None
        try:
            if payload is None:
                response = await self._client.get(url)
            else:
                timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
                response = await self._client.post(url, json=payload, timeout=timeout)
        except httpx.TimeoutException:
            failure = NotifyUnavailable(f"telegram: {method} timed out")
        except httpx.HTTPError as exc:
            failure = NotifyUnavailable(f"telegram: {type(exc).__name__}")
        # Raised here, outside the except blocks: no chained httpx exception (which holds the URL) travels along.
        if failure is not None:
            raise failure
        assert response is not None
        self._check(response)
        return response.json().get("result")

    async def whoami(self) -> str:
        """The bot's @username by getMe: proof that the API answers and takes the token (sends nothing)."""
        result = await self._call("getMe")
        username = result.get("username") if isinstance(result, dict) else None
        return f"@{username}" if username else "a bot without a username"

    async def updates(self, offset: int | None, wait_s: float) -> list[dict[str, Any]]:
        """getUpdates, long-polling up to `wait_s`: the messages sent to the bot from `offset` on (each earlier
        update is confirmed to Telegram and never comes again)."""
        query: dict[str, Any] = {"timeout": int(wait_s), "allowed_updates": ["message"]}
        if offset is not None:
            query["offset"] = offset
        result = await self._call("getUpdates", query, timeout_s=wait_s + 10)
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    def _check(self, response: httpx.Response) -> None:
        try:
            body: Any = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code == 200 and body.get("ok") is True:
            return
        description = self._clean(str(body.get("description") or response.reason_phrase or "no description"))
        status = response.status_code
        if status == 429:
            parameters = body.get("parameters")
            retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
            wait = float(retry_after) if isinstance(retry_after, int | float) else None
            raise NotifyUnavailable(f"telegram: rate limited (HTTP 429): {description}", retry_after_s=wait)
        if status >= 500 or status == 200:
            raise NotifyUnavailable(f"telegram: HTTP {status}: {description}")
        if status in (401, 404):
            raise NotifyRejected(f"telegram: the bot token was refused (HTTP {status}); check telegram.token")
        raise NotifyRejected(f"telegram: HTTP {status}: {description}")

    async def aclose(self) -> None:
        await self._client.aclose()


def venue_marked(message: str, venue: Venue) -> str:
    """The message as it leaves: led by its venue unless it is mainnet, so a phone that receives messages from a
    paper-trading setup and a live one never mistakes one for the other."""
    if venue is Venue.MAINNET:
        return message
    return f"<b>[{venue.value.upper()}]</b> {message}"


class LoggedNotifier:
    """Every message, marked with its venue, goes to the log as it is sent (through Telegram when one is configured).

    The log line is what a person reads without Telegram: the terminal of an `ats` command, the Prefect run page
    of the flow that sent it (the `ats` logger is one of Prefect's extra loggers), the monitor's journal.
    """

    def __init__(self, telegram: TelegramNotifier | None, venue: Venue) -> None:
        self._telegram = telegram
        self._venue = venue

    def __repr__(self) -> str:
        return f"LoggedNotifier({self._telegram!r}, venue={self._venue.value!r})"

    async def send(self, message: str) -> None:
        marked = venue_marked(message, self._venue)
        if self._telegram is not None:
            await self._telegram.send(marked)
        where = "sent to Telegram" if self._telegram is not None else "notification (no Telegram configured)"
        log.stdlib.info("%s:\n%s", where, to_plain_text(marked))

    async def aclose(self) -> None:
        if self._telegram is not None:
            await self._telegram.aclose()


def make_notifier(settings: TelegramSettings, *, venue: Venue) -> LoggedNotifier:
    """Telegram when a token and chat id are configured; the log either way."""
    if settings.token is not None and settings.chat_id:
        return LoggedNotifier(TelegramNotifier(settings), venue)
    return LoggedNotifier(None, venue)
