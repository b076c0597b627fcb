"""Which symbols the system looks at: the Elite pool (refreshed daily) and the Overlay pool (hourly).

Elite: liquid USDT perpetuals in TRADING status, ranked by 24h quote volume and trade count, minus those with
anomalous or poor-quality bars and those caught by an exclusion rule (an extreme 1h move, a volume collapse,
a price pinned at its 72h extreme). Overlay: new listings (by onboard date) and current movers (1h change,
volume surge, taker-flow surge), refusing symbols that already moved too far (anti-chase). The universe is
Overlay first, then Elite, without duplicates.

Windows are configured in hours and converted to bars of whatever interval the caller's bars have (1m in the
demo, 1h in production); when a symbol's history is shorter, what exists is used and the result says so.
Bars whose quote volume is unknown (history holding only OHLCV) get an estimate, volume x typical price, marked
as such in every reason and note it shapes; an unknown taker-buy volume leaves the flow imbalance unknown.
Everything here is pure: fetching, caching (Elite 24 h, Overlay 1 h), scheduling and storage belong to the
flows. A build that fails or finds nothing falls back to the previous pool and says so; it never silently
yields nothing. Every excluded symbol carries a human reason (for the Prefect artifact).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ats.clock import format_utc
from ats.domain import BAR_FIELDS, Bars, FloatArray, SymbolRules, interval_ms
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
        """The same rules with every window multiplied by `factor`: a compressed market (the demo's 1m bars
        that move like hourly bars) uses factor 1/60, so "72 hours" means 72 of its bars."""
        if factor <= 0:
            raise ValueError("the time factor must be positive")
        hours = {k: v * factor for k, v in _fields(self).items() if k.endswith("_hours")}
        return replace(self, **hours)


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
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(closed.close) & (closed.close > 0) & np.isfinite(all_quote)
    keep = np.flatnonzero(usable)
    if keep.size < 2:
        return None
    b = Bars(closed.symbol, closed.interval, closed.open_time[keep], *(getattr(closed, n)[keep] for n in BAR_FIELDS))
    quote_known, estimated = all_quote[keep], all_estimated[keep]
    n = len(b)
    caveats: list[str] = []

    def window(hours: float, label: str) -> int:
        wanted = bars_for(hours, b.interval)
        if wanted > n:
            caveats.append(f"{label} {hours:g}h ({n} of {wanted} bars)")
        return min(wanted, n)

    hour = bars_for(1.0, b.interval)
    if step > HOUR_MS:
        caveats.append(f"1h windows measured over one {b.interval} bar")
    if hour >= n:
        caveats.append(f"1h move ({n} of {hour + 1} bars)")
    lag = min(hour, n - 1)
    close, quote = b.close, quote_known
    moves = close[lag:] / close[:-lag] - 1.0
    lookback = window(config.extreme_move_lookback_hours, "extreme-move lookback")
    recent_moves = moves[-lookback:]

    recent = window(config.collapse_recent_hours, "collapse recent")
    base = window(config.collapse_base_hours, "collapse base")
    earlier = quote[-base:-recent] if base > recent else quote[-base:]
    volume_ratio = _ratio(quote[-recent:].mean(), earlier.mean())

    surge_base = window(config.surge_base_hours, "surge base")
    last_hour = min(hour, n)
    volume_surge = _ratio(quote[-last_hour:].mean(), quote[-surge_base:].mean())
    bought = b.taker_buy_quote_volume[-last_hour:].sum()
    traded = b.quote_volume[-last_hour:].sum()  # the exchange's own figures only: a taker share of an estimate is not
    flow_imbalance = (
        None if not np.isfinite(bought + traded) else abs(2.0 * _ratio(bought, traded) - 1.0) if traded > 0 else 0.0
    )

    pin_window = window(config.pin_window_hours, "pin window")
    pin_bars = min(bars_for(config.pin_hours, b.interval), n)
    high, low = b.high[-pin_window:].max(), b.low[-pin_window:].min()
    tail = close[-pin_bars:]
    pinned = (
        "high" if (tail >= high * (1 - config.pin_tolerance)).all() else
        "low" if (tail <= low * (1 + config.pin_tolerance)).all() else None
    )  # fmt: skip

    inspect = window(config.anomaly_window_hours, "anomaly window")
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
        caveats=tuple(caveats),
        quote_estimated=bool(estimated.any()),
    )


ESTIMATE_MARK = " (quote volume estimated from volume x price)"


def quote_volume(bars: Bars) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Quote volume per bar and where it is an estimate: where the exchange's figure is unknown, volume x typical
    price ((high + low + close) / 3); NaN where the volume is unknown too."""
    known = np.isfinite(bars.quote_volume)
    estimate = bars.volume * (bars.high + bars.low + bars.close) / 3.0
    return np.where(known, bars.quote_volume, estimate), ~known & np.isfinite(estimate)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 and np.isfinite(denominator) else 0.0


def _anomaly(b: Bars, config: UniverseConfig) -> tuple[float, str]:
    """0..100 from the largest bar move and the widest bar range, each against its window median."""
    with np.errstate(divide="ignore", invalid="ignore"):
        moves = np.abs(np.diff(np.log(b.close)))
        ranges = np.log(np.maximum(b.high, b.close) / np.minimum(b.low, b.close))
    found = [(0.0, "no anomaly")]
    span = config.anomaly_extreme_ratio - config.anomaly_normal_ratio
    for label, values in (("bar move", moves), ("bar range", ranges)):
        values = values[np.isfinite(values)]
        if values.size < 2 or values.max() <= 0:
            continue  # too short or perfectly flat: a quality matter, not an anomaly
        median = float(np.median(values))
        ratio = float(values.max() / median) if median > 0 else float("inf")
        score = 100.0 * float(np.clip((ratio - config.anomaly_normal_ratio) / span, 0.0, 1.0))
        found.append((score, f"largest {label} {ratio:.1f}x the median"))
    return max(found, key=lambda item: item[0])


def _activity(b: Bars, quote: FloatArray, step: int) -> tuple[float, str]:
    """0..100: the share of bars present on the grid they span times the share that traded and moved."""
    span = int((b.open_time[-1] - b.open_time[0]) // step) + 1
    complete = len(b) / span
    traded = float(((quote > 0) & (b.high > b.low)).mean())
    return 100.0 * traded * complete, f"{traded:.0%} of bars traded, {complete:.0%} of bars present"


def _tick_penalty(rules: SymbolRules, price: float, config: UniverseConfig) -> float:
    """1 for a fine tick, falling to 0 as tick / price approaches coarse_tick_fraction."""
    if price <= 0 or rules.tick_size <= 0:
        return 1.0
    fraction = float(rules.tick_size) / price
    span = config.coarse_tick_fraction - config.fine_tick_fraction
    return float(np.clip((config.coarse_tick_fraction - fraction) / span, 0.0, 1.0))


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
) -> PoolResult:
    """The Elite pool from exchange info, 24h tickers and recent closed bars of the candidates."""
    config = config or UniverseConfig()
    if not tickers or not rules:
        return fall_back("elite", previous, "no exchange info or 24h tickers to build from", now_ms)
    passed, excluded = _ticker_screen(rules, tickers, now_ms, config.elite_min_quote_volume, config, elite=True)
    survivors: list[Ticker24h] = []
    caveats: dict[str, tuple[str, ...]] = {}
    estimated: set[str] = set()
    for ticker in passed:
        symbol = ticker.symbol
        series = bars.get(symbol)
        stats = None if series is None else measure(series, now_ms, config)
        if stats is None:
            excluded[symbol] = "no recent closed bars to check"
            continue
        if stats.caveats:
            caveats[symbol] = stats.caveats
        if stats.quote_estimated:
            estimated.add(symbol)
        why = _elite_exclusion(stats, _tick_penalty(rules[symbol], float(ticker.last_price), config), config)
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
) -> PoolResult:
    """The Overlay pool: new listings (newest first), then movers (strongest first), anti-chase applied.

    An Overlay with nothing new and nothing moving is a valid empty result, not a failure; only missing
    exchange data falls back to the previous pool.
    """
    config = config or UniverseConfig()
    if not tickers or not rules:
        return fall_back("overlay", previous, "no exchange info or 24h tickers to build from", now_ms)
    passed, excluded = _ticker_screen(rules, tickers, now_ms, config.overlay_min_quote_volume, config, elite=False)
    listings: list[tuple[int, str]] = []
    movers: list[tuple[float, str]] = []
    caveats: dict[str, tuple[str, ...]] = {}
    estimated: set[str] = set()
    for ticker in passed:
        symbol = ticker.symbol
        day_move = float(ticker.price_change_percent) / 100.0
        series = bars.get(symbol)
        stats = None if series is None else measure(series, now_ms, config)
        if stats is not None and stats.caveats:
            caveats[symbol] = stats.caveats
        if stats is not None and stats.quote_estimated:
            estimated.add(symbol)
        chase = _chase(stats, day_move, config)
        onboard = rules[symbol].onboard_date_ms
        is_new = onboard > 0 and now_ms - onboard <= config.new_listing_hours * HOUR_MS
        if chase is not None and (is_new or (stats is not None and _mover_score(stats, config) >= 1)):
            excluded[symbol] = chase
        elif is_new:
            listings.append((onboard, symbol))
        elif stats is not None and (score := _mover_score(stats, config)) >= 1:
            quality = stats.quality * _tick_penalty(rules[symbol], float(ticker.last_price), config)
            if quality < config.min_quality:
                excluded[symbol] = (
                    f"mover with quality {quality:.0f} < {config.min_quality:.0f} ({stats.quality_detail})"
                )
            else:
                movers.append((score, symbol))
        elif stats is None:
            excluded[symbol] = "no recent closed bars to look for moves"
        else:
            imbalance = "unknown" if stats.flow_imbalance is None else f"{stats.flow_imbalance:.2f}"
            excluded[symbol] = (
                f"not new and not moving (1h {stats.move_1h:+.1%}, volume x{stats.volume_surge:.1f}, "
                f"flow imbalance {imbalance}){ESTIMATE_MARK if stats.quote_estimated else ''}"
            )
    ranked = [s for _, s in sorted(listings, reverse=True)] + [s for _, s in sorted(movers, reverse=True)]
    chosen = ranked[: config.overlay_size]
    for place, symbol in enumerate(ranked[config.overlay_size :], config.overlay_size + 1):
        excluded[symbol] = f"ranked {place} among new listings and movers (the pool holds {config.overlay_size})"
    scores = {s: round(score, 6) for score, s in movers if s in chosen}
    scores |= {s: 1.0 for _, s in listings if s in chosen}
    reason = (
        f"{sum(1 for _, s in listings if s in chosen)} new listings and "
        f"{sum(1 for _, s in movers if s in chosen)} movers selected"
        if chosen
        else "no new listings or movers this hour"
    )
    return PoolResult(
        "overlay", tuple(chosen), now_ms, reason, excluded=excluded,
        notes=_caveat_notes(caveats, chosen) + _estimate_notes(estimated, chosen), scores=scores,
    )  # fmt: skip


def _mover_score(stats: SymbolStats, config: UniverseConfig) -> float:
    """>= 1 when any of the three mover conditions holds; larger for stronger movers."""
    return max(
        abs(stats.move_1h) / config.mover_move,
        stats.volume_surge / config.mover_volume_surge,
        0.0 if stats.flow_imbalance is None else stats.flow_imbalance / config.mover_flow_surge,
    )


def _chase(stats: SymbolStats | None, day_move: float, config: UniverseConfig) -> str | None:
    if stats is not None and abs(stats.move_1h) > config.chase_move:
        return f"already moved {stats.move_1h:+.1%} in 1h (anti-chase above {config.chase_move:.0%})"
    if abs(day_move) > config.chase_day_move:
        return f"already moved {day_move:+.1%} in 24h (anti-chase above {config.chase_day_move:.0%})"
    return None


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
        elif float(ticker.quote_volume) < min_quote_volume:
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
