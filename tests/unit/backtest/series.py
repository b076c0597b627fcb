"""Random-walk hourly bars with OHLCV only (the public history's columns), and their Binance CSV."""

from __future__ import annotations

import numpy as np

from ats.domain import Bars

H = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC


def walk(symbol: str, n: int, seed: int, price: float) -> Bars:
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, 0.012, n)))
    open_ = np.concatenate([[price], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.006, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.006, n))
    volume = rng.uniform(2e6, 4e6, n) / price
    nan = np.full(n, np.nan)  # OHLCV only, as the public history
    return Bars(
        symbol, "1h", T0 + H * np.arange(n, dtype=np.int64), open_, high, low, close, volume, nan, nan, nan, nan
    )


def kline_csv(bars: Bars) -> str:
    """Binance's 12-column klines without a header, the volume columns after `volume` empty."""
    rows = []
    for i in range(len(bars)):
        t = int(bars.open_time[i])
        cells = [repr(float(getattr(bars, name)[i])) for name in ("open", "high", "low", "close", "volume")]
        rows.append(",".join([str(t), *cells, str(t + H - 1), "", "", "", "", ""]))
    return "\n".join(rows) + "\n"
