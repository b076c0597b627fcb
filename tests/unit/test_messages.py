"""The message catalogue: every id in both languages with the same fields, and each kind of message rendered in
Chinese (valid Telegram HTML, no English heads left, the values unchanged)."""

from __future__ import annotations

import re
import string
from decimal import Decimal as D

import pytest

from ats.messages import LANGUAGES, MESSAGES, Text, say, say_text, text
from ats.notify import Notification, render, to_plain_text
from tests.unit.test_notify import NOTES, assert_valid_html


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_has_every_language_with_the_same_fields(key: str) -> None:
    texts = MESSAGES[key]
    assert set(texts) == set(LANGUAGES)
    assert all(texts[language].strip() for language in LANGUAGES)
    assert fields(texts["zh"]) == fields(texts["en"])
    assert_valid_html(texts["zh"].format(**dict.fromkeys(fields(texts["zh"]), "x")))


def test_say_fills_the_template() -> None:
    assert say("zh", "bot.code_expired", seconds=60) == "确认码已过期（60 秒），未平仓。请重新发送 /closeall"


ENGLISH_HEADS = ("Signal", "entered", "Qty", "Stop", "PnL", "Net", "Gross", "Held", "Alert", "Daily report", "Balance")


@pytest.mark.parametrize("note", NOTES, ids=lambda n: type(n).__name__)
def test_each_kind_of_message_renders_in_chinese(note: Notification) -> None:
    english, chinese = render(note, "en"), render(note, "zh")
    assert_valid_html(chinese)
    assert chinese != english
    plain = to_plain_text(chinese)
    assert not [head for head in ENGLISH_HEADS if head in plain]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in plain)  # Chinese characters


def test_a_chinese_sample_of_each_kind() -> None:
    signal, entry, tp1, tp2, alert, report = (render(n, "zh") for n in NOTES)
    assert "📡 <b>信号 BTCUSDT</b> 🟢 做多 · 82 (强)" in signal
    assert "已开仓" in entry
    assert "止损已移至" in tp1
    assert "净盈亏" in tp2
    assert "警报" in alert or "警告" in alert or "已恢复" in alert
    assert "📊 <b>日报" in report


# What a Chinese template may keep in Latin letters: the leverage's x, codes and units (all capitals), commands
# (/status, `ats monitor`), a log text to search for ('rate limited by binance') and product names.
NAMES = {"Prefect", "worker"}


def latin_words(template: str) -> list[str]:
    rest = re.sub(r"\{[^}]*\}|</?[a-z]+>|/[a-z]+|`[^`]*`|'[^']*'", "", template)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z_-]+", rest) if not w.isupper() and w not in NAMES]


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_no_english_is_left_in_a_chinese_template(key: str) -> None:
    assert latin_words(MESSAGES[key]["zh"]) == []


def test_every_refusal_code_is_named_in_both_languages() -> None:
    from ats.placement import SkipReason
    from ats.risk import RefusalReason

    for code in [*RefusalReason, *SkipReason]:
        assert say("en", f"refusal.{code.value}") == code.value  # the English message shows the code as it was
        assert latin_words(say("zh", f"refusal.{code.value}")) == []


def test_a_text_is_told_with_its_parts_in_one_language() -> None:
    ago = text("health.minutes", n=3)
    told = text("health.not_ready", ago=ago, positions=text("health.positions_many", count=2))
    assert say_text("en", told) == "monitor not ready for 3 min with 2 open positions"
    assert say_text("zh", told) == "监控进程已 3 分钟 未就绪，有 2 个持仓"
    with pytest.raises(KeyError):
        Text("no.such.message")


def told_by_the_lifecycle() -> list[Notification]:
    """Every message a few lifecycle stories send: an entry that expired, a stop canceled on the exchange, an
    exchange stop that did not fire (alert and result), a position that vanished."""
    from ats.lifecycle import Notify
    from tests.unit.lifecycle.harness import Driver

    expired = Driver()
    expired.accept("E")
    actions = expired.cancel("E", expired=True, filled="0")
    supervised = Driver()
    supervised.open_fully()
    supervised.mark("97.99")
    actions += supervised.mark("97.80", after_ms=5_000) + supervised.cancel("T2")
    actions += supervised.fill("X1", "1.000", "97.70")
    vanished = Driver()
    vanished.open_fully()
    actions += vanished.vanish()
    return [a.note for a in actions if isinstance(a, Notify)]


def test_what_the_lifecycle_tells_is_all_chinese_in_chinese() -> None:
    notes = told_by_the_lifecycle()
    assert len(notes) >= 5
    for note in notes:
        chinese = to_plain_text(render(note, "zh"))
        assert latin_words(chinese.replace("TESTUSDT", "")) == [], chinese


def test_a_refused_signal_is_followed_up_in_chinese() -> None:
    from ats.domain import Band, Direction, Signal
    from ats.placement import EntryDecision, refusal_note

    figures = text("risk.loss_figures", realised="-40.00", risk="10.00", count=2, unrealised="-5.00")
    why = text("risk.loss_spent", symbol="DUSDT", limit="50", figures=figures)
    signal = Signal("DUSDT", Direction.SHORT, 91.0, Band.VERY_STRONG, 0, D("2.5"))
    note = refusal_note(EntryDecision(7, signal, code="daily_loss_limit", why=why))
    english, chinese = (to_plain_text(render(note, language)) for language in ("en", "zh"))
    assert english.endswith(
        "DUSDT: nothing is left of the daily loss limit of 50 USDT: realised today -40.00 USDT, open risk 10.00 USDT "
        "(lost if the stops of 2 positions and pending entries are hit), unrealised -5.00 USDT (daily_loss_limit)"
    )
    assert chinese.startswith(
        "ℹ️ 提示 DUSDT：信号未交易：SHORT 91\n已达每日亏损上限：DUSDT：每日亏损上限 50 USDT 已用完"
    )
    assert latin_words(chinese.replace("DUSDT", "")) == []
