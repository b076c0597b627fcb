"""The operator's controls, pure: commands, who may send them, the close-all code on a driven clock, pause and
resume, and the answers' texts in both languages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ats.domain import Direction
from ats.messages import LANGUAGES, Language
from ats.operator import (
    CODE_TTL_MS,
    AccountStatus,
    Command,
    Incoming,
    IssuedCode,
    PositionLine,
    authorised,
    code_refusal,
    confirmation_request,
    halt_lines,
    new_code,
    parse_command,
    parse_update,
    pause_refusal,
    pools_answer,
    positions_answer,
    resume_refusal,
    status_answer,
)
from ats.placement import LOSS_LIMIT, LedgerDay, SkipReason, halt_code
from ats.risk import RefusalReason
from ats.universe import PoolResult
from tests.unit.test_notify import assert_valid_html

D = Decimal
NOW = 1_780_000_000_000


def update(text: str, chat: int = -100123, username: str | None = "op") -> dict[str, object]:
    sender: dict[str, object] = {"id": 42, **({"username": username} if username else {})}
    return {"update_id": 7, "message": {"chat": {"id": chat}, "from": sender, "text": text}}


def test_an_update_names_its_chat_sender_and_text() -> None:
    assert parse_update(update("/status")) == Incoming(7, "-100123", "@op", "/status")
    assert parse_update(update("hi", username=None)) == Incoming(7, "-100123", "42", "hi")
    assert parse_update({"update_id": 8, "channel_post": {}}) == Incoming(8, "", "unknown", "")
    assert parse_update({"message": {}}) is None


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/status", Command("status")),
        ("/Status@ats_bot", Command("status")),
        ("  /closeall 123456 ", Command("closeall", ("123456",))),
        ("hello", None),
        ("/", None),
        ("", None),
    ],
)
def test_commands_are_parsed(text: str, command: Command | None) -> None:
    assert parse_command(text) == command


def test_only_the_configured_chat_commands() -> None:
    mine = Incoming(1, "-100123", "@op", "/status")
    assert authorised(mine, "-100123")
    assert not authorised(Incoming(1, "-999", "@op", "/status"), "-100123")
    assert not authorised(mine, None)
    assert not authorised(Incoming(1, "", "@op", "/status"), "")


def test_a_close_all_code_is_good_once_for_sixty_seconds() -> None:
    code = new_code(lambda bound: 42)
    assert code == "000042"
    issued = IssuedCode(code, NOW, used=False)
    assert code_refusal(issued, code, NOW + CODE_TTL_MS, "en") is None
    assert "expired" in (code_refusal(issued, code, NOW + CODE_TTL_MS + 1, "en") or "")
    assert "Wrong code" in (code_refusal(issued, "000043", NOW, "en") or "")
    assert "used already" in (code_refusal(IssuedCode(code, NOW, used=True), code, NOW, "en") or "")
    assert "/closeall first" in (code_refusal(None, code, NOW, "en") or "")
    assert "/closeall 000042" in confirmation_request(code, "en")


def test_pause_and_resume_decide_from_the_ledger() -> None:
    free = LedgerDay(NOW)
    paused = LedgerDay(NOW, halted=True, halted_reason="paused", halted_by="telegram @op", until_resumed=True)
    closed = LedgerDay(NOW, halted=True, halted_reason="close-all: x", halted_by="close-all (cli)")
    limit = LedgerDay(NOW, halted=True, halted_reason="daily loss limit reached", halted_by=LOSS_LIMIT)
    assert pause_refusal(free, "en") is None
    assert pause_refusal(closed, "en") is None  # a pause on top makes the halt last until resumed
    assert "Already paused by telegram @op" in (pause_refusal(paused, "en") or "")
    assert resume_refusal(paused, "en") is None
    assert resume_refusal(closed, "en") is None
    assert "Nothing to resume" in (resume_refusal(free, "en") or "")
    assert "cannot be lifted" in (resume_refusal(limit, "en") or "")
    # Entries refused by a halt say which halt it is: the loss limit's, or another one.
    assert halt_code(limit) == RefusalReason.DAILY_LOSS_LIMIT
    assert halt_code(closed) == SkipReason.HALTED
    assert halt_code(paused) == SkipReason.HALTED


def test_halt_lines_name_who_halted_and_who_lifted() -> None:
    assert halt_lines(LedgerDay(NOW), "en") == ["✅ New entries allowed"]
    closed = LedgerDay(NOW, halted=True, halted_reason="close-all: x", halted_by="close-all (cli)")
    assert halt_lines(closed, "en") == ["⛔ New entries halted: close-all: x (by close-all (cli))"]
    lifted = LedgerDay(NOW, halted_reason="close-all: x", resumed_by="cli alice", resumed_ms=NOW)
    (line,) = halt_lines(lifted, "en")
    assert line.startswith("✅ Halt lifted by cli alice at ")
    assert "close-all: x" in line


def status() -> AccountStatus:
    line = PositionLine(
        "BTCUSDT",
        Direction.LONG,
        D("0.011"),
        D("90547.0"),
        D("90600.12345"),
        D("0.58"),
        5,
        D("88736.0"),
        "waiting",
        managed=True,
        tick_size=D("0.10"),
    )
    return AccountStatus(NOW, D(10_000), D("0.58"), D("10000.58"), D(9000), [line], 5, ["ETHUSDT"], D(-1), None)


@pytest.mark.parametrize("language", LANGUAGES)
def test_answers_are_valid_telegram_html_in_both_languages(language: Language) -> None:
    pool = PoolResult("elite", ("BTCUSDT", "ETHUSDT"), NOW, "built", fell_back=True)
    answers = [
        status_answer(status(), LedgerDay(NOW), language),
        positions_answer(status().positions, language),
        positions_answer([], language),
        pools_answer({"elite": pool, "overlay": None}, language),
    ]
    for answer in answers:
        assert_valid_html(answer)
    assert "90600.1" in answers[1]  # on the symbol's tick grid
    assert "88736.0" in answers[1]
