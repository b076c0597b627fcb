"""The backtest: the live cycle's decisions replayed hour by hour over stored history.

Two passes, so that a setting or a baseline can be traded again without scoring again:
1. `record_tape` walks the hours: the Elite pool (rebuilt daily, build_elite) and the Overlay (hourly, the rules
   of build_overlay run over every hour at once by ats.universe.overlay_series) from the bars closed by then, every
   symbol scored by the factor engine (ats.factors.score_series: at each bar the cold scan's row), and what a
   cycle would see: each universe symbol's signal and every symbol's direction (open positions read reversals).
2. `trade` walks the same hours with an account: fills from the paper exchange (ats.backtest.paper), funding from
   stored rates, reversals to open positions, then the entry decision of the cycle (ats.placement, the code the
   order-placement flow runs) and each approved position opened and managed by ats.lifecycle through an
   in-memory journal. A signal at the close of hour H enters at the open of H + 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal

import numpy as np

from ats.backtest.history import DAY_MS, History, TickerSeries
from ats.backtest.paper import Bar, PaperExchange
from ats.config import DEFAULT_MIN_SCORE, Settings
from ats.domain import Direction, Signal, SymbolRules, interval_ms
from ats.exchange.base import AccountInfo
from ats.factors.series import score_series
from ats.journal import MemoryJournal
from ats.lifecycle import FundingPaid, Position, ReversalSignal
from ats.placement import Candidate, LedgerDay, account_view, decide_entries, exposure_of, halt_reason, open_approved
from ats.risk import DEFAULT_TAKER_FEE_RATE
from ats.universe import (
    PoolResult,
    SymbolStatsSeries,
    bars_for,
    build_elite,
    combine,
    fall_back,
    measure_series,
    overlay_series,
)

ZERO = Decimal(0)
ACCOUNT = "backtest"
DirectionRule = Callable[["TapeSignal"], Direction]


@dataclass(frozen=True, slots=True)
class TapeSignal:
    """A universe symbol's scored signal at one hour, and its 24 h move (the momentum baseline's direction)."""

    signal: Signal
    move_24h: float


@dataclass(frozen=True, slots=True)
class Hour:
    """What the cycle at one bar close saw."""

    bar_open_ms: int  # the bar that just closed
    universe: tuple[str, ...]
    signals: tuple[TapeSignal, ...]  # universe symbols with a direction, strongest first
    directions: Mapping[str, tuple[Direction, float]]  # every scored symbol: (direction, strength)


@dataclass(frozen=True, slots=True)
class Tape:
    interval: str
    start_ms: int
    end_ms: int
    hours: tuple[Hour, ...]
    pool_notes: tuple[str, ...] = ()


def _universe_window(settings: Settings) -> int:
    """Bars the pool rules read: their longest window plus the 1h move's lag."""
    config = settings.universe
    longest = max(
        getattr(config, f.name) for f in fields(config) if f.name.endswith("_hours") and "refresh" not in f.name
    )
    return bars_for(longest, settings.bar_interval) + bars_for(1.0, settings.bar_interval) + 1


def record_tape(history: History, settings: Settings, start_ms: int, end_ms: int, *, floor: float = 60.0) -> Tape:
    """Score every hour of [start, end) as the live cycle would (see the module docstring); signals below `floor`
    are not kept (a trade pass may use any min_score at or above it)."""
    interval = history.interval
    if interval != settings.bar_interval:
        raise ValueError(f"the history is {interval}, the settings trade {settings.bar_interval}")
    step = interval_ms(interval)
    symbols = sorted(history.bars)
    if not symbols:
        raise ValueError("no bars to backtest")
    rules = {s: history.rules_of(s) for s in symbols}
    first = {s: int(np.searchsorted(history.bars[s].open_time, start_ms)) for s in symbols}
    last = {s: int(np.searchsorted(history.bars[s].open_time, end_ms)) for s in symbols}
    # Every symbol scored at every bar in one pass: at each bar exactly the cold scan of the history up to it.
    scores = score_series([history.bars[s].slice(0, last[s]) for s in symbols], as_of_ms=end_ms)
    row_of = {s: i for i, s in enumerate(scores.symbols)}
    tickers_of = {s: TickerSeries(history.bars[s]) for s in symbols}
    position = dict(first)
    window = _universe_window(settings)
    # The pool rules read each symbol's last `window` bars: measured at every bar close of the run in one pass.
    origin = {s: max(first[s] - window, 0) for s in symbols}
    measured = {
        s: measure_series(history.bars[s].slice(origin[s], last[s]), settings.universe, max_bars=window)
        for s in symbols
    }
    # The hours with a bar of any symbol, and each symbol's position after its bar of that hour (-1: none).
    walked: list[tuple[int, list[str]]] = []
    after: dict[str, list[tuple[int, int]]] = {s: [] for s in symbols}
    for bar_open in range(start_ms - start_ms % step, end_ms, step):
        fresh = []
        for s in symbols:
            opens, i = tickers_of[s].open_time, position[s]
            if i < len(opens) and opens[i] == bar_open:
                fresh.append(s)
                position[s] = i + 1
                after[s].append((len(walked), i + 1))
        if fresh:
            walked.append((bar_open, fresh))
    overlays = _overlays(symbols, rules, tickers_of, measured, origin, after, walked, step, settings)
    elite: PoolResult | None = None
    overlay: PoolResult | None = None
    notes: set[str] = set()
    hours: list[Hour] = []
    position = dict(first)
    for (bar_open, fresh), chosen_overlay in zip(walked, overlays, strict=True):
        as_of = bar_open + step
        for s in fresh:
            position[s] += 1
        column = int(np.searchsorted(scores.open_time, bar_open))
        if elite is None or elite.is_due(as_of, settings.universe):
            tickers = [t for t in (tickers_of[s].at(position[s]) for s in fresh) if t]
            stats = {s: measured[s].at(position[s] - 1 - origin[s]) for s in fresh}
            elite = build_elite(rules, tickers, {}, now_ms=as_of, config=settings.universe, previous=elite, stats=stats)
            notes.update(elite.notes)
        if chosen_overlay is None:
            overlay = fall_back("overlay", overlay, "no exchange info or 24h tickers to build from", as_of)
        else:
            overlay = PoolResult("overlay", chosen_overlay, as_of, "the Overlay rules at this hour (overlay_series)")
        universe = combine(elite, overlay).symbols
        directions: dict[str, tuple[Direction, float]] = {}
        scored = scores.scored[:, column].tolist()
        sides = scores.direction[:, column].tolist()
        strengths = scores.strength[:, column].tolist()
        for s in fresh:
            i = row_of[s]
            if scored[i] and sides[i] != 0:
                directions[s] = (Direction.LONG if sides[i] > 0 else Direction.SHORT, strengths[i])
        chosen = sorted(
            (s for s in universe if s in directions and directions[s][1] >= floor), key=lambda s: -directions[s][1]
        )
        signals = tuple(
            TapeSignal(scores.row(s, column).to_signal(), _move_24h(history, s, position[s])) for s in chosen
        )
        hours.append(Hour(bar_open, universe, signals, directions))
    return Tape(interval, start_ms, end_ms, tuple(hours), tuple(sorted(notes)))


def _overlays(
    symbols: Sequence[str],
    rules: Mapping[str, SymbolRules],
    tickers_of: Mapping[str, TickerSeries],
    measured: Mapping[str, SymbolStatsSeries],
    origin: Mapping[str, int],
    after: Mapping[str, Sequence[tuple[int, int]]],
    walked: Sequence[tuple[int, Sequence[str]]],
    step: int,
    settings: Settings,
) -> list[tuple[str, ...] | None]:
    """The Overlay at every walked hour (ats.universe.overlay_series): each symbol's ticker and stats at its bars,
    laid out (symbols, hours), what build_overlay would read from the tickers and stats of that hour."""
    shape = (len(symbols), len(walked))
    has_ticker, measured_cell = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    columns = {
        name: np.full(shape, np.nan)
        for name in ("quote", "day_move", "last", "move_1h", "volume_surge", "flow_imbalance", "quality")
    }
    for row, s in enumerate(symbols):
        if not after[s]:
            continue
        hour, end = (np.array(v, dtype=np.int64) for v in zip(*after[s], strict=True))
        there, quote, day_move, last = tickers_of[s].columns(end)
        has_ticker[row, hour] = there
        columns["quote"][row, hour], columns["day_move"][row, hour], columns["last"][row, hour] = quote, day_move, last
        stats = measured[s].columns(end - 1 - origin[s])
        measured_cell[row, hour] = stats[0]
        for name, values in zip(("move_1h", "volume_surge", "flow_imbalance", "quality"), stats[1:], strict=True):
            columns[name][row, hour] = values
    return overlay_series(
        symbols,
        rules,
        has_ticker=has_ticker,
        quote_volume=columns["quote"],
        day_move=columns["day_move"],
        last_price=columns["last"],
        measured=measured_cell,
        move_1h=columns["move_1h"],
        volume_surge=columns["volume_surge"],
        flow_imbalance=columns["flow_imbalance"],
        quality=columns["quality"],
        now_ms=np.array([bar_open + step for bar_open, _ in walked], dtype=np.int64),
        config=settings.universe,
    )


def _move_24h(history: History, symbol: str, end: int) -> float:
    series = history.bars[symbol]
    lag = bars_for(24.0, series.interval)
    if end <= lag:
        return 0.0
    return float(series.close[end - 1] / series.close[end - 1 - lag] - 1.0)


# ---------------------------------------------------------------------------------------------- the trade pass


@dataclass(frozen=True, slots=True)
class TradeSettings:
    """What the trade pass adds to the live settings: the account and how fills are modelled."""

    balance: Decimal = Decimal(10_000)
    slippage: Decimal = Decimal("0.0005")  # a fraction of the price, against us on every market fill
    taker_fee_rate: Decimal = DEFAULT_TAKER_FEE_RATE
    min_score: float = DEFAULT_MIN_SCORE


@dataclass(slots=True)
class Book:
    """The account as the trade pass keeps it: wallet, the day's ledger, and where each position's figures were."""

    wallet: Decimal
    ledger: LedgerDay
    booked: dict[str, Decimal] = field(default_factory=dict)  # key -> net realised already in the wallet
    references: dict[str, Decimal] = field(default_factory=dict)  # key -> price the entry was sized at


@dataclass(frozen=True, slots=True)
class Run:
    """One trade pass: the journal (every position and record), the equity at each bar close, and the book."""

    journal: MemoryJournal
    equity: tuple[tuple[int, Decimal], ...]
    exposure_hours: int
    hours: int
    halted_days: int
    end_ms: int
    reconcile_requests: int


def _bars_of(history: History, symbol: str, bar_open: int, index: int) -> list[Bar]:
    """The hour at `index` as paper bars: through its finer bars where they cover it, else the hour itself."""
    step = interval_ms(history.interval)
    fine = history.fine.get(symbol)
    if fine is not None and len(fine):
        lo, hi = np.searchsorted(fine.open_time, [bar_open, bar_open + step])
        if hi > lo:
            part = fine.slice(int(lo), int(hi))
            fine_step = interval_ms(fine.interval)
            return [
                Bar(int(t), int(t) + fine_step - 1, _dec(o), _dec(h), _dec(low))
                for t, o, h, low in zip(part.open_time, part.open, part.high, part.low, strict=True)
            ]
    series = history.bars[symbol]
    return [
        Bar(bar_open, bar_open + step - 1, _dec(series.open[index]), _dec(series.high[index]), _dec(series.low[index]))
    ]


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _funding_between(
    history: History, symbol: str, start_ms: int, end_ms: int
) -> Iterator[tuple[int, Decimal, Decimal | None]]:
    rates = history.funding.get(symbol)
    if rates is None:
        return
    lo = int(np.searchsorted(rates.time_ms, start_ms))
    for i in range(lo, len(rates)):
        if rates.time_ms[i] >= end_ms:
            return
        yield rates.time_ms[i], rates.rate[i], rates.mark_price[i]


def trade(
    tape: Tape,
    history: History,
    settings: Settings,
    options: TradeSettings,
    *,
    direction_rule: DirectionRule | None = None,
) -> Run:
    """Trade the tape's hours with one account (see the module docstring); `direction_rule` replaces each signal's
    direction (the baselines), everything else stays the model's."""
    step = interval_ms(tape.interval)
    journal = MemoryJournal()
    paper = PaperExchange(journal, taker_fee_rate=options.taker_fee_rate, slippage=options.slippage)
    rules: dict[str, SymbolRules] = {s: history.rules_of(s) for s in history.bars}
    book = Book(options.balance, LedgerDay(tape.start_ms - tape.start_ms % DAY_MS))
    halted_days: set[int] = set()
    active: list[str] = []  # keys of positions not closed, in opening order
    equity: list[tuple[int, Decimal]] = []
    exposure_hours = 0
    for hour in tape.hours:
        bar_open, as_of = hour.bar_open_ms, hour.bar_open_ms + step
        day = bar_open - bar_open % DAY_MS
        if day != book.ledger.day_start_ms:
            book.ledger = LedgerDay(day)
        closes = Closes(history, as_of)
        # 1. the bar that just closed, for the symbols with a position or an order: funding at its open, then fills
        busy = {journal.positions[k].symbol for k in active} | paper.symbols_with_orders()
        for symbol in sorted(busy):
            series = history.bars[symbol]
            i = int(np.searchsorted(series.open_time, bar_open))
            if i >= len(series) or int(series.open_time[i]) != bar_open:
                continue
            holders = [k for k in active if journal.positions[k].symbol == symbol]
            for time_ms, rate, mark in _funding_between(history, symbol, bar_open, as_of):
                price = mark if mark is not None else _dec(series.open[i])
                for key in holders:
                    p = journal.positions[key]
                    if p.open_qty > 0:
                        amount = -rate * p.open_qty * price * p.direction.sign
                        paper.perform(
                            journal.apply(key, FundingPaid(amount, time_ms, f"F{time_ms}"), source="backtest")[1],
                            time_ms,
                        )
            if paper.has_orders(symbol):
                paper.on_bar(symbol, _bars_of(history, symbol, bar_open, i))
        _settle(book, journal, active)
        # 2. reversals for what is open
        for key in list(active):
            p = journal.positions[key]
            seen = hour.directions.get(p.symbol)
            mark = closes.get(p.symbol)
            if p.is_terminal or seen is None or seen[0] is p.direction or mark is None:
                continue
            event = ReversalSignal(seen[0], seen[1], mark, bar_open, as_of)
            paper.perform(journal.apply(key, event, source="backtest")[1], as_of)
        _settle(book, journal, active)
        # 3. the cycle: the entry decision over this hour's signals
        open_positions = [journal.positions[k] for k in active]
        unrealized = sum((_unrealized(p, closes) for p in open_positions), ZERO)
        exposures = [
            exposure_of(p, reference=book.references.get(p.key), mark=closes.get(p.symbol)) for p in open_positions
        ]
        margin = sum((e.margin for e in exposures if not e.pending), ZERO)
        info = AccountInfo(
            book.wallet, unrealized, book.wallet + unrealized, book.wallet - margin, book.wallet - margin
        )
        view = account_view(exposures, book.ledger, info, ())
        halted, new_halt = halt_reason(book.ledger, view.snapshot, settings.limits)
        if new_halt and halted is not None:
            book.ledger = replace(book.ledger, halted=True, halted_reason=halted)
            halted_days.add(day)
        candidates = [
            Candidate(n, replace(t.signal, direction=direction_rule(t)) if direction_rule else t.signal, "scan")
            for n, t in enumerate(hour.signals)
            if t.signal.strength >= options.min_score
        ]
        if candidates:
            decisions = decide_entries(
                candidates,
                view.snapshot,
                account=ACCOUNT,
                limits=settings.limits,
                level_settings=settings.levels,
                rules=rules,
                marks={c.signal.symbol: closes[c.signal.symbol] for c in candidates},
                halted=halted,
                newest_bar_ms=bar_open,
                interval=tape.interval,
                taker_fee_rate=options.taker_fee_rate,
            )
            for decision in decisions:
                if decision.order is None:
                    continue
                position, actions = open_approved(
                    decision,
                    rules[decision.order.symbol],
                    settings.monitor,
                    taker_fee_rate=options.taker_fee_rate,
                    time_ms=as_of,
                )
                journal.add(position, actions)
                book.references[position.key] = decision.order.reference_price
                active.append(position.key)
                paper.perform(actions, as_of)
        open_now = [journal.positions[k] for k in active]
        exposure_hours += any(p.open_qty > 0 for p in open_now)
        equity.append((as_of, book.wallet + sum((_unrealized(p, closes) for p in open_now), ZERO)))
    return Run(
        journal,
        tuple(equity),
        exposure_hours,
        len(tape.hours),
        len(halted_days),
        tape.hours[-1].bar_open_ms + step if tape.hours else tape.start_ms,
        len(paper.reconcile_requests),
    )


class Closes(Mapping[str, Decimal]):
    """Each symbol's last close of a bar opened before `before_ms`, converted only when asked (most symbols never
    are): the marks of a cycle, and where positions still open at the end of a run are valued."""

    def __init__(self, history: History, before_ms: int) -> None:
        self._history = history
        self._before_ms = before_ms
        self._known: dict[str, Decimal] = {}

    def __getitem__(self, symbol: str) -> Decimal:
        known = self._known.get(symbol)
        if known is None:
            series = self._history.bars[symbol]
            i = int(np.searchsorted(series.open_time, self._before_ms)) - 1
            if i < 0:
                raise KeyError(symbol)
            known = self._known[symbol] = _dec(series.close[i])
        return known

    def __iter__(self) -> Iterator[str]:
        return iter(self._history.bars)

    def __len__(self) -> int:
        return len(self._history.bars)


def _unrealized(p: Position, closes: Mapping[str, Decimal]) -> Decimal:
    mark = closes.get(p.symbol)
    if mark is None or p.open_qty <= 0:
        return ZERO
    return (mark - p.entry_price) * p.open_qty * p.direction.sign


def _settle(book: Book, journal: MemoryJournal, active: list[str]) -> None:
    """Move what positions realised since the last look into the wallet and the day's ledger; drop closed ones."""
    for key in list(active):
        p = journal.positions[key]
        realized = p.realized_pnl
        net = realized - p.fees + p.funding
        before = book.booked.get(key, ZERO)
        if net != before:
            ledger = book.ledger
            gross_before = book.booked.get(key + ":gross", ZERO)
            fees_before = book.booked.get(key + ":fees", ZERO)
            funding_before = book.booked.get(key + ":funding", ZERO)
            book.ledger = replace(
                ledger,
                realized_pnl=ledger.realized_pnl + realized - gross_before,
                fees=ledger.fees + p.fees - fees_before,
                funding=ledger.funding + p.funding - funding_before,
            )
            book.wallet += net - before
            book.booked[key] = net
            book.booked[key + ":gross"] = realized
            book.booked[key + ":fees"] = p.fees
            book.booked[key + ":funding"] = p.funding
        if p.is_terminal:
            active.remove(key)


# ---------------------------------------------------------------------------------------------- baselines


def always_long(_: TapeSignal) -> Direction:
    return Direction.LONG


def momentum_24h(signal: TapeSignal) -> Direction:
    return Direction.LONG if signal.move_24h >= 0 else Direction.SHORT


def random_directions(seed: int) -> DirectionRule:
    """A fair coin per signal, seeded: the same seed gives the same directions."""
    coin = random.Random(seed)

    def rule(_: TapeSignal) -> Direction:
        return Direction.LONG if coin.random() < 0.5 else Direction.SHORT

    return rule


BASELINES: Mapping[str, DirectionRule] = {"always long": always_long, "24h momentum": momentum_24h}


def baseline_rules(draws: int, seed: int) -> Sequence[tuple[str, DirectionRule]]:
    return [*BASELINES.items(), *((f"random #{n}", random_directions(seed + n)) for n in range(draws))]
