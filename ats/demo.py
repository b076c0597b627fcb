"""The demo's market script: steer the simulated prices of open positions so that three minutes show every
outcome a position can have (TP1 then TP2, TP1 then the breakeven stop, a straight stop loss).

Only the price is scripted. Everything else is the real system reacting: the exchange's algo orders trigger on
the mark price, the monitor sees the fills on the user stream, the state machine moves the stop to breakeven,
the outbox sends the messages. Pure: given what a position looks like and the current mark, say where the mark
should go next.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from ats.domain import Direction


class Plot(StrEnum):
    """What the script makes of one position."""

    TAKE_PROFITS = "tp1 then tp2"
    BREAKEVEN = "tp1 then breakeven stop"
    STOP_LOSS = "stop loss"
    MARKET = "left to the market"


# The order in which new positions get a plot: the first shows the full win, the second the breakeven stop...
PLOTS = (Plot.TAKE_PROFITS, Plot.BREAKEVEN, Plot.STOP_LOSS)
OVERSHOOT = Decimal("0.004")  # go this far past a level so the trigger surely fires
STEP = Decimal("0.003")  # at most this fraction of the price per step (a step is about half a second)


@dataclass(frozen=True, slots=True)
class PositionView:
    """What the script needs to know of a position (from the positions table)."""

    direction: Direction
    stop_price: Decimal
    tp1_price: Decimal | None
    tp2_price: Decimal | None
    tp1_done: bool


def assign_plots(keys_in_opening_order: list[str], assigned: dict[str, Plot]) -> dict[str, Plot]:
    """Give each new position the next unused plot; once all are used, the rest trade on the market."""
    plots = dict(assigned)
    for key in keys_in_opening_order:
        if key not in plots:
            used = set(plots.values())
            plots[key] = next((p for p in PLOTS if p not in used), Plot.MARKET)
    return plots


def target_price(plot: Plot, view: PositionView) -> Decimal | None:
    """Where the mark should head now, or None to leave the position to the market."""
    sign = Decimal(view.direction.sign)
    beyond = Decimal(1) + sign * OVERSHOOT
    short_of = Decimal(1) - sign * OVERSHOOT
    match plot:
        case Plot.TAKE_PROFITS:
            level = view.tp2_price if view.tp1_done else view.tp1_price
            return None if level is None else level * beyond
        case Plot.BREAKEVEN:
            if not view.tp1_done:
                return None if view.tp1_price is None else view.tp1_price * beyond
            return view.stop_price * short_of
        case Plot.STOP_LOSS:
            return view.stop_price * short_of
    return None


def step_towards(mark: Decimal, target: Decimal, max_step: Decimal = STEP) -> Decimal:
    """The next mark on the way to `target`, moving at most `max_step` of the price."""
    limit = mark * max_step
    if abs(target - mark) <= limit:
        return target
    return mark + limit if target > mark else mark - limit
