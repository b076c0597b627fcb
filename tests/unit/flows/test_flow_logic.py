"""The pure parts of the flows: what to fetch, when pools are due, the placement decisions and the daily halt,
the day's statistics and the reports the Prefect UI shows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prefect.client.schemas.objects import State
from prefect.states import Crashed, Failed

from ats.config import LevelSettings, RiskLimits
from ats.domain import Band, Direction, Signal, SymbolRules
from ats.emergency import CloseAllReport, close_all_markdown, market_slices
from ats.exchange.base import AccountInfo, MarginType, PositionInfo
from ats.execution import ExecutionDeferred
from ats.factors import FactorConfig
from ats.notify import render, to_plain_text
from ats.operator import AccountStatus, PositionLine
from ats.placement import (
    Candidate,
    EntryDecision,
    LedgerDay,
    Placement,
    PlacementResult,
    decide_entries,
    halt_reason,
    with_entry,
)
from ats.risk import AccountSnapshot, Exposure
from ats.universe import PoolResult, UniverseConfig
from db.risk_state import ClosedTrade
from flows.place_orders import why_placement_failed
from tasks.account import day_stats, utc_day
from tasks.market import BarRefresh, PoolsOutcome, fetch_window, pools_due
from tasks.placement import Decided
from tasks.reports import day_markdown, placement_markdown, pools_markdown, status_markdown
from tasks.scanning import oi_period, oi_points

D = Decimal
HOUR = 3_600_000
DAY = 86_400_000
NOW = 1_767_225_600_000 + 10 * HOUR + 60_000  # 2026-01-01 10:01 UTC
BAR = NOW - NOW % HOUR - HOUR  # the newest closed 1h bar: 09:00


def rules(symbol: str) -> SymbolRules:
    return SymbolRules(
        symbol=symbol, base_asset=symbol[:-4], quote_asset="USDT", status="TRADING", contract_type="PERPETUAL",
        tick_size=D("0.01"), min_price=D("0.01"), max_price=D(1_000_000), step_size=D("0.001"), min_qty=D("0.001"),
        max_qty=D(1000), market_step_size=D("0.001"), market_min_qty=D("0.001"), market_max_qty=D(1000),
        min_notional=D(5),
    )  # fmt: skip


def stored(symbol: str, strength: float = 85.0, *, bar: int = BAR, signal_id: int = 1) -> Candidate:
    signal = Signal(symbol, Direction.LONG, strength, Band.of(strength), bar, D(100), liquidity=80.0)
    return Candidate(signal_id, signal, "scan")


SNAPSHOT = AccountSnapshot(D(10_000), D(10_000), D(0), D(0))
SYMBOLS = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT", "FFFUSDT"]
RULES = {s: rules(s) for s in SYMBOLS}
MARKS = dict.fromkeys(SYMBOLS, D(100))


def decide(candidates: list[Candidate], **overrides: object) -> list[EntryDecision]:
    options: dict[str, object] = {
        "account": "main",
        "limits": RiskLimits(),
        "level_settings": LevelSettings(),
        "rules": RULES,
        "marks": MARKS,
        "halted": None,
        "newest_bar_ms": BAR,
        "interval": "1h",
    }
    options.update(overrides)
    snapshot = options.pop("snapshot", SNAPSHOT)
    assert isinstance(snapshot, AccountSnapshot)
    return decide_entries(candidates, snapshot, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- bars and pools


def test_only_missing_closed_bars_are_fetched() -> None:
    step = HOUR
    assert fetch_window(None, BAR, step, 480) == (BAR - 479 * step, 480)
    assert fetch_window(BAR, BAR, step, 480) is None
    assert fetch_window(BAR - 3 * step, BAR, step, 480) == (BAR - 2 * step, 3)
    assert fetch_window(BAR - 1000 * step, BAR, step, 480) == (BAR - 479 * step, 480)  # a long gap: history again


def test_pools_are_due_after_their_refresh_period_or_a_fallback() -> None:
    config = UniverseConfig()
    fresh = PoolResult("elite", ("BTCUSDT",), NOW - 2 * HOUR, "built")
    stale = PoolResult("elite", ("BTCUSDT",), NOW - 25 * HOUR, "built")
    hourly = PoolResult("overlay", ("ENAUSDT",), NOW - HOUR + 3_000, "built")  # 3 s short of an hour: jitter
    fallen = PoolResult("overlay", ("ENAUSDT",), NOW - 60_000, "kept", fell_back=True)
    assert pools_due(None, None, NOW, config, "1h").elite
    due = pools_due(fresh, hourly, NOW, config, "1h")
    assert (due.elite, due.overlay) == (False, True)
    due = pools_due(stale, fallen, NOW, config, "1h")
    assert (due.elite, due.overlay) == (True, True)
    compressed = config.time_scaled(1 / 60)  # 1m bars that move like hourly ones: the Overlay lasts a minute
    minute_old = PoolResult("overlay", ("ENAUSDT",), NOW - 60_000 + 2_000, "built")
    assert pools_due(fresh, minute_old, NOW, compressed, "1m").overlay
    assert not pools_due(fresh, minute_old, NOW, config, "1m").overlay


def test_open_interest_history_matches_the_bar_interval() -> None:
    assert oi_period("1h") == "1h"
    assert oi_period("1m") == "5m"
    config = FactorConfig()
    assert oi_points("1h", config) == config.oi_lookback + config.oi_window + 2
    assert oi_points("1d", config) <= 500


# ---------------------------------------------------------------------------------------------- decisions


def test_approvals_count_against_the_next_signal_of_the_same_run() -> None:
    candidates = [stored(s, 90 - i, signal_id=i) for i, s in enumerate(SYMBOLS)]
    decisions = decide(candidates)
    assert [d.approved for d in decisions] == [True] * 5 + [False]
    assert decisions[-1].code == "max_positions"
    assert len({d.key for d in decisions if d.key}) == 5


def test_approvals_of_one_run_spend_the_daily_loss_headroom_of_the_next() -> None:
    limits = RiskLimits(max_daily_loss_usdt=D(20), risk_per_trade_pct=D("0.08"))
    candidates = [stored(s, 90 - i, signal_id=i) for i, s in enumerate(SYMBOLS)]
    decisions = decide(candidates, limits=limits)
    orders = [d.order for d in decisions if d.order is not None]
    assert len(orders) == 3  # 8 + 8 + the 4 USDT left
    assert sum((o.risk_usdt for o in orders), D(0)) <= 20
    assert {d.code for d in decisions if not d.approved} == {"daily_loss_limit"}


def test_a_busy_symbol_and_the_cycle_limit_are_refused_with_reasons() -> None:
    busy = AccountSnapshot(D(10_000), D(10_000), D(0), D(0), exposures=(Exposure("AAAUSDT", D(1000)),))
    decisions = decide([stored("AAAUSDT"), stored("BBBUSDT"), stored("CCCUSDT")], snapshot=busy, max_new=1)
    assert [(d.approved, d.code) for d in decisions] == [
        (False, "symbol_busy"),
        (True, None),
        (False, "max_new_positions"),
    ]


def test_stale_unknown_and_unpriced_signals_are_refused() -> None:
    decisions = decide(
        [stored("AAAUSDT", bar=BAR - HOUR), stored("ZZZUSDT"), stored("BBBUSDT")],
        marks={"AAAUSDT": D(100)},
    )
    assert [d.code for d in decisions] == ["stale_signal", "symbol_not_tradable", "no_price"]


def test_a_halted_day_refuses_everything_with_its_reason() -> None:
    decisions = decide([stored("AAAUSDT"), stored("BBBUSDT")], halted="daily loss limit reached earlier")
    assert {(d.code, d.reason) for d in decisions} == {("daily_loss_limit", "daily loss limit reached earlier")}


def test_without_a_monitor_every_entry_is_refused_with_the_guards_reason() -> None:
    decisions = decide([stored("AAAUSDT"), stored("BBBUSDT")], no_monitor="no monitor is protecting positions")
    assert {(d.code, d.reason) for d in decisions} == {("no_monitor", "no monitor is protecting positions")}


def test_the_halt_counts_unrealised_pnl_and_sticks_once_reached() -> None:
    limits = RiskLimits(max_daily_loss_usdt=D(100))
    day = LedgerDay(BAR - BAR % DAY, realized_pnl=D(-50), fees=D(5), funding=D(-1))
    assert day.net_realized == D(-56)
    fine = AccountSnapshot(D(10_000), D(10_000), day.net_realized, D(-43))
    assert halt_reason(day, fine, limits) == (None, False)
    breached = AccountSnapshot(D(10_000), D(10_000), day.net_realized, D(-44))
    reason, new = halt_reason(day, breached, limits)
    assert new
    assert reason is not None
    assert "-100.00" in reason
    assert "unrealised -44.00" in reason
    halted_day = LedgerDay(day.day_start_ms, halted=True, halted_reason="reached at 09:12")
    assert halt_reason(halted_day, fine, limits) == ("reached at 09:12", False)


def test_an_approved_entry_spends_its_margin_its_risk_and_takes_a_slot() -> None:
    (decision,) = decide([stored("AAAUSDT")])
    order = decision.order
    assert order is not None
    after = with_entry(SNAPSHOT, order, D("0.0005"))
    assert after.exposures == (Exposure("AAAUSDT", order.notional, pending=True, risk=order.risk_usdt),)
    assert after.committed_pnl == -order.risk_usdt
    assert after.available_balance == SNAPSHOT.available_balance - order.margin - (order.notional * D("0.0005"))


# ---------------------------------------------------------------------------------------------- the day


def trade(reason: str, net: str, *, tp1: bool = False) -> ClosedTrade:
    return ClosedTrade("AAAUSDT", "LONG", reason, D(net), D(1), D(0), tp1, NOW)


def test_the_day_counts_wins_exits_and_take_profits() -> None:
    info = AccountInfo(D(10_050), D(5), D(10_055), D(9_000), D(9_000))
    position = PositionInfo(
        "BBBUSDT", D(-2), D(100), D(100), D(99), D(2), D(0), D(20), D(-198), MarginType.ISOLATED, NOW
    )
    trades = [trade("tp2", "30", tp1=True), trade("breakeven_stop", "2", tp1=True), trade("stop", "-20")]
    ledger = LedgerDay(NOW - NOW % DAY, realized_pnl=D(12), fees=D(3), funding=D("-0.5"), halted=False)
    stats = day_stats(NOW - NOW % DAY, trades, ledger, info, [position])
    report = stats.report
    assert (report.trades, report.wins, report.losses) == (3, 2, 1)
    assert report.net_pnl == D("8.5")
    assert stats.exits == {"tp2": 1, "breakeven_stop": 1, "stop": 1}
    assert stats.tp1_hits == 2
    assert stats.win_rate is not None
    assert round(stats.win_rate) == 67
    assert report.open_positions[0].direction is Direction.SHORT
    assert report.day == "2026-01-01"
    markdown = day_markdown(stats)
    assert "| +8.50 |" in markdown
    assert "| breakeven_stop | 1 |" in markdown
    english, chinese = (to_plain_text(render(report, language)) for language in ("en", "zh"))
    assert "win rate 67 % · TP1 reached in 2 of 3" in english
    assert "胜率 67 % · 3 笔中 2 笔达到 TP1" in chinese
    assert "出场：breakeven_stop 1 · stop 1 · tp2 1" in chinese  # the exit codes, as the run's table has them


def test_the_report_day_defaults_to_yesterday() -> None:
    assert utc_day(None, NOW) == NOW - NOW % DAY - DAY
    assert utc_day("2026-01-01", NOW) == NOW - NOW % DAY
    with pytest.raises(ValueError, match="does not match"):
        utc_day("01/01/2026", NOW)


# ---------------------------------------------------------------------------------------------- reports


def test_the_pools_report_says_when_it_fell_back() -> None:
    elite = PoolResult("elite", ("BTCUSDT", "ETHUSDT"), NOW - HOUR, "2 of 3 selected", excluded={"XUSDT": "too thin"})
    overlay = PoolResult("overlay", ("ENAUSDT",), NOW - 5 * HOUR, "no listings; kept the previous", fell_back=True)
    outcome = PoolsOutcome(
        ["ENAUSDT", "BTCUSDT", "ETHUSDT"], elite, overlay, False, True, BarRefresh(3, 1, 1, 2, {"ETHUSDT": "503"})
    )
    text = pools_markdown(outcome)
    assert "**Overlay fell back to the last good pool**" in text
    assert "reused (built 2026-01-01 09:01 UTC)" in text
    assert "| XUSDT | too thin |" in text
    assert "| ETHUSDT | 503 |" in text


def test_the_placement_report_shows_opened_refused_and_failed() -> None:
    opened, refused, failed = decide([stored("AAAUSDT"), stored("AAAUSDT"), stored("BBBUSDT")])
    assert opened.key is not None
    assert failed.key is not None
    placement = Placement(
        opened.key, "AAAUSDT", PlacementResult.OPENED, D("97.5"), D("100.01"), 5, D(98), D(104), D(108),
        {"S1": "active", "T1": "active", "T2": "active"},
    )  # fmt: skip
    decided = Decided([opened, refused, failed], SNAPSHOT, None, ("XUSDT is not managed",), dry_run=False)
    text = placement_markdown(decided, {opened.key: placement, failed.key: "exchange unreachable: timeout"})
    assert "1 failed, 1 opened, 1 refused" in text
    assert "S1 active" in text
    assert "symbol_busy" in text
    assert "exchange unreachable: timeout" in text
    assert "- XUSDT is not managed" in text
    assert "0 positions and pending entries, open risk 0.00 USDT if every stop is hit" in text
    dry = placement_markdown(Decided([opened], SNAPSHOT, "halted: limit", (), dry_run=True), {})
    assert "(dry run)" in dry
    assert "would open" in dry
    assert "> **Halted:** halted: limit" in dry


def test_the_status_and_close_all_reports() -> None:
    line = PositionLine("AAAUSDT", Direction.LONG, D(2), D(100), D(101), D(2), 5, D(98), "waiting", True)
    assert line.pnl_pct == D(1)
    status = AccountStatus(NOW, D(1000), D(2), D(1002), D(800), [line], 5, ["BBBUSDT"], D(-3), "limit", ["note"])
    text = status_markdown(status)
    assert "1/5" in text
    assert "| +1.00 |" in text
    assert "New entries halted today" in text
    report = CloseAllReport(["AAAUSDT"], {}, ["AAAUSDT"], [], {"CCCUSDT": "market close: -2022"}, ["CCCUSDT"])
    text = close_all_markdown(report)
    assert "Still open on the exchange: CCCUSDT" in text
    assert "**Failed** CCCUSDT: market close: -2022" in text


async def test_a_failed_placement_task_reads_as_a_sentence() -> None:
    deferred: State[Placement] = Failed(
        data=ExecutionDeferred("ats_abc_E: GET /fapi/v1/order: could not connect (ConnectError)")
    )
    assert await why_placement_failed(deferred) == (
        "exchange unreachable: ats_abc_E: GET /fapi/v1/order: could not connect (ConnectError) "
        "(reconciliation looks the entry up again)"
    )
    bug: State[Placement] = Failed(data=KeyError("AAAUSDT"))
    assert (await why_placement_failed(bug)).startswith("KeyError: 'AAAUSDT'")
    assert (await why_placement_failed(Crashed(message="the worker died"))).startswith("CrashedRun: the worker died")


def test_an_emergency_close_is_split_by_the_largest_market_order() -> None:
    assert market_slices(Decimal("250"), Decimal("100")) == [Decimal(100), Decimal(100), Decimal(50)]
    assert market_slices(Decimal("200"), Decimal("100")) == [Decimal(100), Decimal(100)]
    assert market_slices(Decimal("0.5"), Decimal("100")) == [Decimal("0.5")]
    assert market_slices(Decimal("7"), Decimal(0)) == [Decimal(7)]
    assert sum(market_slices(Decimal("1234.567"), Decimal("120"))) == Decimal("1234.567")
