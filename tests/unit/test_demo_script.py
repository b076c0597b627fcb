"""The demo's script (pure): who plays which plot, where the price goes, what the demo waits for, when the story is
told, when the market may move on; and the command's exit code when a part of the mission did not show."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ats.demo import (
    BAR_MS,
    OVERSHOOT,
    Holding,
    Plot,
    PositionView,
    Progress,
    Reaction,
    assign_plots,
    market_start_ms,
    next_step,
    reacted,
    step_towards,
    still_to_show,
    target_price,
    unsettled,
)
from ats.domain import Direction
from ats.lifecycle import Phase

LONG, SHORT = Direction.LONG, Direction.SHORT


def view(direction: Direction, *, tp1_done: bool = False, stop: str | None = None) -> PositionView:
    long = direction is LONG
    return PositionView(
        direction=direction,
        stop_price=Decimal(stop or ("98" if long else "102")),
        tp1_price=Decimal(104 if long else 96),
        tp2_price=Decimal(108 if long else 92),
        tp1_done=tp1_done,
    )


# ---------------------------------------------------------------------------------------------- casting


def test_the_first_position_of_each_direction_runs_to_tp2_then_breakeven_then_stop() -> None:
    plots = assign_plots([("a", LONG), ("b", SHORT), ("c", SHORT), ("d", LONG), ("e", LONG)], {})
    assert plots == {
        "a": Plot.TAKE_PROFITS,
        "b": Plot.TAKE_PROFITS,
        "c": Plot.BREAKEVEN,
        "d": Plot.STOP_LOSS,
        "e": Plot.MARKET,
    }


def test_plots_are_handed_out_once_and_a_later_short_still_gets_its_win() -> None:
    first = assign_plots([("a", LONG), ("b", LONG), ("c", LONG), ("d", LONG)], {})
    assert list(first.values()) == [Plot.TAKE_PROFITS, Plot.BREAKEVEN, Plot.STOP_LOSS, Plot.MARKET]
    later = assign_plots([("a", LONG), ("b", LONG), ("c", LONG), ("d", LONG), ("e", LONG), ("f", SHORT)], first)
    assert {k: later[k] for k in first} == first  # nobody is recast
    assert later["e"] is Plot.MARKET
    assert later["f"] is Plot.TAKE_PROFITS


# ---------------------------------------------------------------------------------------------- the price script


def test_take_profits_go_past_tp1_then_past_tp2_for_longs_and_shorts() -> None:
    assert target_price(Plot.TAKE_PROFITS, view(LONG)) == Decimal(104) * (1 + OVERSHOOT)
    assert target_price(Plot.TAKE_PROFITS, view(LONG, tp1_done=True)) == Decimal(108) * (1 + OVERSHOOT)
    assert target_price(Plot.TAKE_PROFITS, view(SHORT)) == Decimal(96) * (1 - OVERSHOOT)
    assert target_price(Plot.TAKE_PROFITS, view(SHORT, tp1_done=True)) == Decimal(92) * (1 - OVERSHOOT)


def test_breakeven_returns_through_the_moved_stop_after_tp1() -> None:
    after_tp1 = view(LONG, tp1_done=True, stop="100.1")
    assert target_price(Plot.BREAKEVEN, after_tp1) == Decimal("100.1") * (1 - OVERSHOOT)
    short_after = view(SHORT, tp1_done=True, stop="99.9")
    assert target_price(Plot.BREAKEVEN, short_after) == Decimal("99.9") * (1 + OVERSHOOT)


def test_stop_loss_goes_through_the_stop_and_the_market_plot_does_nothing() -> None:
    assert target_price(Plot.STOP_LOSS, view(LONG)) == Decimal(98) * (1 - OVERSHOOT)
    assert target_price(Plot.STOP_LOSS, view(SHORT)) == Decimal(102) * (1 + OVERSHOOT)
    assert target_price(Plot.MARKET, view(LONG)) is None
    assert next_step(Plot.MARKET, view(LONG), Decimal(100)) is None


def test_steps_are_bounded_and_land_on_the_target() -> None:
    assert step_towards(Decimal(100), Decimal(110), Decimal("0.01")) == Decimal(101)
    assert step_towards(Decimal(100), Decimal(90), Decimal("0.01")) == Decimal(99)
    assert step_towards(Decimal(100), Decimal("100.5"), Decimal("0.01")) == Decimal("100.5")


def test_only_the_step_that_reaches_a_level_waits_and_it_says_for_what() -> None:
    on_the_way = next_step(Plot.TAKE_PROFITS, view(LONG), Decimal(100), Decimal("0.01"))
    assert on_the_way is not None
    assert (on_the_way.price, on_the_way.awaits) == (Decimal(101), None)
    at_tp1 = next_step(Plot.TAKE_PROFITS, view(LONG), Decimal(104), Decimal("0.01"))
    assert at_tp1 is not None
    assert (at_tp1.price, at_tp1.awaits, at_tp1.level) == (Decimal(104) * (1 + OVERSHOOT), Reaction.TP1, "TP1")
    at_tp2 = next_step(Plot.TAKE_PROFITS, view(SHORT, tp1_done=True), Decimal(92))
    assert at_tp2 is not None
    assert (at_tp2.awaits, at_tp2.level) == (Reaction.CLOSED, "TP2")
    back = next_step(Plot.BREAKEVEN, view(SHORT, tp1_done=True, stop="99.9"), Decimal(100))
    assert back is not None
    assert (back.awaits, back.level) == (Reaction.CLOSED, "the breakeven stop")
    stop = next_step(Plot.STOP_LOSS, view(LONG), Decimal(98))
    assert stop is not None
    assert (stop.awaits, stop.level) == (Reaction.CLOSED, "the stop")


def test_a_single_target_position_closes_at_tp1_and_its_plot_ends_there() -> None:
    single = PositionView(LONG, Decimal(98), tp1_price=Decimal(104), tp2_price=None, tp1_done=False)
    step = next_step(Plot.TAKE_PROFITS, single, Decimal(104))
    assert step is not None
    assert (step.awaits, step.level) == (Reaction.CLOSED, "TP1, its only target")
    done = PositionView(LONG, Decimal(98), tp1_price=Decimal(104), tp2_price=None, tp1_done=True)
    assert next_step(Plot.TAKE_PROFITS, done, Decimal(105)) is None


def test_a_reaction_counts_once_the_system_has_done_it_with_no_order_left_unanswered() -> None:
    moving = Progress(tp1_done=True, breakeven_set=True, closed=False, orders_pending=True)
    assert not reacted(Reaction.TP1, moving)  # the new stop or the old stop's cancel has no answer yet
    assert reacted(Reaction.TP1, Progress(tp1_done=True, breakeven_set=True, closed=False, orders_pending=False))
    assert not reacted(Reaction.TP1, Progress(tp1_done=True, breakeven_set=False, closed=False, orders_pending=False))
    assert not reacted(Reaction.CLOSED, Progress(tp1_done=True, breakeven_set=True, closed=False, orders_pending=False))
    assert reacted(Reaction.CLOSED, Progress(tp1_done=False, breakeven_set=False, closed=True, orders_pending=False))
    assert reacted(Reaction.TP1, Progress(tp1_done=False, breakeven_set=False, closed=True, orders_pending=False))


# ---------------------------------------------------------------------------------------------- the story


def test_the_story_needs_both_directions_and_every_plot_played_out() -> None:
    plots = {"a": Plot.TAKE_PROFITS, "b": Plot.BREAKEVEN, "c": Plot.STOP_LOSS, "d": Plot.MARKET}
    assert still_to_show([LONG, LONG], plots, ["c", "d"]) == [
        "a short position",
        Plot.TAKE_PROFITS.value,
        Plot.BREAKEVEN.value,
    ]
    assert still_to_show([LONG, SHORT], plots, ["a", "b", "c"]) == []
    assert still_to_show([], {}, []) == [
        "a long position",
        "a short position",
        Plot.TAKE_PROFITS.value,
        Plot.BREAKEVEN.value,
        Plot.STOP_LOSS.value,
    ]


def holding(symbol: str, direction: Direction = LONG, qty: str = "2", **kw: Any) -> Holding:
    return Holding(symbol, direction, kw.get("phase", Phase.OPEN), Decimal(qty), kw.get("pending", False))


def test_the_market_moves_on_only_once_records_and_exchange_agree() -> None:
    assert unsettled([holding("A"), holding("B", SHORT)], {"A": Decimal(2), "B": Decimal(-2)}) == []
    assert unsettled([holding("A", phase=Phase.TP1_DONE, qty="1")], {"A": Decimal(1)}) == []
    assert unsettled([holding("A")], {}) == ["A 0 on the exchange, 2 recorded"]  # a stop fired, not yet seen
    assert unsettled([holding("A", qty="1")], {"A": Decimal(2)}) == ["A 2 on the exchange, 1 recorded"]
    assert unsettled([], {"A": Decimal("0.5")}) == ["A 0.5 on the exchange, not recorded"]
    assert unsettled([holding("A", phase=Phase.CLOSING)], {"A": Decimal(2)}) == ["A closing"]
    assert unsettled([holding("A", pending=True)], {"A": Decimal(2)}) == ["A orders awaiting an answer"]


def test_the_market_starts_on_the_next_bar_boundary_never_behind_the_clock() -> None:
    assert market_start_ms(7 * BAR_MS) == 7 * BAR_MS
    assert market_start_ms(7 * BAR_MS + 1) == 8 * BAR_MS
    assert market_start_ms(8 * BAR_MS - 1) == 8 * BAR_MS


# ---------------------------------------------------------------------------------------------- the command


def test_the_command_exits_1_and_names_what_did_not_show(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cli import app, demo_runner

    summary = demo_runner.DemoSummary(pools=["BTCUSDT"], symbols_scored=1, signals=1, protected=1, longs=1)
    summary.stalled = "timed out after 60 s waiting for WIFUSDT: TP1 filled and the stop moved to breakeven"
    monkeypatch.setattr(demo_runner, "run_demo", lambda console, *, summary_json: summary)
    result = CliRunner().invoke(app, ["demo"], env={"ATS_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "did not show the whole mission" in text
    for part in ("long and short positions", "TP2 and stop outcomes", "waiting for WIFUSDT"):
        assert part in text


def test_a_complete_mission_exits_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cli import app, demo_runner

    summary = demo_runner.DemoSummary(
        pools=["A"], symbols_scored=1, signals=1, protected=1, longs=1, shorts=1, breakeven_moves=1, tp2=1, stops=1
    )
    assert summary.mission_complete
    monkeypatch.setattr(demo_runner, "run_demo", lambda console, *, summary_json: summary)
    assert CliRunner().invoke(app, ["demo"], env={"ATS_DATA_DIR": str(tmp_path)}).exit_code == 0


def test_the_market_is_built_on_its_bar_boundary_and_is_the_same_every_time() -> None:
    import numpy as np

    from ats.demo import BAR_INTERVAL, SEED
    from cli.demo_runner import HeldClock
    from sim.server import OffsetClock, SimConfig, SimServer

    start = market_start_ms(1_767_225_600_000 + 1_234_567)
    markets = []
    for _ in range(2):
        clock = HeldClock(start)  # stands still until released: however long building takes, it starts at `start`
        markets.append(SimServer(SimConfig(seed=SEED, bar_interval=BAR_INTERVAL), clock=OffsetClock(clock)).market)
        clock.release()
        assert clock.now_ms() >= start
    first, second = markets
    assert first.now_ms == first.bar_open_ms == start
    assert np.array_equal(first.last, second.last)
    assert np.array_equal(first.bars, second.bars, equal_nan=True)
