"""The equity curve and its drawdown as one PNG: what a reader looks at first in a backtest report.

Rendered with matplotlib's Agg backend, without the software and date metadata PNG files usually carry, so the
same run gives the same bytes (the report's promise). matplotlib is imported here only: a backtest pays for it,
nothing else does.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 6.0, 100


def equity_png(equity: Sequence[tuple[int, Decimal]], balance: Decimal, title: str) -> bytes:
    """Equity (top) and drawdown from the running peak in % (bottom), one point per bar close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = [datetime.fromtimestamp(t / 1000, UTC) for t, _ in equity]
    values = np.array([float(v) for _, v in equity], dtype=float)
    peaks = np.maximum.accumulate(np.concatenate([[float(balance)], values]))[1:]
    drawdown = -(peaks - values) / peaks * 100.0 if values.size else values

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    top.plot(times, values, color="#1f77b4", linewidth=1.0)
    top.axhline(float(balance), color="#888888", linewidth=0.8, linestyle="--")
    top.set_ylabel("equity (USDT)")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.fill_between(times, drawdown, 0.0, color="#d62728", alpha=0.4, linewidth=0)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
