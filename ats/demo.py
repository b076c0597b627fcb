"""The demo's script: the decisions of `ats demo`, pure (the runner in cli.demo_runner does the I/O).

The demo drives time instead of racing it. The simulated exchange runs in manual mode on hourly bars: its market
moves only when the demo says so, and the demo says so only once the system has reacted to the last move. So the
same demo tells the same story on a fast machine and on a loaded one. Each bar:

1. the trading-cycle flow runs (pools, scores, signals, entries with stop, TP1 and TP2);
2. the demo waits until every position is protected on the exchange;
3. the demo walks the price of a few positions through a plot (`Plot`), one step at a time; a step that
   crosses a level waits for the system's reaction (`Reaction`) before the next one;
4. unless the story is told (`still_to_show`), the market moves on by one bar, and the demo waits until the
   monitor has caught up with what that bar did (`unsettled`).

Only the price of the plotted positions is scripted. Everything else is the real system reacting: the exchange's
algo orders trigger on the mark price, the monitor sees the fills on the user stream, the state machine moves the
stop to breakeven, the outbox sends the messages. Which symbols trade, and in which direction, is the factor
model's choice on the seeded market.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from ats.domain import Direction
from ats.lifecycle import Phase

SEED = 2  # the market's seed: its first bar holds strong longs and strong shorts (both sides show at once)
BAR_INTERVAL = "1h"
BAR_MS = 3_600_000
TICK_S = 60.0  # the market moves on by one bar in minute ticks (each runs the exchange's triggers)
MAX_CYCLES = 6  # bars the demo runs at most before it gives up on the rest of the story
OVERSHOOT = Decimal("0.004")  # go this far past a level so the trigger surely fires
STEP = Decimal("0.01")  # at most this fraction of the price per scripted step


class Plot(StrEnum):
    """What the script makes of one position."""

    TAKE_PROFITS = "tp1 then tp2"
    BREAKEVEN = "tp1 then breakeven stop"
    STOP_LOSS = "stop loss"
    MARKET = "left to the market"


STORY = (Plot.TAKE_PROFITS, Plot.BREAKEVEN, Plot.STOP_LOSS)  # every plot the demo must show


class Reaction(StrEnum):
    """What the system must have done once a scripted price crossed a level."""

    TP1 = "TP1 filled and the stop moved to breakeven"
    CLOSED = "the position closed"


@dataclass(frozen=True, slots=True)
class PositionView:
    """What the script needs to know of a position (from the positions table)."""

    direction: Direction
    stop_price: Decimal
    tp1_price: Decimal | None
    tp2_price: Decimal | None  # None: too small to split, TP1 closes all of it
    tp1_done: bool


@dataclass(frozen=True, slots=True)
class PriceStep:
    """The next scripted price, and what the system must do before the following step (None: nothing)."""

    price: Decimal
    awaits: Reaction | None
    level: str = ""  # the level this step goes past, when it awaits a reaction


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a position stands, as far as waiting for a reaction goes."""

    tp1_done: bool
    breakeven_set: bool
    closed: bool
    orders_pending: bool  # a placement or cancel of one of its orders has no answer yet


@dataclass(frozen=True, slots=True)
class Holding:
    """An open position as recorded (for `unsettled`)."""

    symbol: str
    direction: Direction
    phase: Phase
    open_qty: Decimal
    orders_pending: bool


# ---------------------------------------------------------------------------------------------- casting


def assign_plots(opened: Sequence[tuple[str, Direction]], assigned: Mapping[str, Plot]) -> dict[str, Plot]:
    """Give each position (key, direction; every position so far, in opening order) a plot, once.

    The first position of each direction runs to TP1 and TP2, so a long and a short each show the full win; the
    next ones show the breakeven stop and the stop loss; the rest trade on the market.
    """
    directions = dict(opened)
    plots = dict(assigned)
    for key, direction in opened:
        if key in plots:
            continue
        if not any(p is Plot.TAKE_PROFITS and directions.get(k) is direction for k, p in plots.items()):
            plots[key] = Plot.TAKE_PROFITS
            continue
        used = set(plots.values())
        plots[key] = next((p for p in (Plot.BREAKEVEN, Plot.STOP_LOSS) if p not in used), Plot.MARKET)
    return plots


# ---------------------------------------------------------------------------------------------- the price script


def target_price(plot: Plot, view: PositionView) -> Decimal | None:
    """Where the mark should head now, or None when the plot has nothing more to do (or is the market's)."""
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


def next_step(plot: Plot, view: PositionView, mark: Decimal, max_step: Decimal = STEP) -> PriceStep | None:
    """The plot's next price for this position, or None once the plot is played out."""
    target = target_price(plot, view)
    if target is None:
        return None
    price = step_towards(mark, target, max_step)
    if price != target:
        return PriceStep(price, None)
    if plot is Plot.STOP_LOSS or (view.tp1_done and plot is Plot.BREAKEVEN):
        return PriceStep(price, Reaction.CLOSED, "the breakeven stop" if view.tp1_done else "the stop")
    if view.tp1_done:
        return PriceStep(price, Reaction.CLOSED, "TP2")
    if view.tp2_price is None:
        return PriceStep(price, Reaction.CLOSED, "TP1, its only target")
    return PriceStep(price, Reaction.TP1, "TP1")


def reacted(reaction: Reaction, progress: Progress) -> bool:
    """Whether the system has done what a crossed level asks for (and has no order left without an answer)."""
    if progress.closed:
        return True  # whatever was awaited, a closed position is done (the market may have overtaken the script)
    if progress.orders_pending:
        return False
    return reaction is Reaction.TP1 and progress.tp1_done and progress.breakeven_set


# ---------------------------------------------------------------------------------------------- the story


def still_to_show(traded: Iterable[Direction], plots: Mapping[str, Plot], played: Iterable[str]) -> list[str]:
    """What the story still lacks: a long and a short traded, and each plot played out to the position's close."""
    directions = set(traded)
    done = set(played)
    missing = [f"a {d.value.lower()} position" for d in (Direction.LONG, Direction.SHORT) if d not in directions]
    for plot in STORY:
        if not any(p is plot and key in done for key, p in plots.items()):
            missing.append(plot.value)
    return missing


def unsettled(holdings: Iterable[Holding], exchange: Mapping[str, Decimal]) -> list[str]:
    """What the system has still to catch up with before the market may move on (empty: nothing).

    Every open position protected with no order awaiting an answer, and the exchange holding exactly what is
    recorded (signed amounts by symbol): a stop or target the market triggered has been seen and recorded.
    """
    problems: list[str] = []
    recorded: set[str] = set()
    for h in holdings:
        recorded.add(h.symbol)
        if h.phase not in (Phase.OPEN, Phase.TP1_DONE):
            problems.append(f"{h.symbol} {h.phase.value.replace('_', ' ')}")
        elif h.orders_pending:
            problems.append(f"{h.symbol} orders awaiting an answer")
        held = exchange.get(h.symbol, Decimal(0))
        if held != h.direction.sign * h.open_qty:
            problems.append(f"{h.symbol} {held:f} on the exchange, {h.direction.sign * h.open_qty:f} recorded")
    problems += [f"{s} {a:f} on the exchange, not recorded" for s, a in sorted(exchange.items()) if s not in recorded]
    return problems


def market_start_ms(now_ms: int, bar_ms: int = BAR_MS) -> int:
    """Where the demo's market starts: the next bar boundary (never behind the local clock, so the exchange's
    times are never earlier than the system's own; on a boundary, so no bar is half-formed at the start)."""
    return now_ms + (-now_ms) % bar_ms
