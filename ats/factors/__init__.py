"""The 10+1 factor model: ten factors and a modulator, vectorised over symbols (see docs/factors.md).

Typical use (a scan over the universe, bars cached by the caller):

    result = scan(bars_by_symbol, as_of_ms=clock.now_ms(), extras=extras, context=MarketContext(btc, eth))
    signals = result.signals(min_score=settings.min_score)

and for re-scoring on each closed bar without replaying history:

    scorer = IncrementalScorer("1h"); scorer.warm(bars, as_of_ms=now)
    new_bars = bars_from_klines(symbol, "1h", [closed_kline_event])
    row = scorer.update(new_bars, as_of_ms=now, extras=SymbolExtras(premium=premium_snapshot(mark_event)))

and for a backtest, the score of every symbol at every bar of a history in one pass (equal, bar by bar, to a
cold scan of the history up to that bar):

    series = score_series(bars_by_symbol, as_of_ms=end_ms, open_interest=oi, context=MarketContext(btc, eth))
"""

from ats.factors.config import DIRECTIONAL, FACTOR_NAMES, QUALITY, FactorConfig
from ats.factors.engine import IncrementalScorer, scan
from ats.factors.inputs import (
    BookSnapshot,
    MarketContext,
    OpenInterestSeries,
    Panel,
    PremiumSnapshot,
    SymbolExtras,
    TradeFlow,
    bars_from_klines,
    book_snapshot,
    build_panel,
    last_closed_open_time,
    open_interest_series,
    premium_snapshot,
    trade_flow,
)
from ats.factors.score import FactorRow, ScanResult
from ats.factors.series import ScoreSeries, score_series

__all__ = [
    "DIRECTIONAL",
    "FACTOR_NAMES",
    "QUALITY",
    "BookSnapshot",
    "FactorConfig",
    "FactorRow",
    "IncrementalScorer",
    "MarketContext",
    "OpenInterestSeries",
    "Panel",
    "PremiumSnapshot",
    "ScanResult",
    "ScoreSeries",
    "SymbolExtras",
    "TradeFlow",
    "bars_from_klines",
    "book_snapshot",
    "build_panel",
    "last_closed_open_time",
    "open_interest_series",
    "premium_snapshot",
    "scan",
    "score_series",
    "trade_flow",
]
