"""Server-time offset: midpoint of the round trip, best of several samples."""

from __future__ import annotations

import pytest

from ats.exchange.timesync import TimeSample, best_offset


def test_offset_is_measured_from_the_midpoint_of_the_round_trip() -> None:
    sample = TimeSample(sent_ms=1_000, server_ms=6_050, received_ms=1_100)
    assert sample.round_trip_ms == 100
    assert sample.offset_ms == 5_000


def test_the_sample_with_the_shortest_round_trip_wins() -> None:
    samples = [
        TimeSample(sent_ms=0, server_ms=5_400, received_ms=800),  # slow: offset estimate 5000 +- 400
        TimeSample(sent_ms=1_000, server_ms=6_012, received_ms=1_020),  # fast: 5002 +- 10
        TimeSample(sent_ms=2_000, server_ms=7_150, received_ms=2_300),
    ]
    best = best_offset(samples)
    assert (best.offset_ms, best.round_trip_ms) == (5_002, 20)


def test_samples_whose_clock_went_backwards_are_ignored() -> None:
    samples = [TimeSample(sent_ms=10, server_ms=0, received_ms=5), TimeSample(sent_ms=0, server_ms=-100, received_ms=0)]
    assert best_offset(samples).offset_ms == -100
    with pytest.raises(ValueError, match="no usable time sample"):
        best_offset([TimeSample(sent_ms=10, server_ms=0, received_ms=5)])
