"""The monitor's in-memory view of the open positions: what it must watch and when a tick matters.

Mark prices arrive every second per symbol; most of them cannot change anything. The view keeps, per open
position, the position itself and what the hot path reads of it (stop, direction, quantity, the live stops' and
take-profits' triggers), to decide without a database transaction whether a tick must go to the journal: the
lifecycle runs on the position in memory, and only a tick that changes it (the stop crossed, crossed past the
grace, or no longer crossed) is sent; and which levels a tick reached, whose fills the user stream must then
deliver. The journal stays the truth; the view is refreshed
from it after every change the monitor makes and every few seconds for changes others make.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from ats.config import OnReversal
from ats.domain import Bars, Direction
from ats.exchange.base import KlineUpdate
from ats.factors import FactorRow
from ats.lifecycle import (
    ExitTrigger,
    MarkPrice,
    OrderState,
    Phase,
    Position,
    ReversalSignal,
    exit_triggers,
    transition,
    triggers_reached,
)
from ats.risk import ReversalResponse, reversal_response


@dataclass(frozen=True, slots=True)
class Watch:
    """One open position as the monitor's hot path sees it."""

    key: str
    symbol: str
    direction: Direction
    phase: Phase
    open_qty: Decimal
    stop_price: Decimal | None
    stop_crossed_ms: int | None
    closing: bool  # a market close is under way: the lifecycle ignores marks now
    pending: tuple[str, ...]  # legs whose placement or cancel outcome is unknown
    on_reversal: OnReversal
    reversal_score: float
    triggers: tuple[ExitTrigger, ...]  # live stops and take-profits
    position: Position  # as the journal had it when the view was refreshed

    @staticmethod
    def of(position: Position) -> Watch | None:
        """The watch for a position, or None once it is closed or failed (nothing left to watch)."""
        if position.is_terminal:
            return None
        return Watch(
            key=position.key,
            symbol=position.symbol,
            direction=position.direction,
            phase=position.phase,
            open_qty=position.open_qty,
            stop_price=position.stop_price,
            stop_crossed_ms=position.stop_crossed_ms,
            closing=position.close_reason is not None,
            pending=tuple(
                o.client_id for o in position.orders if o.state in (OrderState.REQUESTED, OrderState.CANCELING)
            ),
            on_reversal=position.policy.on_reversal,
            reversal_score=position.policy.reversal_score,
            triggers=exit_triggers(position),
            position=position,
        )

    def wants_mark(self, mark: Decimal, time_ms: int) -> bool:
        """Whether this mark changes the position, asked of the lifecycle itself (in memory, no transaction)."""
        after, actions = transition(self.position, MarkPrice(mark, time_ms))
        # A no-op returns the same object: identity first, the journal's equality only for a new one.
        return bool(actions) or (after is not self.position and after != self.position)

    def reached(self, mark: Decimal) -> tuple[ExitTrigger, ...]:
        """The live stops and take-profits this mark has reached: the exchange is firing them now."""
        return triggers_reached(self.triggers, self.direction, mark) if self.triggers else ()


class Book:
    """Watches by position key and by symbol (the exchange allows one position per symbol in one-way mode)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Watch] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Watch]:
        return iter(list(self._by_key.values()))

    def get(self, key: str) -> Watch | None:
        return self._by_key.get(key)

    def on_symbol(self, symbol: str) -> Watch | None:
        return next((w for w in self._by_key.values() if w.symbol == symbol), None)

    def symbols(self) -> frozenset[str]:
        return frozenset(w.symbol for w in self._by_key.values())

    def put(self, key: str, position: Position | None) -> tuple[Watch | None, Watch | None]:
        """Replace a position's watch (None or a closed position removes it); returns (before, after)."""
        before = self._by_key.get(key)
        after = Watch.of(position) if position is not None else None
        if after is None:
            self._by_key.pop(key, None)
        else:
            self._by_key[key] = after
        return before, after

    def replace_all(self, positions: Iterable[Position]) -> None:
        """The view of every open position at once (from the journal)."""
        watches = (Watch.of(p) for p in positions)
        self._by_key = {w.key: w for w in watches if w is not None}


def market_streams(symbol: str, interval: str) -> list[str]:
    """The streams one open position needs: the mark price every second and its closed bars."""
    lower = symbol.lower()
    return [f"{lower}@markPrice@1s", f"{lower}@kline_{interval}"]


def bar_of(update: KlineUpdate) -> Bars:
    """A closed kline from the stream as one bar for the factor scorer (floats: factor math only)."""

    def one(value: Decimal | int) -> np.ndarray:
        return np.array([float(value)], dtype=np.float64)

    return Bars(
        symbol=update.symbol,
        interval=update.interval,
        open_time=np.array([update.open_time_ms], dtype=np.int64),
        open=one(update.open),
        high=one(update.high),
        low=one(update.low),
        close=one(update.close),
        volume=one(update.volume),
        quote_volume=one(update.quote_volume),
        trades=one(update.trades),
        taker_buy_volume=one(update.taker_buy_volume),
        taker_buy_quote_volume=one(update.taker_buy_quote_volume),
    )


def reversal_signal(watch: Watch, row: FactorRow, mark: Decimal, time_ms: int) -> ReversalSignal | None:
    """The lifecycle event for a closed bar's score; None when the position's policy would ignore it (an unscored
    bar, the same direction, or too weak), which spares a database transaction per bar."""
    if not row.scored or row.direction is None:
        return None
    response = reversal_response(
        watch.direction,
        row.direction,
        row.strength,
        on_reversal=watch.on_reversal,
        reversal_score=watch.reversal_score,
    )
    if response is ReversalResponse.NONE:
        return None
    return ReversalSignal(row.direction, row.strength, mark, row.bar_open_time_ms, time_ms)
