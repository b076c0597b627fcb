"""One new closed bar for one symbol: `IncrementalScorer.update`, as the monitor calls it on each closed kline of
a symbol with an open position (monitor/worker.py `_rescore`), on one core (target < 50 us).

The scorer holds 20 symbols (open positions) warmed from 300 bars, as the monitor warms them; each sample feeds
the next closed bar of one of them, in turn, and gets its row back.
"""

from __future__ import annotations

from common import load_average, one_core, report, summary, timed

from ats.factors import IncrementalScorer
from tests.unit.factors.synthetic import make_market

POSITIONS, BARS, STEPS = 20, 300, 50
HOUR_MS = 3_600_000


def main() -> None:
    core = one_core()
    load_before = load_average()
    bars, _, _ = make_market(POSITIONS, BARS + STEPS, seed=4)
    scorer = IncrementalScorer("1h")
    for b in bars:
        scorer.warm([b.slice(0, BARS)], as_of_ms=int(b.open_time[BARS - 1]) + HOUR_MS + 1)
    feed = iter(
        [(b.slice(j, j + 1), int(b.open_time[j]) + HOUR_MS + 1) for j in range(BARS, BARS + STEPS) for b in bars]
    )

    def one() -> None:
        bar, as_of = next(feed)
        scorer.update(bar, as_of_ms=as_of)

    samples, cpu = timed(one, POSITIONS * STEPS)
    report(
        "one new closed bar, one symbol",
        unit="us",
        target=50.0,
        setup={"symbols_held": POSITIONS, "warm_bars": BARS, "extras": "none (as the monitor)", "core": core},
        stats=summary(samples, 1e6, 1),
        cpu=summary(cpu, 1e6, 1),
        load_average=[load_before, load_average()],
    )


if __name__ == "__main__":
    main()
