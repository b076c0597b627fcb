"""The message catalogue: every id in both languages with the same fields, and each kind of message rendered in
Chinese (valid Telegram HTML, no English heads left, the values unchanged)."""

from __future__ import annotations

import string

import pytest

from ats.messages import LANGUAGES, MESSAGES, say
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
    assert not [head for head in ENGLISH_HEADS if head in plain.replace(getattr(note, "title", ""), "")]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in plain)  # Chinese characters


def test_a_chinese_sample_of_each_kind() -> None:
    signal, entry, tp1, tp2, alert, report = (render(n, "zh") for n in NOTES)
    assert "📡 <b>信号 BTCUSDT</b> 🟢 做多 · 82 (强)" in signal
    assert "已开仓" in entry
    assert "止损已移至" in tp1
    assert "净盈亏" in tp2
    assert "警报" in alert or "警告" in alert or "已恢复" in alert
    assert "📊 <b>日报" in report
