"""The demo's price script: each plot heads for the right level on the right side, in bounded steps."""

from __future__ import annotations

from decimal import Decimal

from ats.demo import OVERSHOOT, Plot, PositionView, assign_plots, step_towards, target_price
from ats.domain import Direction


def view(direction: Direction, *, tp1_done: bool = False, stop: str | None = None) -> PositionView:
    long = direction is Direction.LONG
    return PositionView(
        direction=direction,
        stop_price=Decimal(stop or ("98" if long else "102")),
        tp1_price=Decimal(104 if long else 96),
        tp2_price=Decimal(108 if long else 92),
        tp1_done=tp1_done,
    )


def test_plots_are_handed_out_once_in_order() -> None:
    plots = assign_plots(["a", "b"], {})
    assert plots == {"a": Plot.TAKE_PROFITS, "b": Plot.BREAKEVEN}
    plots = assign_plots(["a", "b", "c", "d"], plots)
    assert plots["c"] is Plot.STOP_LOSS
    assert plots["d"] is Plot.MARKET


def test_take_profits_go_past_tp1_then_past_tp2_for_longs_and_shorts() -> None:
    assert target_price(Plot.TAKE_PROFITS, view(Direction.LONG)) == Decimal(104) * (1 + OVERSHOOT)
    assert target_price(Plot.TAKE_PROFITS, view(Direction.LONG, tp1_done=True)) == Decimal(108) * (1 + OVERSHOOT)
    assert target_price(Plot.TAKE_PROFITS, view(Direction.SHORT)) == Decimal(96) * (1 - OVERSHOOT)


def test_breakeven_returns_through_the_moved_stop_after_tp1() -> None:
    after_tp1 = view(Direction.LONG, tp1_done=True, stop="100.1")
    assert target_price(Plot.BREAKEVEN, after_tp1) == Decimal("100.1") * (1 - OVERSHOOT)
    short_after = view(Direction.SHORT, tp1_done=True, stop="99.9")
    assert target_price(Plot.BREAKEVEN, short_after) == Decimal("99.9") * (1 + OVERSHOOT)


def test_stop_loss_goes_through_the_stop_and_the_market_plot_does_nothing() -> None:
    assert target_price(Plot.STOP_LOSS, view(Direction.LONG)) == Decimal(98) * (1 - OVERSHOOT)
    assert target_price(Plot.STOP_LOSS, view(Direction.SHORT)) == Decimal(102) * (1 + OVERSHOOT)
    assert target_price(Plot.MARKET, view(Direction.LONG)) is None


def test_steps_are_bounded_and_land_on_the_target() -> None:
    assert step_towards(Decimal(100), Decimal(110), Decimal("0.01")) == Decimal(101)
    assert step_towards(Decimal(100), Decimal(90), Decimal("0.01")) == Decimal(99)
    assert step_towards(Decimal(100), Decimal("100.5"), Decimal("0.01")) == Decimal("100.5")


def test_a_single_target_position_is_steered_to_its_only_target() -> None:
    single = PositionView(Direction.LONG, Decimal(98), tp1_price=Decimal(104), tp2_price=None, tp1_done=False)
    assert target_price(Plot.TAKE_PROFITS, single) == Decimal(104) * (1 + OVERSHOOT)
    done = PositionView(Direction.LONG, Decimal(98), tp1_price=Decimal(104), tp2_price=None, tp1_done=True)
    assert target_price(Plot.TAKE_PROFITS, done) is None
