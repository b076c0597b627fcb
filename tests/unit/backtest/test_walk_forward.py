"""Walk-forward folds: each setting is chosen on data that ends where its test window begins."""

from __future__ import annotations

from ats.backtest.engine import TradeSettings, record_tape
from ats.backtest.history import DAY_MS, History
from ats.backtest.walkforward import folds_table, summary, walk_forward
from ats.config import Settings
from ats.universe import UniverseConfig
from tests.unit.backtest.series import T0, H, walk


def test_folds_roll_forward_and_report_only_their_test_windows() -> None:
    bars = {s: walk(s, 900, n, p) for n, (s, p) in enumerate({"BTCUSDT": 9e4, "AAAUSDT": 2.0, "BBBUSDT": 40.0}.items())}
    settings = Settings(universe=UniverseConfig(elite_min_quote_volume=1e6, overlay_min_quote_volume=1e6))
    history = History("1h", bars)
    start, end = T0 + 500 * H, T0 + 900 * H
    tape = record_tape(history, settings, start, end, floor=60.0)
    grid = (60.0, 70.0, 80.0)
    folds = walk_forward(
        tape, history, settings, TradeSettings(), grid=grid, train_ms=6 * DAY_MS, test_ms=3 * DAY_MS, random_draws=2
    )
    assert len(folds) == (400 // 24 - 6) // 3
    for n, fold in enumerate(folds):
        assert fold.test_start_ms == fold.train_start_ms + 6 * DAY_MS  # chosen on what ends where the test begins
        assert fold.test_end_ms == fold.test_start_ms + 3 * DAY_MS
        assert fold.train_start_ms == start + n * 3 * DAY_MS
        assert fold.min_score in grid
        assert len(fold.baselines.random) == 2
    assert summary(folds)["trades"] == sum(f.test.trades for f in folds)
    assert folds_table(folds).count("\n") == len(folds) + 3
