"""Notification rendering (content, formatting, valid Telegram HTML) and delivery against a loopback Bot API."""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal as D
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from ats.config import RiskLimits, TelegramSettings, Venue
from ats.domain import Band, Direction, Levels, Signal
from ats.log import configure_logging
from ats.messages import data, text
from ats.notify import (
    MAX_MESSAGE_CHARS,
    AlertNote,
    DailyReport,
    EntryNote,
    ExitReason,
    LoggedNotifier,
    NoteKind,
    Notification,
    NotifyRejected,
    NotifyUnavailable,
    OpenPositionLine,
    ResultNote,
    SignalNote,
    TakeProfitNote,
    TelegramNotifier,
    fmt_decimal,
    fmt_pct,
    fmt_price,
    fmt_qty,
    fmt_usdt,
    make_notifier,
    render,
    signal_dedupe_key,
    signal_note,
    signal_plan,
    to_plain_text,
    venue_marked,
)

TOKEN = "987654321:AAH-SENTINELbotTOKENsentinel0042"
LONG, SHORT = Direction.LONG, Direction.SHORT
LEVELS = Levels(
    entry=D("100.00"),
    stop=D("98.00"),
    tp1=D("104.00"),
    tp2=D("108.00"),
    tp1_qty=D("0.500"),
    tp2_qty=D("0.500"),
    adjustments=("strong signal", "good liquidity"),
)


def result(reason: ExitReason = ExitReason.TP2, **overrides: Any) -> ResultNote:
    values: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "direction": LONG,
        "reason": reason,
        "quantity": D("1.000"),
        "entry_price": D("100.00"),
        "exit_price": D("106.00"),
        "gross_pnl": D("6.000"),
        "fees": D("0.103"),
        "funding": D("-0.02"),
        "net_pnl": D("5.877"),
        "leverage": 5,
        "opened_ms": 0,
        "closed_ms": (5 * 60 + 12) * 60_000,
    }
    values.update(overrides)
    return ResultNote(**values)


NOTES: list[Notification] = [
    SignalNote("BTCUSDT", LONG, 82.4, Band.STRONG, D("90000.0"), 1_767_225_600_000, (("T", 62.0), ("M", -3.5)), LEVELS),
    EntryNote("BTCUSDT", LONG, D("1.000"), D("100.00"), 5, 82.0, Band.STRONG, LEVELS, D("0.05")),
    TakeProfitNote("BTCUSDT", LONG, D("0.500"), D("104.00"), D("100.00"), D("1.974"), D("0.500"), D("100.21")),
    result(),
    AlertNote(
        text("lifecycle.stop_rejected"), (data("[-2021] Order would immediately trigger."),), "BTCUSDT", "critical"
    ),
    DailyReport(
        "2026-01-01",
        D("10120.5"),
        D("10180"),
        D("130"),
        D("10.2"),
        D("0.7"),
        5,
        3,
        2,
        (OpenPositionLine("ETHUSDT", SHORT, D("0.10"), D("3000.5"), D("12")),),
    ),
]


class TelegramHTML(HTMLParser):
    """Checks a message uses only tags Telegram accepts, balanced within each line."""

    ALLOWED = frozenset({"b", "i", "code"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.ALLOWED, tag
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack
        assert self.stack.pop() == tag


def assert_valid_html(message: str) -> None:
    for line in message.split("\n"):
        parser = TelegramHTML()
        parser.feed(line)
        parser.close()
        assert parser.stack == [], line


# ---------------------------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("1E+2"), "100"),
        (D("1E-7"), "0.0000001"),
        (D("-0"), "0"),
        (D("90000.0"), "90000.0"),
        (D("0.00010"), "0.00010"),
        (D("254.5624015748031496062992126"), "254.5624"),  # an average fill price: 8 significant digits
        (D("0.000012345678912345"), "0.000012345679"),
    ],
)
def test_decimals_never_use_exponents(value: D, text: str) -> None:
    assert fmt_decimal(value) == text


def test_quantities_money_and_percentages() -> None:
    assert fmt_qty(D("0.010")) == "0.01"
    assert fmt_qty(D("1E+2")) == "100"
    assert fmt_qty(D("0")) == "0"
    assert fmt_usdt(D("1234.565")) == "1,234.56"
    assert fmt_usdt(D("-0.001"), signed=True) == "+0.00"
    assert fmt_usdt(D("-12.5"), signed=True) == "-12.50"
    assert fmt_pct(D("1.235")) == "+1.24 %"
    assert fmt_pct(D("-0.004")) == "+0.00 %"


# ---------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("note", NOTES, ids=lambda n: type(n).__name__)
def test_every_message_is_valid_telegram_html_and_short(note: Notification) -> None:
    message = render(note, "en")
    assert_valid_html(message)
    assert len(message) < 1000
    assert "E+" not in message
    assert "E-" not in message
    assert "<" not in to_plain_text(message)


def test_signal_message() -> None:
    message = render(NOTES[0], "en")
    assert "Signal BTCUSDT" in message
    assert "LONG" in message
    assert "82 (strong)" in message
    assert "90000.0" in message
    assert "2026-01-01 00:00 UTC" in message
    assert "T +62 · M -4" in message
    assert "Stop 98.00 (-2.00 %)" in message


def test_signal_note_shows_the_strongest_factors() -> None:
    signal = Signal(
        "ETHUSDT",
        SHORT,
        91.0,
        Band.VERY_STRONG,
        0,
        D("3000.5"),
        factors={"T": -70.0, "M": -20.0, "C": 5.0, "O": float("nan"), "B": 30.0, "S": 80.0},
    )
    note = signal_note(signal, top=3)
    assert note.factors == (("S", 80.0), ("T", -70.0), ("B", 30.0))
    assert note.kind is NoteKind.SIGNAL
    assert "S +80 · T -70 · B +30" in render(note, "en")
    assert "91 (very strong)" in render(note, "en")


@pytest.mark.parametrize(("direction", "strength"), [(LONG, 75.0), (SHORT, 92.0)])
def test_the_signal_message_shows_the_plan_the_risk_check_would_give(direction: Direction, strength: float) -> None:
    from tests.unit.test_risk import RULES, SETTINGS, approve, make_signal, snapshot

    signal = make_signal(direction, strength=strength, liquidity=80.0)
    plan = signal_plan(signal, RULES, SETTINGS, RiskLimits())
    order = approve(signal, snapshot("10000")).order  # at the signal's price, as the plan
    assert (plan.stop, plan.tp1, plan.tp2, plan.leverage) == (
        order.levels.stop,
        order.levels.tp1,
        order.levels.tp2,
        order.leverage,
    )
    message = to_plain_text(render(signal_note(signal, plan=plan), "en"))
    sign = "-" if direction is LONG else "+"
    assert f"Plan: stop {plan.stop} ({sign}" in message
    assert f"TP1 {plan.tp1} (" in message
    assert f"TP2 {plan.tp2} (" in message
    assert message.rstrip().endswith(f"x{plan.leverage}") or f"· x{plan.leverage}" in message


def test_entry_message() -> None:
    message = to_plain_text(render(NOTES[1], "en"))
    assert "LONG BTCUSDT entered · 82 (strong)" in message
    assert "Qty 1 @ 100.00 · 100.00 USDT · x5" in message
    assert "Stop 98.00 (-2.00 %)" in message
    assert "TP1 104.00 (+4.00 %) · 0.5" in message
    assert "TP2 108.00 (+8.00 %) · 0.5" in message
    assert "Adjusted for strong signal, good liquidity" in message


def test_entry_message_says_when_there_is_one_target() -> None:
    single = Levels(D("100"), D("98"), D("104"), D("108"), D("0.001"), D("0"), single_target=True)
    note = EntryNote("BTCUSDT", SHORT, D("0.001"), D("100"), 3, 75.0, Band.GOOD, single, D("0"))
    message = to_plain_text(render(note, "en"))
    assert "SHORT" in message
    assert "too small to split" in message
    assert "TP2" not in message


def test_take_profit_message() -> None:
    message = to_plain_text(render(NOTES[2], "en"))
    assert message.splitlines() == [
        "🎯 TP1 BTCUSDT LONG · 0.5 @ 104.00",
        "PnL +1.97 USDT (+3.95 %)",
        "Stop moved to 100.21 (breakeven) · 0.5 left",
    ]


def test_result_message() -> None:
    message = to_plain_text(render(result(), "en"))
    assert message.splitlines() == [
        "🎯 BTCUSDT LONG TP2 hit",
        "Entry 100.00 → exit 106.00 · qty 1",
        "Net +5.88 USDT (+5.88 %, ROE +29.38 %)",
        "Gross +6.00 · fees -0.10 · funding -0.02",
        "Held 5h 12m",
    ]


@pytest.mark.parametrize(
    ("reason", "kind", "headline"),
    [
        (ExitReason.TP2, NoteKind.TP2, "TP2 hit"),
        (ExitReason.STOP, NoteKind.STOP, "stopped out"),
        (ExitReason.BREAKEVEN_STOP, NoteKind.STOP, "stopped after TP1"),
        (ExitReason.TP1, NoteKind.RESULT, "TP1 hit"),
        (ExitReason.STOP_FAILED, NoteKind.RESULT, "stop could not be placed"),
        (ExitReason.SUPERVISION, NoteKind.RESULT, "exchange stop did not fire"),
        (ExitReason.REVERSAL, NoteKind.RESULT, "reversal"),
        (ExitReason.MANUAL, NoteKind.RESULT, "on request"),
        (ExitReason.LIQUIDATION, NoteKind.RESULT, "LIQUIDATED"),
        (ExitReason.EXTERNAL, NoteKind.RESULT, "outside the system"),
    ],
)
def test_result_kind_and_headline_per_exit_reason(reason: ExitReason, kind: NoteKind, headline: str) -> None:
    note = result(reason, net_pnl=D("-2.5"), detail=data("why <it> closed"))
    assert note.kind is kind
    message = render(note, "en")
    assert headline in message
    assert "Net -2.50 USDT" in message
    assert "why &lt;it&gt; closed" in message


def test_estimated_result_is_marked() -> None:
    message = render(result(ExitReason.EXTERNAL, estimated=True), "en")
    assert "exit ≈106.00" in message
    assert "Net ≈+5.88" in message


def test_alert_escapes_exchange_text() -> None:
    message = render(AlertNote(text("lifecycle.tp_rejected", leg="T2"), (data("<script> & co"),), "BTC<USDT"), "en")
    assert message.startswith("⚠️ <b>Alert BTC&lt;USDT</b>")
    assert "&lt;script&gt; &amp; co" in message
    assert render(AlertNote(text("lifecycle.close_failed"), severity="critical"), "en").startswith("🚨")


def test_daily_report() -> None:
    message = to_plain_text(render(NOTES[5], "en"))
    assert "Daily report 2026-01-01" in message
    assert "Net +120.50 USDT · 5 trades (3 won, 2 lost)" in message
    assert "Balance 10,120.50 · equity 10,180.00 USDT" in message
    assert "ETHUSDT SHORT 0.1 @ 3000.5 · uPnL +12.00" in message
    reason = "daily loss -52.10 USDT (realised -40.00, unrealised -12.10) reached the limit of 50.00 USDT"
    halted = DailyReport("2026-01-02", D(1), D(1), D(-5), D(0), D(0), 1, 0, 1, halted=data(reason))
    text = to_plain_text(render(halted, "en"))
    assert f"⛔ New entries halted: {reason}" in text
    assert "No open positions" in text
    closed = DailyReport(
        "2026-01-03", D(1), D(1), D(35), D(0), D(0), 2, 2, 0, halted=data("close-all: end of the week")
    )
    assert "New entries halted: close-all: end of the week" in to_plain_text(render(closed, "en"))  # a winning day


def test_kinds_match_the_outbox_vocabulary() -> None:
    assert [n.kind.value for n in NOTES] == ["signal", "entry", "tp1", "tp2", "alert", "report"]
    assert signal_dedupe_key("BTCUSDT", 5) == "signal:BTCUSDT:5"


# ---------------------------------------------------------------------------------------------- delivery


@dataclass
class BotApi:
    """A loopback stand-in for api.telegram.org: records requests, answers from a script."""

    url: str
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    replies: list[tuple[int, bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hold: bool = False


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here, not an error worth a traceback."""


@pytest.fixture
def bot_api() -> Iterator[BotApi]:
    api = BotApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            api.requests.append((self.path, json.loads(body)))
            if api.hold:
                api.release.wait(5)
            status, payload = api.replies.pop(0) if api.replies else (200, b'{"ok":true,"result":{}}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            api.requests.append((self.path, {}))
            me = b'{"ok":true,"result":{"username":"ats_bot"}}'
            status, payload = api.replies.pop(0) if api.replies else (200, me)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            return None

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield api
    api.release.set()
    server.shutdown()
    server.server_close()


def telegram(url: str, **kw: Any) -> TelegramNotifier:
    return TelegramNotifier(TelegramSettings(token=SecretStr(TOKEN), chat_id="-100123", api_url=url), **kw)


def assert_clean(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert TOKEN not in text
    assert TOKEN not in repr(exc)
    assert "/bot" not in str(exc)
    assert exc.__cause__ is None
    assert exc.__context__ is None


async def test_sends_html_to_the_bot_api(bot_api: BotApi) -> None:
    notifier = telegram(bot_api.url)
    await notifier.send(render(NOTES[1], "en"))
    await notifier.aclose()
    ((path, body),) = bot_api.requests
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body == {
        "chat_id": "-100123",
        "text": render(NOTES[1], "en"),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    assert TOKEN not in repr(notifier)


async def test_long_messages_are_cut_at_a_line_break(bot_api: BotApi) -> None:
    notifier = telegram(bot_api.url)
    await notifier.send("\n".join(f"<b>line {i}</b>" for i in range(1000)))
    await notifier.aclose()
    text = bot_api.requests[0][1]["text"]
    assert len(text) <= MAX_MESSAGE_CHARS
    assert text.endswith("</b>\n…")
    assert_valid_html(text)


@pytest.mark.parametrize(
    ("status", "payload", "error", "fragment"),
    [
        (429, b'{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":7}}',
         NotifyUnavailable, "rate limited"),
        (500, b'{"ok":false,"error_code":500,"description":"Internal Server Error"}', NotifyUnavailable, "HTTP 500"),
        (502, b"<html>bad gateway</html>", NotifyUnavailable, "HTTP 502"),
        (400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}', NotifyRejected,
         "chat not found"),
        (401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}', NotifyRejected, "token was refused"),
        (404, b'{"ok":false,"error_code":404,"description":"Not Found"}', NotifyRejected, "token was refused"),
        (200, b'{"ok":false,"description":"odd"}', NotifyUnavailable, "odd"),
        (400, f'{{"ok":false,"description":"echo {TOKEN}"}}'.encode(), NotifyRejected, "echo"),
    ],
)  # fmt: skip
async def test_failures_raise_typed_errors_without_the_token(
    bot_api: BotApi, status: int, payload: bytes, error: type[Exception], fragment: str
) -> None:
    bot_api.replies.append((status, payload))
    notifier = telegram(bot_api.url)
    with pytest.raises(error) as caught:
        await notifier.send("hello")
    await notifier.aclose()
    assert fragment in str(caught.value)
    assert_clean(caught.value)
    assert isinstance(caught.value, NotifyRejected) is (error is NotifyRejected)  # what the outbox retries on
    if status == 429:
        assert caught.value.retry_after_s == 7  # type: ignore[attr-defined]


async def test_unreachable_server_is_retryable_and_clean() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    notifier = telegram(f"http://127.0.0.1:{port}")
    with pytest.raises(NotifyUnavailable) as caught:
        await notifier.send("hello")
    await notifier.aclose()
    assert_clean(caught.value)


async def test_timeout_is_retryable_and_clean(bot_api: BotApi) -> None:
    bot_api.hold = True
    notifier = telegram(bot_api.url, timeout_s=0.2)
    with pytest.raises(NotifyUnavailable, match="timed out") as caught:
        await notifier.send("hello")
    bot_api.release.set()
    await notifier.aclose()
    assert_clean(caught.value)


async def test_no_log_line_carries_the_token(bot_api: BotApi, caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("DEBUG", "console", secrets=[TOKEN])
    bot_api.replies += [(200, b'{"ok":true}'), (400, b'{"ok":false,"description":"Bad Request"}')]
    notifier = telegram(bot_api.url)
    with caplog.at_level(logging.DEBUG):
        await notifier.send("ok")
        with pytest.raises(NotifyRejected):
            await notifier.send("refused")
    await notifier.aclose()
    logged = caplog.text + "".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert TOKEN not in logged


@pytest.mark.parametrize(
    ("price", "tick", "shown"),
    [
        ("2878.13752450", "0.01", "2878.14"),  # a mark price, with the 8 decimals the exchange gives it
        ("183.1300", "0.0100", "183.13"),  # a level at the tick's full precision
        ("0.1780733", "0.00001", "0.17807"),
        ("100.3", "0.5", "100.5"),
        ("64123.4", "10", "64120"),
        ("2878.13752450", None, "2878.13752450"),  # no tick known: as it came
    ],
)
def test_prices_show_on_the_symbols_tick(price: str, tick: str | None, shown: str) -> None:
    assert fmt_price(D(price), None if tick is None else D(tick)) == shown


def test_every_venue_but_mainnet_leads_its_messages() -> None:
    message = render(NOTES[4], "en")
    assert venue_marked(message, Venue.MAINNET) == message
    assert to_plain_text(venue_marked(message, Venue.SIM)).startswith("[SIM] 🚨 Alert BTCUSDT")
    assert to_plain_text(venue_marked(message, Venue.TESTNET)).startswith("[TESTNET] ")
    assert_valid_html(venue_marked(message, Venue.TESTNET))


class Lines(logging.Handler):
    """The lines ats.notify logs, caught on that logger itself (whatever other tests did to the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def notify_log() -> Iterator[list[str]]:
    logger = logging.getLogger("ats.notify")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_without_telegram_the_message_goes_to_the_log(notify_log: list[str]) -> None:
    notifier = make_notifier(TelegramSettings(), venue=Venue.TESTNET)
    await notifier.send(render(NOTES[4], "en"))
    await notifier.aclose()
    (line,) = notify_log
    assert "no Telegram configured" in line
    assert "[TESTNET] 🚨 Alert BTCUSDT: Stop rejected: closing at market" in line
    assert "<b>" not in line


async def test_with_telegram_the_marked_message_goes_there_and_to_the_log(
    bot_api: BotApi, notify_log: list[str]
) -> None:
    notifier = LoggedNotifier(telegram(bot_api.url), Venue.SIM)
    await notifier.send(render(NOTES[1], "en"))
    await notifier.aclose()
    ((_, body),) = bot_api.requests
    assert body["text"] == "<b>[SIM]</b> " + render(NOTES[1], "en")
    (line,) = notify_log
    assert line.startswith("sent to Telegram:\n[SIM] 🟢 LONG BTCUSDT entered")


async def test_whoami_asks_getme_and_sends_nothing(bot_api: BotApi) -> None:
    notifier = telegram(bot_api.url)
    assert await notifier.whoami() == "@ats_bot"
    bot_api.replies.append((401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}'))
    with pytest.raises(NotifyRejected, match="token was refused") as caught:
        await notifier.whoami()
    await notifier.aclose()
    assert [path for path, _ in bot_api.requests] == [f"/bot{TOKEN}/getMe"] * 2
    assert_clean(caught.value)


def test_make_notifier_needs_token_and_chat() -> None:
    assert "None" in repr(make_notifier(TelegramSettings(), venue=Venue.SIM))
    assert "None" in repr(make_notifier(TelegramSettings(token=SecretStr(TOKEN)), venue=Venue.SIM))
    with_bot = make_notifier(TelegramSettings(token=SecretStr(TOKEN), chat_id="1"), venue=Venue.SIM)
    assert "TelegramNotifier" in repr(with_bot)
    assert TOKEN not in repr(with_bot)
    with pytest.raises(ValueError, match=r"token and telegram\.chat_id"):
        TelegramNotifier(TelegramSettings(chat_id="1"))
