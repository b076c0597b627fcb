"""Market-data streams of the simulated exchange: names, cadences and payloads, kept apart from the transport.

Every stream the sim accepts delivers; a name it cannot serve is refused (`StreamError`), never accepted and
left silent. Diff depth (`<symbol>@depth[@100ms|@500ms]`) follows Binance's book-keeping contract: per symbol
update ids, `U` = first id of the event, `u` = last, `pu` = the previous event's `u`, levels that vanished sent
with quantity 0, and a REST snapshot whose `lastUpdateId` is the book's current id. A client that buffers the
stream, fetches /fapi/v1/depth, drops events with `u` < lastUpdateId and applies the rest keeps the sim's book.

Cadences: markPrice every 3 s (or 1 s), tickers every 2 s (all-market arrays every 1 s), diff depth every
250 ms (or 100/500 ms), partial depth likewise, bookTicker on every change of the top of the book. In manual
mode every tick moves at least a second, so every cadence is due on every tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sim.market import KLINE_INTERVALS, BookArrays, Market, TickInfo

DEPTH_SPEEDS_MS = {"": 250, "@100ms": 100, "@500ms": 500}
PARTIAL_LEVELS = ("5", "10", "20")
PUBLIC_KINDS = ("bookTicker", "depth")  # served on /public; everything else on /market

_SYMBOL_STREAM = re.compile(
    r"^(?P<symbol>[a-z0-9_]+)@(?P<kind>aggTrade|markPrice(?:@1s)?|bookTicker|forceOrder|ticker|miniTicker"
    r"|kline_(?P<interval>\w+)|depth(?P<levels>5|10|20)?(?P<speed>@100ms|@500ms)?)$"
)
_CONTINUOUS = re.compile(r"^(?P<pair>[a-z0-9]+)_(?P<contract>perpetual|current_quarter|next_quarter)"
                         r"@continuousKline_(?P<interval>\w+)$")  # fmt: skip
_ALL_MARKET = ("!markPrice@arr", "!markPrice@arr@1s", "!forceOrder@arr", "!bookTicker", "!ticker@arr",
               "!miniTicker@arr", "!contractInfo")  # fmt: skip


class StreamError(ValueError):
    """A stream name the sim does not serve; the reason goes to the client after Binance's own words for a refused
    name, `{"code": 2, "msg": "Invalid request: invalid stream"}`."""


@dataclass(frozen=True, slots=True)
class Stream:
    """A parsed stream name."""

    name: str  # as subscribed, normalised (symbol part lower case)
    kind: str  # aggTrade, markPrice, markPrice@1s, bookTicker, forceOrder, ticker, miniTicker, kline,
    # continuousKline, depth, partialDepth, or the all-market name ("!ticker@arr", ...)
    symbol: str | None = None  # upper case
    interval: str = ""
    speed_ms: int = 0
    levels: int = 0


def parse(name: str, market: Market) -> Stream:
    """The stream behind a name, or StreamError saying why the sim refuses it."""
    if name.startswith("!"):
        if name not in _ALL_MARKET:
            raise StreamError(f"unknown stream '{name}'")
        return Stream(name, name)
    lowered = _normalise(name)
    continuous = _CONTINUOUS.match(lowered)
    if continuous is not None:
        symbol = continuous["pair"].upper()
        if continuous["contract"] != "perpetual":
            raise StreamError(f"the sim lists perpetual contracts only ('{name}')")
        _known(symbol, market, name)
        interval = _interval(continuous["interval"], market, name)
        return Stream(lowered, "continuousKline", symbol, interval=interval)
    match = _SYMBOL_STREAM.match(lowered)
    if match is None:
        raise StreamError(f"unknown stream '{name}'")
    symbol = match["symbol"].upper()
    _known(symbol, market, name)
    kind = match["kind"]
    if kind.startswith("kline_"):
        return Stream(lowered, "kline", symbol, interval=_interval(match["interval"], market, name))
    if kind.startswith("depth"):
        speed = DEPTH_SPEEDS_MS[match["speed"] or ""]
        if match["levels"]:
            return Stream(lowered, "partialDepth", symbol, speed_ms=speed, levels=int(match["levels"]))
        return Stream(lowered, "depth", symbol, speed_ms=speed)
    return Stream(lowered, kind, symbol)


def _normalise(name: str) -> str:
    """The symbol part lower case, the stream type as given (kline_1M and kline_1m differ)."""
    symbol, sep, kind = name.partition("@")
    return f"{symbol.lower()}{sep}{kind}"


def _known(symbol: str, market: Market, name: str) -> None:
    if symbol not in market.index:
        raise StreamError(f"unknown symbol in stream '{name}'")


def _interval(interval: str, market: Market, name: str) -> str:
    if interval not in KLINE_INTERVALS:
        raise StreamError(f"invalid interval in stream '{name}'")
    try:
        market.check_interval(interval)
    except ValueError as exc:
        raise StreamError(f"{exc} (stream '{name}')") from None
    return interval


def family(name: str) -> str:
    """The 2026 path a stream lives on: public (books) or market (the rest)."""
    kind = name.split("@", 1)[1] if "@" in name else ""
    if name.startswith("!bookTicker") or any(kind.startswith(k) for k in PUBLIC_KINDS):
        return "public"
    return "market"


@dataclass
class _Published:
    """The last state of a book a depth stream published (its `u` and its levels)."""

    update_id: int
    bids: dict[int, int]
    asks: dict[int, int]


class StreamBook:
    """What the market streams have published so far: the diff-depth baselines, the tops sent, cadence clocks."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._depth: dict[tuple[str, int], _Published] = {}
        self._partial: dict[tuple[str, int, int], int] = {}
        self._tops: dict[str, tuple[int, int, int, int]] = {}
        self._last_due: dict[int, int] = {}

    def prime(self, stream: Stream) -> None:
        """A new subscription: diffs for it start from the book as it is now (kept if already primed)."""
        if stream.kind == "depth" and stream.symbol is not None:
            key = (stream.symbol, stream.speed_ms)
            if key not in self._depth:
                self._depth[key] = _levels(self.market.book_arrays(stream.symbol))

    def due(self, info: TickInfo, now_ms: int) -> set[int]:
        """The cadences (ms) due at this update: all of them on a market tick, the fast ones on book updates."""
        speeds = {*DEPTH_SPEEDS_MS.values()}
        if not info.book_only:
            self._last_due.update({speed: now_ms for speed in speeds})
            return speeds
        due = {s for s in speeds if now_ms // s != self._last_due.get(s, 0) // s}
        self._last_due.update({speed: now_ms for speed in due})
        return due

    def payloads(
        self, stream: Stream, info: TickInfo, moved: set[str] | None, due: set[int]
    ) -> list[dict[str, Any] | list[Any]]:
        """What a subscriber of `stream` receives for this update (often nothing)."""
        market = self.market
        book_only = info.book_only
        seconds = info.time_ms // 1000
        if stream.symbol is None:
            return self._all_market(stream, info, moved, seconds)
        symbol = stream.symbol
        if (moved is not None and symbol not in moved) or not market.is_listed(symbol):
            return []
        kind = stream.kind
        if kind == "bookTicker":
            return self._book_ticker(symbol, always=not book_only)
        if kind == "depth":
            return self._depth_diff(stream) if stream.speed_ms in due else []
        if kind == "partialDepth":
            return self._partial_depth(stream) if stream.speed_ms in due else []
        if book_only:
            return []
        if kind == "markPrice@1s" or (kind == "markPrice" and (info.seconds >= 3 or seconds % 3 == 0)):
            return [market.mark_price_event(symbol)]
        if kind in ("kline", "continuousKline"):
            return self._klines(stream, info)
        if kind == "aggTrade":
            return [market.agg_trade_event(symbol)]
        if kind == "forceOrder":
            return [e for e in info.force_orders if e["o"]["s"] == symbol]
        if kind in ("ticker", "miniTicker") and (info.seconds >= 2 or seconds % 2 == 0):
            return [self._ticker(symbol, mini=kind == "miniTicker")]
        return []

    def _all_market(
        self, stream: Stream, info: TickInfo, moved: set[str] | None, seconds: int
    ) -> list[dict[str, Any] | list[Any]]:
        market = self.market
        listed = [s for s in market.symbols if market.is_listed(s) and (moved is None or s in moved)]
        name = stream.name
        if name == "!bookTicker":
            return [e for s in listed for e in self._book_ticker(s, always=not info.book_only)]
        if info.book_only:
            return []
        if name == "!markPrice@arr@1s" or (name == "!markPrice@arr" and (info.seconds >= 3 or seconds % 3 == 0)):
            return [[market.mark_price_event(s) for s in listed]] if listed else []
        if name == "!forceOrder@arr":
            return list(info.force_orders)
        if name in ("!ticker@arr", "!miniTicker@arr") and listed:
            return [[self._ticker(s, mini=name == "!miniTicker@arr") for s in listed]]
        if name == "!contractInfo":
            since = info.time_ms - round(info.seconds * 1000)
            listed_now = [s for s in market.symbols if since < market.listing_ms(s) <= info.time_ms]
            return [market.contract_info_event(s) for s in listed_now]
        return []

    def _book_ticker(self, symbol: str, *, always: bool) -> list[dict[str, Any] | list[Any]]:
        """Binance pushes bookTicker on every change of the best bid or ask (price or quantity)."""
        book = self.market.book_arrays(symbol, 1)
        top = (int(book.bid_ticks[0]), int(book.bid_steps[0]), int(book.ask_ticks[0]), int(book.ask_steps[0]))
        if not always and self._tops.get(symbol) == top:
            return []
        self._tops[symbol] = top
        return [self.market.book_ticker_event(symbol)]

    def _depth_diff(self, stream: Stream) -> list[dict[str, Any] | list[Any]]:
        assert stream.symbol is not None
        key = (stream.symbol, stream.speed_ms)
        book = self.market.book_arrays(stream.symbol)
        previous = self._depth.get(key)
        current = _levels(book)
        self._depth[key] = current
        if previous is None or previous.update_id == current.update_id:
            return []
        return [
            self._depth_event(
                stream.symbol,
                first=previous.update_id + 1,
                last=current.update_id,
                previous=previous.update_id,
                bids=_changes(previous.bids, current.bids, reverse=True),
                asks=_changes(previous.asks, current.asks, reverse=False),
            )
        ]

    def _partial_depth(self, stream: Stream) -> list[dict[str, Any] | list[Any]]:
        """Partial book streams: the top N levels each time, with the same per-symbol update ids."""
        assert stream.symbol is not None
        book = self.market.book_arrays(stream.symbol, stream.levels)
        key = (stream.symbol, stream.speed_ms, stream.levels)
        previous = self._partial.get(key, book.update_id - 1)
        self._partial[key] = book.update_id
        if previous == book.update_id:
            return []
        return [
            self._depth_event(
                stream.symbol,
                first=previous + 1,
                last=book.update_id,
                previous=previous,
                bids=list(zip(book.bid_ticks.tolist(), book.bid_steps.tolist(), strict=True)),
                asks=list(zip(book.ask_ticks.tolist(), book.ask_steps.tolist(), strict=True)),
            )
        ]

    def _depth_event(
        self,
        symbol: str,
        *,
        first: int,
        last: int,
        previous: int,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
    ) -> dict[str, Any]:
        market = self.market
        return {
            "e": "depthUpdate",
            "E": market.book_time_ms,
            "T": market.book_time_ms,
            "s": symbol,
            "U": first,
            "u": last,
            "pu": previous,
            "b": wire_levels(market, symbol, [p for p, _ in bids], [q for _, q in bids]),
            "a": wire_levels(market, symbol, [p for p, _ in asks], [q for _, q in asks]),
        }

    def _klines(self, stream: Stream, info: TickInfo) -> list[dict[str, Any] | list[Any]]:
        assert stream.symbol is not None
        market = self.market
        out: list[dict[str, Any] | list[Any]] = []
        closed = info.closed_bar_open_ms
        if closed is not None and market.closes_interval(closed, stream.interval):
            out.append(market.kline_event(stream.symbol, stream.interval, closed_open_ms=closed))
        out.append(market.kline_event(stream.symbol, stream.interval))
        if stream.kind == "continuousKline":
            out = [_continuous(event) for event in out if isinstance(event, dict)]
        return out

    def _ticker(self, symbol: str, *, mini: bool) -> dict[str, Any]:
        t = self.market.ticker_24h(symbol)
        event: dict[str, Any] = {"e": "24hrMiniTicker" if mini else "24hrTicker", "E": self.market.now_ms, "s": symbol}
        if not mini:
            event.update({"p": t["priceChange"], "P": t["priceChangePercent"], "w": t["weightedAvgPrice"]})
        event.update({"c": t["lastPrice"]})
        if not mini:
            event["Q"] = t["lastQty"]
        event.update({"o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"],
                      "q": t["quoteVolume"]})  # fmt: skip
        if not mini:
            event.update({"O": t["openTime"], "C": t["closeTime"], "F": t["firstId"], "L": t["lastId"],
                          "n": t["count"]})  # fmt: skip
        return event


def wire_levels(market: Market, symbol: str, ticks: list[int], steps: list[int]) -> list[list[str]]:
    """Book levels as Binance prints them: [price, quantity] strings on the symbol's grid."""
    spec = market.specs[market.index[symbol]]
    tick, step = spec.tick_size, spec.step_size
    return [[f"{p * tick:f}", f"{q * step:f}"] for p, q in zip(ticks, steps, strict=True)]


def _levels(book: BookArrays) -> _Published:
    return _Published(
        update_id=book.update_id,
        bids=dict(zip(book.bid_ticks.tolist(), book.bid_steps.tolist(), strict=True)),
        asks=dict(zip(book.ask_ticks.tolist(), book.ask_steps.tolist(), strict=True)),
    )


def _changes(before: dict[int, int], after: dict[int, int], *, reverse: bool) -> list[tuple[int, int]]:
    """Levels whose quantity changed, new levels, and vanished levels with quantity 0; best first."""
    changed = [(p, q) for p, q in after.items() if before.get(p) != q]
    changed.extend((p, 0) for p in before if p not in after)
    return sorted(changed, reverse=reverse)


def _continuous(event: dict[str, Any]) -> dict[str, Any]:
    kline = {k: v for k, v in event["k"].items() if k != "s"}
    return {"e": "continuous_kline", "E": event["E"], "ps": event["s"], "ct": "PERPETUAL", "k": kline}


__all__ = ["Stream", "StreamBook", "StreamError", "family", "parse", "wire_levels"]
