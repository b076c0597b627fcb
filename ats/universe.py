"""Which symbols the system looks at: the Elite pool (refreshed daily) and the Overlay pool (hourly).

Elite: liquid USDT perpetuals in TRADING status, ranked by 24h quote volume and trade count, minus those with
anomalous or poor-quality bars and those caught by an exclusion rule (an extreme 1h move, a volume collapse,
a price pinned at its 72h extreme). Overlay: new listings (by onboard date) and current movers (1h change,
volume surge, taker-flow surge), refusing symbols that already moved too far (anti-chase). The universe is
Overlay first, then Elite, without duplicates.

Windows are configured in hours and converted to bars of the caller's interval. Below an hour a bar stands for an
hour of trading (`UniverseConfig.for_interval`): the factor model counts bars whatever the interval, and the sim's
fast markets move every bar like an hour, so there "72 hours" means 72 bars. When a symbol's history is shorter,
what exists is used and the result says so.
Bars whose quote volume is unknown (history holding only OHLCV) get an estimate, volume x typical price, marked
as such in every reason and note it shapes; an unknown taker-buy volume leaves the flow imbalance unknown.
Everything here is pure: fetching, caching (Elite 24 h, Overlay 1 h), scheduling and storage belong to the
flows. A build that fails or finds nothing falls back to the previous pool and says so; it never silently
yields nothing. Every excluded symbol carries a human reason (for the Prefect artifact).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from ats.clock import format_utc
from ats.domain import BAR_FIELDS, Bars, FloatArray, IntArray, SymbolRules, interval_ms
from ats.exchange.base import Ticker24h

HOUR_MS = 3_600_000
PoolKind = Literal["elite", "overlay"]


@dataclass(frozen=True, slots=True)
class UniverseConfig:
    """Thresholds of both pools. Times are in hours (converted to bars); moves and ratios are fractions."""

    # --- Elite -------------------------------------------------------------------------------------
    elite_refresh_hours: float = 24.0  # how often the flows rebuild the Elite pool
    elite_size: int = 30  # symbols kept, best ranked first
    elite_min_quote_volume: float = 20_000_000.0  # 24h quote volume (USDT) below this: not liquid enough
    elite_min_trades: int = 20_000  # 24h trade count below this: too few participants
    elite_min_age_hours: float = 168.0  # younger listings belong to the Overlay, not the Elite
    volume_rank_weight: float = 0.6  # ranking = this * rank(quote volume) + rest * rank(trade count)
    anomaly_window_hours: float = 72.0  # bars inspected for anomalies and quality
    anomaly_normal_ratio: float = 4.0  # largest bar move / median move at or below this: anomaly 0
    anomaly_extreme_ratio: float = 12.0  # ... at or above this: anomaly 100
    max_anomaly: float = 60.0  # anomaly score at or above this excludes
    min_quality: float = 50.0  # quality score below this excludes
    coarse_tick_fraction: float = 0.001  # tick size / price at or above this: quality 0 (moves in big steps)
    fine_tick_fraction: float = 0.0001  # ... at or below this: no tick penalty
    move_hours: float = 1.0  # the span of the "1h" move, volume surge and taker flow
    extreme_move: float = 0.15  # |1h move| above this within the lookback excludes
    extreme_move_lookback_hours: float = 24.0
    collapse_recent_hours: float = 6.0  # recent quote volume ...
    collapse_base_hours: float = 72.0  # ... against the average of the hours before it
    collapse_ratio: float = 0.25  # recent / earlier average below this: volume collapsed
    pin_window_hours: float = 72.0  # the extreme a price can be pinned at
    pin_hours: float = 3.0  # closes this long within pin_tolerance of that extreme: pinned
    pin_tolerance: float = 0.003

    # --- Overlay -----------------------------------------------------------------------------------
    overlay_refresh_hours: float = 1.0  # how often the flows rebuild the Overlay pool
    overlay_size: int = 10
    overlay_min_quote_volume: float = 5_000_000.0  # 24h quote volume (USDT) below this: ignored
    new_listing_hours: float = 72.0  # onboarded within this: a new listing
    mover_move: float = 0.03  # |1h change| at or above this makes a mover
    mover_volume_surge: float = 3.0  # last hour's quote volume / the hourly average over surge_base_hours
    mover_flow_surge: float = 0.2  # |taker buy share * 2 - 1| over the last hour
    surge_base_hours: float = 24.0
    chase_move: float = 0.10  # |1h change| above this: already moved too far (anti-chase)
    chase_day_move: float = 0.30  # |24h change| above this: already moved too far (anti-chase)

    def __post_init__(self) -> None:
        hours = [v for k, v in _fields(self).items() if k.endswith("_hours")]
        if any(h <= 0 for h in hours) or self.elite_size < 1 or self.overlay_size < 0:
            raise ValueError("invalid UniverseConfig: hours and sizes must be positive")
        if not 0 <= self.volume_rank_weight <= 1 or self.anomaly_extreme_ratio <= self.anomaly_normal_ratio:
            raise ValueError("invalid UniverseConfig: rank weight in [0, 1], extreme ratio above normal")
        if self.fine_tick_fraction >= self.coarse_tick_fraction:
            raise ValueError("invalid UniverseConfig: fine_tick_fraction must be below coarse_tick_fraction")

    def time_scaled(self, factor: float) -> UniverseConfig:
        """The same rules with every window multiplied by `factor`: a compressed market (1m bars that move like
        hourly bars) uses factor 1/60, so "72 hours" means 72 of its bars."""
        if factor <= 0:
            raise ValueError("the time factor must be positive")
        hours = {k: v * factor for k, v in _fields(self).items() if k.endswith("_hours")}
        return replace(self, **hours)

    def for_interval(self, interval: str) -> UniverseConfig:
        """The rules as the pools of a market of `interval` bars read them: below an hour every bar stands for an
        hour (the factor model counts bars; the sim's `--interval 1m` market moves each bar like an hour), so the
        windows, listing ages and refresh periods are scaled to bar / hour; hourly and coarser bars keep hours."""
        step = interval_ms(interval)
        return self if step >= HOUR_MS else self.time_scaled(step / HOUR_MS)


def _fields(config: UniverseConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class PoolResult:
    """One pool build: the symbols (best first), why the others were left out, and whether it fell back."""

    kind: PoolKind
    symbols: tuple[str, ...]
    built_at_ms: int
    reason: str  # one human sentence: what happened
    fell_back: bool = False  # True: `symbols` is the previous pool, kept because this build failed
    excluded: dict[str, str] = field(default_factory=dict)  # symbol -> why it is not in the pool
    notes: tuple[str, ...] = ()  # caveats, e.g. windows caveats to the history available
    scores: dict[str, float] = field(default_factory=dict)  # ranking score of each selected symbol

    def is_due(self, now_ms: int, config: UniverseConfig) -> bool:
        """True when the flows should rebuild this pool (its refresh period has passed, or it fell back)."""
        hours = config.elite_refresh_hours if self.kind == "elite" else config.overlay_refresh_hours
        return self.fell_back or now_ms - self.built_at_ms >= hours * HOUR_MS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (for storage); `from_dict` reverses it."""
        return {
            "kind": self.kind,
            "symbols": list(self.symbols),
            "built_at_ms": self.built_at_ms,
            "reason": self.reason,
            "fell_back": self.fell_back,
            "excluded": dict(self.excluded),
            "notes": list(self.notes),
            "scores": dict(self.scores),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PoolResult:
        kind = data["kind"]
        if kind not in ("elite", "overlay"):
            raise ValueError(f"unknown pool kind {kind!r}")
        return PoolResult(
            kind=kind,
            symbols=tuple(data["symbols"]),
            built_at_ms=int(data["built_at_ms"]),
            reason=str(data["reason"]),
            fell_back=bool(data.get("fell_back", False)),
            excluded=dict(data.get("excluded", {})),
            notes=tuple(data.get("notes", ())),
            scores={k: float(v) for k, v in data.get("scores", {}).items()},
        )

    def to_markdown(self) -> str:
        """A report for a Prefect artifact: the pool, the caveats, and every exclusion grouped by rule."""
        lines = [f"## {self.kind.capitalize()} pool ({format_utc(self.built_at_ms)})", "", self.reason, ""]
        if self.fell_back:
            lines += ["**Fell back to the previous pool.**", ""]
        if self.symbols:
            lines += ["| # | symbol | score |", "|---|---|---|"]
            lines += [f"| {i} | {s} | {self.scores.get(s, 0.0):.3f} |" for i, s in enumerate(self.symbols, 1)]
            lines.append("")
        if self.notes:
            lines += ["### Notes", *(f"- {n}" for n in self.notes), ""]
        if self.excluded:
            lines += [f"### Excluded ({len(self.excluded)})", "| symbol | reason |", "|---|---|"]
            lines += [f"| {s} | {r} |" for s, r in sorted(self.excluded.items())]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Universe:
    """The symbols to scan: Overlay first, then Elite, each once."""

    symbols: tuple[str, ...]
    elite: PoolResult
    overlay: PoolResult


def combine(elite: PoolResult, overlay: PoolResult) -> Universe:
    ordered = tuple(dict.fromkeys((*overlay.symbols, *elite.symbols)))
    return Universe(ordered, elite, overlay)


def normalise_symbols(names: Iterable[str]) -> list[str]:
    """Symbols as given by a person ("btcusdt, SOLUSDT"): upper-cased, blanks and repeats dropped, order kept."""
    return list(dict.fromkeys(n.strip().upper() for n in names if n.strip()))


def unknown_symbols_reason(requested: Sequence[str], rules: Mapping[str, SymbolRules]) -> str | None:
    """One sentence naming every requested symbol that is not a trading USDT perpetual (with similar ones that
    are), or None when all are: checked before a run starts, so one typo does not fail it halfway."""
    tradable = sorted(s for s, r in rules.items() if r.is_tradable_perpetual)
    unknown = [s for s in requested if not (s in rules and rules[s].is_tradable_perpetual)]
    if not unknown:
        return None
    named = [
        s if s not in rules else f"{s} ({rules[s].status} {rules[s].contract_type} {rules[s].quote_asset})"
        for s in unknown
    ]
    verb = "is not a trading USDT perpetual" if len(unknown) == 1 else "are not trading USDT perpetuals"
    similar = list(dict.fromkeys(m for s in unknown for m in difflib.get_close_matches(s, tradable, n=3, cutoff=0.75)))
    hint = f"; similar: {', '.join(similar[:5])}" if similar else ""
    return f"{', '.join(named)} {verb} on this exchange{hint}"


def fall_back(
    kind: PoolKind,
    previous: PoolResult | None,
    reason: str,
    now_ms: int,
    excluded: Mapping[str, str] | None = None,
) -> PoolResult:
    """The result of a failed or empty build: the previous pool if there is one, saying why and how old.

    `excluded` carries this build's exclusions, so the report still shows why nothing qualified.
    """
    if previous is None or not previous.symbols:
        return PoolResult(
            kind, (), now_ms, f"{reason}; no previous {kind} pool to fall back on", excluded=dict(excluded or {})
        )
    age_h = (now_ms - previous.built_at_ms) / HOUR_MS
    return PoolResult(
        kind,
        previous.symbols,
        previous.built_at_ms,
        f"{reason}; kept the previous {kind} pool built {age_h:.1f} h ago",
        fell_back=True,
        excluded=dict(excluded or {}),
        notes=previous.notes,
        scores=dict(previous.scores),
    )


# ---------------------------------------------------------------------------------------------- measurements


def bars_for(hours: float, interval: str) -> int:
    """A duration in bars of the interval (at least one bar)."""
    return max(1, round(hours * HOUR_MS / interval_ms(interval)))


@dataclass(frozen=True, slots=True)
class SymbolStats:
    """What the pool rules read from one symbol's recent closed bars."""

    move_1h: float  # last close / close one hour earlier - 1
    max_move_1h: float  # largest |1h move| within the extreme-move lookback
    volume_ratio: float  # recent quote volume per bar / the earlier average (collapse when small)
    volume_surge: float  # last hour's quote volume per bar / the surge-base average
    flow_imbalance: float | None  # |taker buy share * 2 - 1| over the last hour; None when taker buys are unknown
    pinned: str | None  # "high" or "low" when the close sits at the window's extreme
    anomaly: float  # 0..100
    anomaly_detail: str
    quality: float  # 0..100 (tick penalty applied by the pool builder, which knows the tick size)
    quality_detail: str
    caveats: tuple[str, ...]  # windows the history did not cover, or that one bar is too coarse for
    quote_estimated: bool = False  # some quote volumes are estimates (volume x typical price), not the exchange's


def measure(bars: Bars, now_ms: int, config: UniverseConfig) -> SymbolStats | None:
    """Stats from the bars closed at now_ms; None without at least two closed bars."""
    step = interval_ms(bars.interval)
    closed = bars.closed_by(now_ms)
    all_quote, all_estimated = quote_volume(closed)
    keep = np.flatnonzero(_usable(closed, all_quote))
    if keep.size < 2:
        return None
    b = Bars(closed.symbol, closed.interval, closed.open_time[keep], *(getattr(closed, n)[keep] for n in BAR_FIELDS))
    quote_known, estimated = all_quote[keep], all_estimated[keep]
    n = len(b)

    def window(hours: float) -> int:
        return min(bars_for(hours, b.interval), n)

    hour = bars_for(config.move_hours, b.interval)
    lag = min(hour, n - 1)
    close, quote = b.close, quote_known
    moves = close[lag:] / close[:-lag] - 1.0
    lookback = window(config.extreme_move_lookback_hours)
    recent_moves = moves[-lookback:]

    recent = window(config.collapse_recent_hours)
    base = window(config.collapse_base_hours)
    earlier = quote[-base:-recent] if base > recent else quote[-base:]
    volume_ratio = _ratio(quote[-recent:].mean(), earlier.mean())

    surge_base = window(config.surge_base_hours)
    last_hour = min(hour, n)
    volume_surge = _ratio(quote[-last_hour:].mean(), quote[-surge_base:].mean())
    bought = b.taker_buy_quote_volume[-last_hour:].sum()
    traded = b.quote_volume[-last_hour:].sum()  # the exchange's own figures only: a taker share of an estimate is not
    flow_imbalance = (
        None if not np.isfinite(bought + traded) else abs(2.0 * _ratio(bought, traded) - 1.0) if traded > 0 else 0.0
    )

    pin_window = window(config.pin_window_hours)
    pin_bars = min(bars_for(config.pin_hours, b.interval), n)
    high, low = b.high[-pin_window:].max(), b.low[-pin_window:].min()
    tail = close[-pin_bars:]
    pinned = (
        "high" if (tail >= high * (1 - config.pin_tolerance)).all() else
        "low" if (tail <= low * (1 + config.pin_tolerance)).all() else None
    )  # fmt: skip

    inspect = window(config.anomaly_window_hours)
    anomaly, anomaly_detail = _anomaly(b.slice(n - inspect, n), config)
    quality, quality_detail = _activity(b.slice(n - inspect, n), quote[n - inspect :], step)
    return SymbolStats(
        move_1h=float(moves[-1]),
        max_move_1h=float(np.abs(recent_moves).max()),
        volume_ratio=volume_ratio,
        volume_surge=volume_surge,
        flow_imbalance=None if flow_imbalance is None else float(flow_imbalance),
        pinned=pinned,
        anomaly=anomaly,
        anomaly_detail=anomaly_detail,
        quality=quality,
        quality_detail=quality_detail,
        caveats=_caveats(n, b.interval, config),
        quote_estimated=bool(estimated.any()),
    )


def _usable(bars: Bars, quote: FloatArray) -> npt.NDArray[np.bool_]:
    """The bars the stats read: a positive close and a known (or estimated) quote volume."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(bars.close) & (bars.close > 0) & np.isfinite(quote)


def _caveats(n: int, interval: str, config: UniverseConfig) -> tuple[str, ...]:
    """The windows that `n` usable bars of `interval` do not cover (what exists is used), in the order read."""
    found: list[str] = []
    hour = bars_for(config.move_hours, interval)
    if interval_ms(interval) > config.move_hours * HOUR_MS:
        found.append(f"1h windows measured over one {interval} bar")
    if hour >= n:
        found.append(f"1h move ({n} of {hour + 1} bars)")
    for hours, label in _windows_read(config):
        wanted = bars_for(hours, interval)
        if wanted > n:
            found.append(f"{label} {hours:g}h ({n} of {wanted} bars)")
    return tuple(found)


def _windows_read(config: UniverseConfig) -> tuple[tuple[float, str], ...]:
    """The windows whose shortening `_caveats` reports, with their names."""
    return (
        (config.extreme_move_lookback_hours, "extreme-move lookback"),
        (config.collapse_recent_hours, "collapse recent"),
        (config.collapse_base_hours, "collapse base"),
        (config.surge_base_hours, "surge base"),
        (config.pin_window_hours, "pin window"),
        (config.anomaly_window_hours, "anomaly window"),
    )


def _bars_covering(interval: str, config: UniverseConfig) -> int:
    """Usable bars from which `_caveats` no longer changes (every window it reports on is covered)."""
    windows = (bars_for(hours, interval) for hours, _ in _windows_read(config))
    return max(bars_for(config.move_hours, interval) + 1, *windows)


@dataclass(frozen=True, slots=True)
class SymbolStatsSeries:
    """`measure` at the close of every bar of one symbol's history, from one vectorised pass (the backtest reads it).

    `at(i)` equals measure(bars, open_time[i] + interval, config), or with `max_bars` the measure of the last
    max_bars bars up to bar i (a caller slicing a window first), exactly: each window is reduced by the NumPy
    function measure calls on an equal-length slice (so sums keep its order), and the texts come from the same
    helpers. Values are held as Python lists: `at` is called once per symbol and hour.
    """

    interval: str
    config: UniverseConfig
    covering: int  # usable bars from which no window is shortened (the caveats stop changing)
    usable: list[int]  # usable bars bar i's measure reads (fewer than 2: no stats)
    move_1h: list[float]
    max_move_1h: list[float]
    volume_ratio: list[float]
    volume_surge: list[float]
    flow_imbalance: list[float | None]
    pinned: list[str | None]
    anomaly: list[float]
    anomaly_label: list[int]  # index in ANOMALY_LABELS of the winning score, or _NO_LABEL, or _OWN_TEXT
    anomaly_ratio: list[float]
    quality: list[float]
    traded: list[float]
    complete: list[float]
    quote_estimated: list[bool]
    anomaly_text: dict[int, str]  # rows measured one by one (a non-finite bar range in the window)
    _caveats: dict[int, tuple[str, ...]] = field(default_factory=dict)  # by usable-bar count, filled on demand
    _quality_details: dict[tuple[float, float], str] = field(default_factory=dict)  # by (traded, complete)

    def __len__(self) -> int:
        return len(self.usable)

    def columns(self, rows: IntArray) -> tuple[npt.NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray]:
        """What overlay_verdicts reads of `at(i)` for many rows at once: whether there are stats, then move_1h,
        volume_surge, flow_imbalance (NaN where unknown) and quality (NaN where there are no stats)."""
        measured = np.asarray(self.usable, dtype=np.int64)[rows] >= 2

        def column(values: Sequence[float | None]) -> FloatArray:
            picked = np.array([np.nan if v is None else v for v in values], dtype=np.float64)[rows]
            return np.where(measured, picked, np.nan)

        return (
            measured,
            column(self.move_1h),
            column(self.volume_surge),
            column(self.flow_imbalance),
            column(self.quality),
        )

    def at(self, i: int) -> SymbolStats | None:
        """The stats at the close of bar i (None where measure gives None)."""
        n = self.usable[i]
        if n < 2:
            return None
        label = self.anomaly_label[i]
        anomaly = self.anomaly[i]
        if label == _NO_LABEL:
            anomaly_detail = NO_ANOMALY
        elif label == _OWN_TEXT:
            anomaly_detail = self.anomaly_text[i % len(self.usable)]
        else:
            anomaly_detail = _anomaly_detail(ANOMALY_LABELS[label], self.anomaly_ratio[i])
        key = min(n, self.covering)
        caveats = self._caveats.get(key)
        if caveats is None:
            caveats = self._caveats[key] = _caveats(key, self.interval, self.config)
        activity = (self.traded[i], self.complete[i])
        quality_detail = self._quality_details.get(activity)
        if quality_detail is None:
            quality_detail = self._quality_details[activity] = _quality_detail(*activity)
        return SymbolStats(
            self.move_1h[i],
            self.max_move_1h[i],
            self.volume_ratio[i],
            self.volume_surge[i],
            self.flow_imbalance[i],
            self.pinned[i],
            anomaly,
            anomaly_detail,
            self.quality[i],
            quality_detail,
            caveats,
            self.quote_estimated[i],
        )


_NO_LABEL, _OWN_TEXT = -1, -2  # anomaly_label: no anomaly; the row's text is in anomaly_text


def measure_series(bars: Bars, config: UniverseConfig, *, max_bars: int | None = None) -> SymbolStatsSeries:
    """`measure` at every bar close of `bars` in one pass (see SymbolStatsSeries): what a replay hour by hour needs,
    at the cost of a few measure calls instead of one per bar."""
    if len(bars) > 1 and not bool(np.all(np.diff(bars.open_time) > 0)):
        raise ValueError(f"{bars.symbol}: bars must be in time order without duplicates")
    if max_bars is not None and max_bars < 1:
        raise ValueError("max_bars must be positive")
    step = interval_ms(bars.interval)
    all_quote, all_estimated = quote_volume(bars)
    usable = _usable(bars, all_quote)
    keep = np.flatnonzero(usable)
    seen = np.cumsum(usable, dtype=np.int64)  # usable bars up to and including each bar
    usable_count = seen.copy()
    if max_bars is not None and max_bars < len(bars):
        usable_count[max_bars:] -= seen[:-max_bars]
    rows = np.flatnonzero(usable_count >= 2)
    end = seen[rows] - 1  # each row's last usable bar, in the usable bars' numbering
    n = usable_count[rows]
    b = Bars(bars.symbol, bars.interval, bars.open_time[keep], *(getattr(bars, f)[keep] for f in BAR_FIELDS))
    close, quote, estimated = b.close, all_quote[keep], all_estimated[keep]

    def window(hours: float) -> IntArray:
        return np.minimum(bars_for(hours, b.interval), n)

    hour = bars_for(config.move_hours, b.interval)
    lag = np.minimum(hour, n - 1)
    move = close[end] / close[end - lag] - 1.0
    # The extreme-move lookback reads the last `lookback` 1h moves, of which n - hour exist.
    max_move = np.abs(move)
    long = np.flatnonzero(n > hour)
    if long.size:
        moves = np.full(len(b), np.nan)
        moves[hour:] = np.abs(close[hour:] / close[:-hour] - 1.0)
        lookback = np.minimum(window(config.extreme_move_lookback_hours), n - hour)
        max_move[long] = _window_max(moves, end[long], lookback[long])

    recent, base = window(config.collapse_recent_hours), window(config.collapse_base_hours)
    split = base > recent
    earlier = _windows(quote, np.where(split, end - recent, end), np.where(split, base - recent, base), np.mean)
    volume_ratio = _ratios(_windows(quote, end, recent, np.mean), earlier)

    last_hour = np.minimum(hour, n)
    volume_surge = _ratios(
        _windows(quote, end, last_hour, np.mean), _windows(quote, end, window(config.surge_base_hours), np.mean)
    )
    bought = _windows(b.taker_buy_quote_volume, end, last_hour, np.sum)
    traded = _windows(b.quote_volume, end, last_hour, np.sum)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        flow_known = np.isfinite(bought + traded)
        flow = np.where(traded > 0, np.abs(2.0 * (bought / traded) - 1.0), 0.0)

    pin_window = window(config.pin_window_hours)
    pin_bars = np.minimum(bars_for(config.pin_hours, b.interval), n)
    high = _window_max(b.high, end, pin_window)
    low = _window_min(b.low, end, pin_window)
    pinned_high = _window_min(close, end, pin_bars) >= high * (1 - config.pin_tolerance)
    pinned_low = _window_max(close, end, pin_bars) <= low * (1 + config.pin_tolerance)

    inspect = window(config.anomaly_window_hours)
    anomaly, label, ratio, texts = _anomaly_series(b, end, inspect, config)
    first = end - inspect + 1
    complete = inspect / ((b.open_time[end] - b.open_time[first]) // step + 1)
    active = _counts((quote > 0) & (b.high > b.low))
    traded_share = (active[end + 1] - active[first]) / inspect
    quality = 100.0 * traded_share * complete
    estimates = _counts(estimated)

    size = len(bars)

    def spread(values: npt.NDArray[Any], fill: Any) -> list[Any]:
        out = np.full(size, fill, dtype=values.dtype)
        out[rows] = values
        return out.tolist()  # type: ignore[no-any-return]

    known_flow = spread(flow_known, False)
    pinned_at = spread(np.where(pinned_high, 1, np.where(pinned_low, 2, 0)), 0)
    return SymbolStatsSeries(
        interval=bars.interval,
        config=config,
        covering=_bars_covering(bars.interval, config),
        usable=usable_count.tolist(),
        move_1h=spread(move, np.nan),
        max_move_1h=spread(max_move, np.nan),
        volume_ratio=spread(volume_ratio, np.nan),
        volume_surge=spread(volume_surge, np.nan),
        flow_imbalance=[f if k else None for f, k in zip(spread(flow, np.nan), known_flow, strict=True)],
        pinned=[(None, "high", "low")[p] for p in pinned_at],
        anomaly=spread(anomaly, np.nan),
        anomaly_label=spread(label, _NO_LABEL),
        anomaly_ratio=spread(ratio, np.nan),
        quality=spread(quality, np.nan),
        traded=spread(traded_share, np.nan),
        complete=spread(complete, np.nan),
        quote_estimated=spread(estimates[end + 1] - estimates[end + 1 - n] > 0, False),
        anomaly_text={int(rows[r]): text for r, text in texts.items()},
    )


def _anomaly_series(
    b: Bars, end: IntArray, inspect: IntArray, config: UniverseConfig
) -> tuple[FloatArray, IntArray, FloatArray, dict[int, str]]:
    """`_anomaly` of the last `inspect` bars up to each end: the score, the winning label's index in ANOMALY_LABELS
    (or _NO_LABEL) and its ratio. Windows holding a non-finite bar range (or move) are measured by `_anomaly` itself:
    their label is _OWN_TEXT and their text is returned apart, by row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        moves = np.concatenate([[np.nan], np.abs(np.diff(np.log(b.close)))])
        ranges = np.log(np.maximum(b.high, b.close) / np.minimum(b.low, b.close))
    # moves[k] is the move into bar k: a window of `inspect` bars holds inspect - 1 of them
    windows = ((moves, inspect - 1), (ranges, inspect))
    clean = np.ones(end.size, dtype=bool)
    for values, length in windows:
        bad = _counts(~np.isfinite(values))
        clean &= bad[end + 1] == bad[end + 1 - length]
    best = np.zeros(end.size)
    label = np.full(end.size, _NO_LABEL)
    best_ratio = np.full(end.size, np.nan)
    span = config.anomaly_extreme_ratio - config.anomaly_normal_ratio
    for index, (values, length) in enumerate(windows):
        rows = np.flatnonzero(clean & (length >= 2))
        top = _window_max(values, end[rows], length[rows])
        rows, top = rows[top > 0], top[top > 0]  # a perfectly flat window: a quality matter, not an anomaly
        median = _window_median(values, end[rows], length[rows])
        with np.errstate(divide="ignore"):
            ratio = np.where(median > 0, top / median, np.inf)
        score = 100.0 * np.clip((ratio - config.anomaly_normal_ratio) / span, 0.0, 1.0)
        wins = score > best[rows]  # the first of equal scores wins, as max() picks it
        rows, score, ratio = rows[wins], score[wins], ratio[wins]
        best[rows], label[rows], best_ratio[rows] = score, index, ratio
    texts: dict[int, str] = {}
    for row in np.flatnonzero(~clean).tolist():
        best[row], texts[row] = _anomaly(b.slice(int(end[row] - inspect[row] + 1), int(end[row] + 1)), config)
        label[row] = _OWN_TEXT
    return best, label, best_ratio, texts


def _windows(values: FloatArray, end: IntArray, length: IntArray, reduce: Callable[..., FloatArray]) -> FloatArray:
    """reduce(values[e - l + 1 : e + 1]) for each (e, l). Slices of one length are reduced as rows of one 2-D block,
    which NumPy reduces each as it reduces that slice alone (a pairwise sum's order depends on the length only), so
    the results are measure's; lengths shared by few slices (the first bars of a history) are reduced one by one."""
    out = np.empty(end.size)
    order = np.argsort(length, kind="stable")
    sizes, starts, counts = np.unique(length[order], return_index=True, return_counts=True)
    for size, start, count in zip(sizes.tolist(), starts.tolist(), counts.tolist(), strict=True):
        rows = order[start : start + count]
        if count < _FEW_ROWS:
            for row, last in zip(rows.tolist(), end[rows].tolist(), strict=True):
                out[row] = reduce(values[last - size + 1 : last + 1])
            continue
        view = sliding_window_view(values, size)
        for part in _blocks(rows, size):
            out[part] = reduce(view[end[part] - (size - 1)], axis=1)
    return out


_FEW_ROWS = 16  # below this many slices of one length, reducing them one by one is quicker than gathering a block


def _padded_windows(
    values: FloatArray, end: IntArray, length: IntArray, fill: float
) -> Iterator[tuple[IntArray, FloatArray]]:
    """Blocks of rows of the longest window's width, `fill` before each row's own window: for reductions that an
    extra `fill` cannot change (max, min, the order statistics), one pass whatever the lengths."""
    if end.size == 0:
        return
    width = int(length.max())
    view = sliding_window_view(np.concatenate([np.full(width - 1, fill), values]), width)
    columns = np.arange(width)
    for part in _blocks(np.arange(end.size), width):
        block = view[end[part]]
        short = np.flatnonzero(length[part] < width)
        if short.size:
            rows = block[short]
            rows[columns < (width - length[part][short])[:, None]] = fill
            block[short] = rows
        yield part, block


def _window_max(values: FloatArray, end: IntArray, length: IntArray) -> FloatArray:
    return _window_extreme(values, end, length, np.maximum, -np.inf)


def _window_min(values: FloatArray, end: IntArray, length: IntArray) -> FloatArray:
    return _window_extreme(values, end, length, np.minimum, np.inf)


def _window_extreme(values: FloatArray, end: IntArray, length: IntArray, pick: np.ufunc, fill: float) -> FloatArray:
    """The max (or min) of each window, NaN if it holds one as ndarray.max gives: windows of the longest length by the
    van Herk/Gil-Werman running extremes (a few passes whatever the width), the shorter ones gathered."""
    out = np.empty(end.size)
    width = int(length.max(initial=1))
    full = length == width
    if full.any():
        blocks = np.concatenate([values, np.full(-values.size % width, fill)]).reshape(-1, width)
        ahead = pick.accumulate(blocks, axis=1).ravel()  # from the start of each block of `width` values
        behind = pick.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()  # to the end of each block
        ends = end[full]
        out[full] = pick(behind[ends - (width - 1)], ahead[ends])
    short = np.flatnonzero(~full)
    for part, block in _padded_windows(values, end[short], length[short], fill):
        out[short[part]] = pick.reduce(block, axis=1)
    return out


def _window_median(values: FloatArray, end: IntArray, length: IntArray) -> FloatArray:
    """np.median of each window of finite values: the middle of the sorted window (the fill sorts after it), the two
    middle values averaged as np.median averages them."""
    out = np.empty(end.size)
    for part, block in _padded_windows(values, end, length, np.inf):
        block.sort(axis=1)  # a gathered copy: sorted in place
        size = length[part]
        rows = np.arange(size.size)
        lower, upper = block[rows, (size - 1) // 2], block[rows, size // 2]
        out[part] = np.where(size % 2 == 1, lower, (0.0 + lower + upper) / 2.0)
    return out


def _blocks(rows: IntArray, width: int) -> Iterator[IntArray]:
    """`rows` in runs that gather at most _BLOCK_VALUES values of `width` each."""
    per_block = max(1, _BLOCK_VALUES // width)
    for start in range(0, rows.size, per_block):
        yield rows[start : start + per_block]


_BLOCK_VALUES = 1 << 20  # values gathered at once (8 MB)


def _counts(flags: npt.NDArray[np.bool_]) -> IntArray:
    """Running count with a leading 0: flags in [a, b) number counts[b] - counts[a]."""
    return np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])


def _ratios(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """`_ratio` element by element."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((denominator > 0) & np.isfinite(denominator), numerator / denominator, 0.0)


ESTIMATE_MARK = " (quote volume estimated from volume x price)"


def quote_volume(bars: Bars) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Quote volume per bar and where it is an estimate: where the exchange's figure is unknown, volume x typical
    price ((high + low + close) / 3); NaN where the volume is unknown too."""
    known = np.isfinite(bars.quote_volume)
    estimate = bars.volume * (bars.high + bars.low + bars.close) / 3.0
    return np.where(known, bars.quote_volume, estimate), ~known & np.isfinite(estimate)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 and np.isfinite(denominator) else 0.0


NO_ANOMALY = "no anomaly"
ANOMALY_LABELS = ("bar move", "bar range")


def _anomaly(b: Bars, config: UniverseConfig) -> tuple[float, str]:
    """0..100 from the largest bar move and the widest bar range, each against its window median."""
    with np.errstate(divide="ignore", invalid="ignore"):
        moves = np.abs(np.diff(np.log(b.close)))
        ranges = np.log(np.maximum(b.high, b.close) / np.minimum(b.low, b.close))
    found = [(0.0, NO_ANOMALY)]
    span = config.anomaly_extreme_ratio - config.anomaly_normal_ratio
    for label, values in zip(ANOMALY_LABELS, (moves, ranges), strict=True):
        values = values[np.isfinite(values)]
        if values.size < 2 or values.max() <= 0:
            continue  # too short or perfectly flat: a quality matter, not an anomaly
        median = float(np.median(values))
        ratio = float(values.max() / median) if median > 0 else float("inf")
        score = 100.0 * float(np.clip((ratio - config.anomaly_normal_ratio) / span, 0.0, 1.0))
        found.append((score, _anomaly_detail(label, ratio)))
    return max(found, key=lambda item: item[0])


def _activity(b: Bars, quote: FloatArray, step: int) -> tuple[float, str]:
    """0..100: the share of bars present on the grid they span times the share that traded and moved."""
    span = int((b.open_time[-1] - b.open_time[0]) // step) + 1
    complete = len(b) / span
    traded = float(((quote > 0) & (b.high > b.low)).mean())
    return 100.0 * traded * complete, _quality_detail(traded, complete)


def _anomaly_detail(label: str, ratio: float) -> str:
    return f"largest {label} {ratio:.1f}x the median"


def _quality_detail(traded: float, complete: float) -> str:
    return f"{traded:.0%} of bars traded, {complete:.0%} of bars present"


def _tick_penalty(rules: SymbolRules, price: float, config: UniverseConfig) -> float:
    """1 for a fine tick, falling to 0 as tick / price approaches coarse_tick_fraction."""
    return float(tick_penalties(np.array(float(rules.tick_size)), np.array(price), config))


def tick_penalties(tick_size: FloatArray, price: FloatArray, config: UniverseConfig) -> FloatArray:
    """_tick_penalty elementwise (1 where the price or the tick is not positive)."""
    span = config.coarse_tick_fraction - config.fine_tick_fraction
    with np.errstate(divide="ignore", invalid="ignore"):
        penalty = np.clip((config.coarse_tick_fraction - tick_size / price) / span, 0.0, 1.0)
    return np.where((price <= 0) | (tick_size <= 0), 1.0, penalty)


def _percent_rank(values: FloatArray) -> FloatArray:
    """0 for the smallest, 1 for the largest (average rank for ties)."""
    if values.size < 2:
        return np.ones(values.size)
    order = values.argsort(kind="stable")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(values.size, dtype=np.float64)
    for value in np.unique(values):
        same = values == value
        ranks[same] = ranks[same].mean()
    return ranks / (values.size - 1)


# ---------------------------------------------------------------------------------------------- Elite


def elite_candidates(
    rules: Mapping[str, SymbolRules], tickers: Sequence[Ticker24h], *, now_ms: int, config: UniverseConfig
) -> list[str]:
    """Symbols passing the ticker-only Elite rules, most liquid first: the ones worth fetching bars for."""
    passed, _ = _ticker_screen(rules, tickers, now_ms, config.elite_min_quote_volume, config, elite=True)
    return [t.symbol for t in sorted(passed, key=lambda t: -float(t.quote_volume))]


def build_elite(
    rules: Mapping[str, SymbolRules],
    tickers: Sequence[Ticker24h],
    bars: Mapping[str, Bars],
    *,
    now_ms: int,
    config: UniverseConfig | None = None,
    previous: PoolResult | None = None,
    stats: Mapping[str, SymbolStats | None] | None = None,
) -> PoolResult:
    """The Elite pool from exchange info, 24h tickers and recent closed bars of the candidates.

    `stats` replaces measuring the bars: each symbol's measure at now_ms, computed beforehand (the backtest reads
    them from measure_series); `bars` is then not read.
    """
    config = config or UniverseConfig()
    if not tickers or not rules:
        return fall_back("elite", previous, "no exchange info or 24h tickers to build from", now_ms)
    passed, excluded = _ticker_screen(rules, tickers, now_ms, config.elite_min_quote_volume, config, elite=True)
    survivors: list[Ticker24h] = []
    caveats: dict[str, tuple[str, ...]] = {}
    estimated: set[str] = set()
    for ticker in passed:
        symbol = ticker.symbol
        measured = _measured(symbol, bars, stats, now_ms, config)
        if measured is None:
            excluded[symbol] = "no recent closed bars to check"
            continue
        if measured.caveats:
            caveats[symbol] = measured.caveats
        if measured.quote_estimated:
            estimated.add(symbol)
        why = _elite_exclusion(measured, _tick_penalty(rules[symbol], float(ticker.last_price), config), config)
        if why is not None:
            excluded[symbol] = why
            continue
        survivors.append(ticker)
    if not survivors:
        return fall_back(
            "elite", previous, f"no symbol passed the Elite rules ({len(excluded)} excluded)", now_ms, excluded
        )
    volume = np.array([float(t.quote_volume) for t in survivors])
    trades = np.array([float(t.trade_count or 0) for t in survivors])
    # Trade counts unknown (tickers rebuilt from OHLCV history): the ranking is by quote volume alone.
    w = config.volume_rank_weight if all(t.trade_count is not None for t in survivors) else 1.0
    score = w * _percent_rank(volume) + (1 - w) * _percent_rank(trades)
    order = sorted(range(len(survivors)), key=lambda i: (-score[i], -volume[i]))
    chosen = [survivors[i].symbol for i in order[: config.elite_size]]
    for place, i in enumerate(order[config.elite_size :], config.elite_size + 1):
        excluded[survivors[i].symbol] = f"ranked {place} by volume and trades (the pool holds {config.elite_size})"
    return PoolResult(
        "elite",
        tuple(chosen),
        now_ms,
        f"{len(chosen)} of {len(passed)} liquid USDT perpetuals selected",
        excluded=excluded,
        notes=_caveat_notes(caveats, chosen) + _estimate_notes(estimated, chosen),
        scores={survivors[i].symbol: round(float(score[i]), 6) for i in order[: config.elite_size]},
    )


def _elite_exclusion(stats: SymbolStats, tick_penalty: float, config: UniverseConfig) -> str | None:
    if stats.anomaly >= config.max_anomaly:
        return f"anomaly {stats.anomaly:.0f} >= {config.max_anomaly:.0f} ({stats.anomaly_detail})"
    quality = stats.quality * tick_penalty
    if quality < config.min_quality:
        tick = f", tick size costs {1 - tick_penalty:.0%}" if tick_penalty < 1 else ""
        return f"quality {quality:.0f} < {config.min_quality:.0f} ({stats.quality_detail}{tick})"
    if stats.max_move_1h > config.extreme_move:
        return (
            f"extreme 1h move of {stats.max_move_1h:.1%} within {config.extreme_move_lookback_hours:g}h "
            f"(limit {config.extreme_move:.0%})"
        )
    if stats.volume_ratio < config.collapse_ratio:
        return (
            f"volume collapse: last {config.collapse_recent_hours:g}h at {stats.volume_ratio:.0%} of the earlier "
            f"average (limit {config.collapse_ratio:.0%}){ESTIMATE_MARK if stats.quote_estimated else ''}"
        )
    if stats.pinned is not None:
        return f"price pinned at its {config.pin_window_hours:g}h {stats.pinned} for {config.pin_hours:g}h"
    return None


# ---------------------------------------------------------------------------------------------- Overlay


def overlay_candidates(
    rules: Mapping[str, SymbolRules], tickers: Sequence[Ticker24h], *, now_ms: int, config: UniverseConfig
) -> list[str]:
    """Symbols liquid enough for the Overlay: the ones whose last hours of bars the flow should fetch."""
    passed, _ = _ticker_screen(rules, tickers, now_ms, config.overlay_min_quote_volume, config, elite=False)
    return [t.symbol for t in sorted(passed, key=lambda t: -float(t.quote_volume))]


def build_overlay(
    rules: Mapping[str, SymbolRules],
    tickers: Sequence[Ticker24h],
    bars: Mapping[str, Bars],
    *,
    now_ms: int,
    config: UniverseConfig | None = None,
    previous: PoolResult | None = None,
    stats: Mapping[str, SymbolStats | None] | None = None,
) -> PoolResult:
    """The Overlay pool: new listings (newest first), then movers (strongest first), anti-chase applied.

    An Overlay with nothing new and nothing moving is a valid empty result, not a failure; only missing
    exchange data falls back to the previous pool. `stats` replaces measuring the bars, as for build_elite.
    The rules themselves are `overlay_verdicts` (which the backtest runs over every hour at once).
    """
    config = config or UniverseConfig()
    if not tickers or not rules:
        return fall_back("overlay", previous, "no exchange info or 24h tickers to build from", now_ms)
    passed, excluded = _ticker_screen(rules, tickers, now_ms, config.overlay_min_quote_volume, config, elite=False)
    found = [_measured(t.symbol, bars, stats, now_ms, config) for t in passed]
    day_moves = [float(t.price_change_percent) / 100.0 for t in passed]
    penalties = tick_penalties(
        np.array([float(rules[t.symbol].tick_size) for t in passed]),
        np.array([float(t.last_price) for t in passed]),
        config,
    )
    verdicts, scores = overlay_verdicts(
        day_move=np.array(day_moves),
        measured=np.array([m is not None for m in found], dtype=bool),
        move_1h=_stat_column(found, lambda m: m.move_1h),
        volume_surge=_stat_column(found, lambda m: m.volume_surge),
        flow_imbalance=_stat_column(found, lambda m: m.flow_imbalance),
        quality=_stat_column(found, lambda m: m.quality),
        tick_penalty=penalties,
        onboard_ms=np.array([rules[t.symbol].onboard_date_ms for t in passed], dtype=np.int64),
        now_ms=now_ms,
        config=config,
    )
    listings: list[tuple[int, str]] = []
    movers: list[tuple[float, str]] = []
    caveats: dict[str, tuple[str, ...]] = {}
    estimated: set[str] = set()
    rows = zip(passed, found, verdicts.tolist(), scores.tolist(), strict=True)
    for i, (ticker, measured, verdict, score) in enumerate(rows):
        symbol = ticker.symbol
        if measured is not None and measured.caveats:
            caveats[symbol] = measured.caveats
        if measured is not None and measured.quote_estimated:
            estimated.add(symbol)
        if verdict == CHASED:
            excluded[symbol] = _chase_reason(measured, day_moves[i], config)
        elif verdict == LISTING:
            listings.append((rules[symbol].onboard_date_ms, symbol))
        elif verdict == WEAK_MOVER and measured is not None:
            quality = measured.quality * float(penalties[i])
            excluded[symbol] = (
                f"mover with quality {quality:.0f} < {config.min_quality:.0f} ({measured.quality_detail})"
            )
        elif verdict == MOVER:
            movers.append((score, symbol))
        elif measured is None:
            excluded[symbol] = "no recent closed bars to look for moves"
        else:
            imbalance = "unknown" if measured.flow_imbalance is None else f"{measured.flow_imbalance:.2f}"
            excluded[symbol] = (
                f"not new and not moving (1h {measured.move_1h:+.1%}, volume x{measured.volume_surge:.1f}, "
                f"flow imbalance {imbalance}){ESTIMATE_MARK if measured.quote_estimated else ''}"
            )
    ranked = overlay_ranking(listings, movers)
    chosen = ranked[: config.overlay_size]
    for place, symbol in enumerate(ranked[config.overlay_size :], config.overlay_size + 1):
        excluded[symbol] = f"ranked {place} among new listings and movers (the pool holds {config.overlay_size})"
    scores_of = {s: round(score, 6) for score, s in movers if s in chosen}
    scores_of |= {s: 1.0 for _, s in listings if s in chosen}
    reason = (
        f"{sum(1 for _, s in listings if s in chosen)} new listings and "
        f"{sum(1 for _, s in movers if s in chosen)} movers selected"
        if chosen
        else "no new listings or movers this hour"
    )
    return PoolResult(
        "overlay", tuple(chosen), now_ms, reason, excluded=excluded,
        notes=_caveat_notes(caveats, chosen) + _estimate_notes(estimated, chosen), scores=scores_of,
    )  # fmt: skip


LISTING, MOVER, CHASED, WEAK_MOVER, NO_BARS, STILL = range(6)  # overlay_verdicts: what the rules say of a candidate


def overlay_verdicts(
    *,
    day_move: FloatArray,
    measured: npt.NDArray[np.bool_],
    move_1h: FloatArray,
    volume_surge: FloatArray,
    flow_imbalance: FloatArray,
    quality: FloatArray,
    tick_penalty: FloatArray,
    onboard_ms: IntArray,
    now_ms: int | IntArray,
    config: UniverseConfig,
) -> tuple[IntArray, FloatArray]:
    """The Overlay's rules for candidates that passed the ticker screen, elementwise over arrays of one shape (a
    build passes one hour's candidates, the backtest every symbol at every hour): each one's verdict (LISTING,
    MOVER, CHASED, WEAK_MOVER, NO_BARS, STILL) and its mover score (>= 1: a mover). The stats arrays are read only
    where `measured`; `flow_imbalance` is NaN where unknown.

    The anti-chase rule comes first for a listing or a mover, then a listing, then a mover of enough quality (the
    tick penalty applied); the score is the largest of the three mover ratios, taken as Python's max takes it.
    """
    with np.errstate(invalid="ignore"):
        score = np.abs(move_1h) / config.mover_move
        flow = np.where(np.isnan(flow_imbalance), 0.0, flow_imbalance / config.mover_flow_surge)
        for ratio in (volume_surge / config.mover_volume_surge, flow):
            score = np.where(ratio > score, ratio, score)  # max(a, b, c): a later one wins only when greater
        moving = measured & (score >= 1)
        chased = (measured & (np.abs(move_1h) > config.chase_move)) | (np.abs(day_move) > config.chase_day_move)
        weak = quality * tick_penalty < config.min_quality
        is_new = (onboard_ms > 0) & (now_ms - onboard_ms <= config.new_listing_hours * HOUR_MS)
    verdict: IntArray = np.select(
        [chased & (is_new | moving), is_new, moving & weak, moving, ~measured],
        [CHASED, LISTING, WEAK_MOVER, MOVER, NO_BARS],
        STILL,
    )
    return verdict, score


def overlay_ranking(listings: Iterable[tuple[int, str]], movers: Iterable[tuple[float, str]]) -> list[str]:
    """New listings (newest first, by onboard time), then movers (strongest first): the pool is its head."""
    return [s for _, s in sorted(listings, reverse=True)] + [s for _, s in sorted(movers, reverse=True)]


def overlay_series(
    symbols: Sequence[str],
    rules: Mapping[str, SymbolRules],
    *,
    has_ticker: npt.NDArray[np.bool_],
    quote_volume: FloatArray,
    day_move: FloatArray,
    last_price: FloatArray,
    measured: npt.NDArray[np.bool_],
    move_1h: FloatArray,
    volume_surge: FloatArray,
    flow_imbalance: FloatArray,
    quality: FloatArray,
    now_ms: IntArray,
    config: UniverseConfig,
) -> list[tuple[str, ...] | None]:
    """build_overlay's symbols at many hours at once (what a backtest replays): arrays (symbols, hours) of each
    symbol's 24 h ticker (`has_ticker` False where build_overlay would get none from it; `day_move` is the
    price change percent / 100) and stats (as overlay_verdicts reads them), `now_ms` per hour. The same ticker
    screen, overlay_verdicts and overlay_ranking as build_overlay; None at an hour without any ticker, where
    build_overlay falls back to the previous pool."""
    known = [rules.get(s) for s in symbols]
    tradable = np.array([r is not None and r.is_tradable_perpetual for r in known], dtype=bool)[:, None]
    tick = np.array([float(r.tick_size) if r is not None else 0.0 for r in known])[:, None]
    onboard = np.array([r.onboard_date_ms if r is not None else 0 for r in known], dtype=np.int64)[:, None]
    verdict, score = overlay_verdicts(
        day_move=day_move,
        measured=measured,
        move_1h=move_1h,
        volume_surge=volume_surge,
        flow_imbalance=flow_imbalance,
        quality=quality,
        tick_penalty=tick_penalties(tick, last_price, config),
        onboard_ms=onboard,
        now_ms=now_ms[None, :],
        config=config,
    )
    candidate = has_ticker & tradable & ~_thin(quote_volume, config.overlay_min_quote_volume)
    listing = (candidate & (verdict == LISTING)).T
    mover = (candidate & (verdict == MOVER)).T
    scores = score.T
    any_ticker: list[bool] = np.any(has_ticker, axis=0).tolist()
    out: list[tuple[str, ...] | None] = []
    for hour, ticked in enumerate(any_ticker):
        if not ticked:
            out.append(None)
            continue
        listings = [(int(onboard[r, 0]), symbols[r]) for r in np.flatnonzero(listing[hour]).tolist()]
        movers = [(float(scores[hour, r]), symbols[r]) for r in np.flatnonzero(mover[hour]).tolist()]
        out.append(tuple(overlay_ranking(listings, movers)[: config.overlay_size]))
    return out


def _thin(quote_volume: Any, min_quote_volume: float) -> Any:
    """The ticker screen's liquidity rule: 24 h quote volume below the minimum (a float or an array)."""
    return quote_volume < min_quote_volume


def _stat_column(found: Sequence[SymbolStats | None], value: Callable[[SymbolStats], float | None]) -> FloatArray:
    """One stat of each candidate, NaN where it has no stats (or the stat is unknown)."""
    column = [None if m is None else value(m) for m in found]
    return np.array([np.nan if v is None else v for v in column], dtype=np.float64)


def _chase_reason(stats: SymbolStats | None, day_move: float, config: UniverseConfig) -> str:
    if stats is not None and abs(stats.move_1h) > config.chase_move:
        return f"already moved {stats.move_1h:+.1%} in 1h (anti-chase above {config.chase_move:.0%})"
    return f"already moved {day_move:+.1%} in 24h (anti-chase above {config.chase_day_move:.0%})"


# ---------------------------------------------------------------------------------------------- shared


def _ticker_screen(
    rules: Mapping[str, SymbolRules],
    tickers: Sequence[Ticker24h],
    now_ms: int,
    min_quote_volume: float,
    config: UniverseConfig,
    *,
    elite: bool,
) -> tuple[list[Ticker24h], dict[str, str]]:
    """The rules that need only exchange info and the 24h ticker."""
    passed: list[Ticker24h] = []
    excluded: dict[str, str] = {}
    for ticker in tickers:
        rule = rules.get(ticker.symbol)
        if rule is None:
            excluded[ticker.symbol] = "not in exchange info"
        elif not rule.is_tradable_perpetual:
            excluded[ticker.symbol] = (
                f"not a trading USDT perpetual ({rule.status} {rule.contract_type} {rule.quote_asset})"
            )
        elif _thin(float(ticker.quote_volume), min_quote_volume):
            excluded[ticker.symbol] = (
                f"24h quote volume {_money(float(ticker.quote_volume))} < {_money(min_quote_volume)} USDT"
            )
        elif elite and ticker.trade_count is not None and ticker.trade_count < config.elite_min_trades:
            excluded[ticker.symbol] = f"{ticker.trade_count} trades in 24h < {config.elite_min_trades}"
        elif (
            elite and rule.onboard_date_ms > 0 and now_ms - rule.onboard_date_ms < config.elite_min_age_hours * HOUR_MS
        ):
            age = (now_ms - rule.onboard_date_ms) / HOUR_MS
            excluded[ticker.symbol] = (
                f"listed {age:.0f}h ago (< {config.elite_min_age_hours:g}h; new listings belong to the Overlay)"
            )
        else:
            passed.append(ticker)
    return passed, excluded


def _measured(
    symbol: str,
    bars: Mapping[str, Bars],
    stats: Mapping[str, SymbolStats | None] | None,
    now_ms: int,
    config: UniverseConfig,
) -> SymbolStats | None:
    """A candidate's stats: the precomputed ones when given, else measured from its bars (None without)."""
    if stats is not None:
        return stats.get(symbol)
    series = bars.get(symbol)
    return None if series is None else measure(series, now_ms, config)


def _caveat_notes(caveats: Mapping[str, tuple[str, ...]], chosen: Sequence[str]) -> tuple[str, ...]:
    """One note for the selected symbols whose windows were shortened (what exists was used)."""
    relevant = {s: w for s, w in caveats.items() if s in chosen}
    if not relevant:
        return ()
    examples = "; ".join(f"{s}: {', '.join(w)}" for s, w in list(relevant.items())[:5])
    more = f" and {len(relevant) - 5} more" if len(relevant) > 5 else ""
    return (f"windows adapted for {len(relevant)} selected symbols, used what exists ({examples}{more})",)


def _estimate_notes(estimated: set[str], chosen: Sequence[str]) -> tuple[str, ...]:
    """One note for the selected symbols whose bars lacked the quote volume (the pool rules used an estimate)."""
    relevant = [s for s in chosen if s in estimated]
    if not relevant:
        return ()
    return (
        f"quote volume estimated from volume x price for {len(relevant)} selected symbols "
        f"({', '.join(relevant)}): their bars do not carry it",
    )


def _money(value: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"
