"""The pure parts of the end-to-end benchmark (bench/e2e.py): the clock and its inversion,
the closing windows and their delays, percentiles, flatness, the search's next rate and
the reading of Spark's checkpoint logs. No broker, no JVM."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bench.e2e import (
    FLAT_FINAL_S,
    WATERMARK_MS,
    WINDOW_MS,
    backlog,
    batch_offsets,
    clock_origin,
    closing_windows,
    delay_summary,
    event_start,
    flatness,
    last_event_ms,
    latest_commit,
    next_rate,
    percentile,
    plotted,
    slope,
    wall_at,
    window_delays,
)

MINUTE_MS = 60_000


def test_event_time_ends_five_minutes_behind_the_wall_clock() -> None:
    now = datetime(2026, 3, 1, 12, 0, 30, 123456, tzinfo=UTC)
    speed, duration = 10.0, 600.0
    start = event_start(now, speed, duration)
    assert start == datetime(2026, 3, 1, 10, 25, 30, tzinfo=UTC)  # now - 9 * 10 min - 5 min
    # at the producer's end, D seconds later, event time is 5 minutes behind the wall
    assert start + timedelta(seconds=speed * duration) == now.replace(microsecond=0) + timedelta(
        seconds=duration
    ) - timedelta(minutes=5)


def test_clock_origin_is_the_tightest_bound_of_the_samples() -> None:
    rate, wall0 = 1000.0, 1_000_000.0
    # a producer on schedule: n records by wall0 + (n - 1) / rate, delivered 30 ms later
    samples = [(wall0 + t, int((t - 0.03) * rate) + 1) for t in (5.0, 10.0, 15.0)]
    samples.insert(0, (wall0 - 2.0, 0))  # before the first send: no bound
    got = clock_origin(samples, rate)
    assert got is not None
    assert wall0 <= got <= wall0 + 0.031
    # a producer that fell behind later does not move it
    samples.append((wall0 + 20.0, 5_000))
    assert clock_origin(samples, rate) == got
    assert clock_origin([(wall0, 0)], rate) is None
    assert clock_origin([], rate) is None


def test_wall_at_inverts_the_simulated_clock() -> None:
    start_ms, speed, origin = 1_700_000_000_000, 10.0, 5_000.0
    for wall in (origin, origin + 1.5, origin + 600.0):
        event_ms = start_ms + speed * (wall - origin) * 1000
        assert wall_at(event_ms, start_ms, speed, origin) == pytest.approx(wall)
    # a window ending at start + 5 min closes (watermark 10 min) 90 s in at speed 10
    end = start_ms + 5 * MINUTE_MS
    assert wall_at(end + WATERMARK_MS, start_ms, speed, origin) == pytest.approx(origin + 90)


def test_last_event_time_of_the_delivered_records() -> None:
    assert last_event_ms(0, 10.0, 1000.0, 1) == 0
    assert last_event_ms(0, 10.0, 1000.0, 1001) == 10_000  # 1000 records of 10 ms each
    assert last_event_ms(0, 10.0, 1000.0, 0) == 0


def test_closing_windows() -> None:
    start = 1_700_000_200_000  # 100 s after a 5-minute boundary (1_700_000_100_000)
    assert start % WINDOW_MS == 100_000
    first = start - 100_000
    # event time to the first window's end + watermark + jitter: exactly that one closes
    last = first + WINDOW_MS + WATERMARK_MS + 5_000
    assert closing_windows(start, last) == [(first, first + WINDOW_MS)]
    assert closing_windows(start, last - 1) == []
    # an hour of event time: 12 windows cover it, the last two still open under the
    # 10-minute watermark (and the one cut by the jitter margin)
    got = closing_windows(start, start + 60 * MINUTE_MS)
    assert got[0] == (first, first + WINDOW_MS)
    assert all(b - a == WINDOW_MS for a, b in got)
    assert all(n[0] == p[1] for p, n in itertools.pairwise(got))
    assert got[-1][1] + WATERMARK_MS <= start + 60 * MINUTE_MS - 5_000
    assert len(got) == 10


def test_window_delays_beyond_the_watermark() -> None:
    start_ms, speed, origin = 0, 10.0, 100.0
    windows = [(0, WINDOW_MS), (WINDOW_MS, 2 * WINDOW_MS), (2 * WINDOW_MS, 3 * WINDOW_MS)]
    closes = [wall_at(w[1] + WATERMARK_MS, start_ms, speed, origin) for w in windows]
    seen = {windows[0]: closes[0] + 31.5, windows[2]: closes[2] + 12.0}
    got = window_delays(seen, windows, start_ms, speed, origin)
    assert got == [(pytest.approx(closes[0]), pytest.approx(31.5)), (closes[2], 12.0)]
    assert closes[0] == pytest.approx(origin + 90.0)


def test_percentile_matches_numpy() -> None:
    rnd = random.Random(7)
    for n in (1, 2, 3, 10, 101):
        values = [rnd.uniform(0, 100) for _ in range(n)]
        for q in (0, 50, 90, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_delay_summary() -> None:
    assert delay_summary([]) == {"count": 0, "p50_s": None, "p99_s": None, "max_s": None}
    got = delay_summary([10.0, 20.0, 30.0, 40.0])
    assert got == {"count": 4, "p50_s": 25.0, "p99_s": 39.7, "max_s": 40.0}


def test_slope() -> None:
    assert slope([(0, 5), (1, 7), (2, 9)]) == pytest.approx(2.0)
    assert slope([(0, 5), (10, 5)]) == 0.0
    assert slope([(0, 5)]) is None
    assert slope([(3, 5), (3, 9)]) is None


def flat_series(
    rate: float, duration: float, grow: float = 0.0, level: float = 100.0
) -> list[tuple[float, float]]:
    return [(t, level + grow * t) for t in range(0, int(duration) + 1, 5)]


def test_flat_trial() -> None:
    rate, duration = 2000.0, 600.0
    lags: dict[str, list[tuple[float, float]]] = {
        "producer": flat_series(rate, duration, level=0.0),
        "validator": flat_series(rate, duration, level=3000.0),
        # Spark's sawtooth: up to a trigger of traffic, down again
        "aggregation": [(float(t), rate * (t % 30)) for t in range(0, 601, 5)],
    }
    flat, why = flatness(lags, rate, duration, balanced=True)
    assert flat, why
    assert why == []


def test_a_growing_lag_is_not_flat() -> None:
    rate, duration = 2000.0, 600.0
    lags = {"validator": flat_series(rate, duration, grow=0.05 * rate)}
    flat, why = flatness(lags, rate, duration, balanced=True)
    assert not flat
    assert any("validator: lag grew" in r for r in why)
    # just below 2% of R per second, and small: flat
    slow = {"validator": flat_series(rate, duration, grow=0.019 * rate, level=0.0)}
    assert flatness(slow, rate, duration, balanced=True) == (True, [])


def test_a_final_lag_of_a_minute_of_traffic_is_not_flat() -> None:
    rate, duration = 1000.0, 600.0
    lags = {"aggregation": flat_series(rate, duration, level=rate * FLAT_FINAL_S)}
    flat, why = flatness(lags, rate, duration, balanced=True)
    assert not flat
    assert why == ["aggregation: final lag 60,000 records, a minute of traffic is 60,000"]
    lags = {"aggregation": flat_series(rate, duration, level=rate * FLAT_FINAL_S - 1)}
    assert flatness(lags, rate, duration, balanced=True)[0]


def test_unbalanced_died_or_unsampled_is_not_flat() -> None:
    rate, duration = 1000.0, 600.0
    lags = {"validator": flat_series(rate, duration)}
    assert flatness(lags, rate, duration, balanced=False) == (
        False,
        ["the ledger did not balance"],
    )
    flat, why = flatness(lags, rate, duration, balanced=True, problems=["validate exited (1)"])
    assert not flat
    assert why == ["validate exited (1)"]
    early = {"validator": [(t, 0.0) for t in (0, 5, 10, 299)]}
    flat, why = flatness(early, rate, duration, balanced=True)
    assert not flat
    assert why == ["validator: fewer than two samples in the second half"]


def test_search_doubles_while_flat_up_to_the_ceiling() -> None:
    history: list[tuple[float, bool]] = []
    rates = []
    while (rate := next_rate(history, start=2000, max_rate=64000)) is not None:
        rates.append(rate)
        history.append((rate, True))
    assert rates == [2000, 4000, 8000, 16000, 32000, 64000]
    assert next_rate([(2000, True), (4000, True)], start=2000, max_rate=5000) == 5000
    assert next_rate([(5000, True)], start=5000, max_rate=5000) is None


def test_search_bisects_at_most_three_times() -> None:
    flat_below = 3200.0
    history: list[tuple[float, bool]] = []
    while (rate := next_rate(history, start=2000, max_rate=64000)) is not None:
        history.append((rate, rate <= flat_below))
    assert history == [
        (2000, True),
        (4000, False),
        (3000, True),
        (3500, False),
        (3250, False),
    ]


def test_search_stops_when_the_bracket_is_below_ten_percent() -> None:
    assert next_rate([(10000, True), (10900, False)], start=10000, max_rate=64000) is None
    assert next_rate([(10000, True), (11000, False)], start=10000, max_rate=64000) == 10500


def test_search_halves_when_the_first_rate_is_not_flat() -> None:
    assert next_rate([(2000, False)], start=2000, max_rate=64000) == 1000
    assert next_rate([(2000, False), (1000, False)], start=2000, max_rate=64000) == 500
    history = [(2000.0, False), (1000.0, False), (500.0, False), (250.0, False)]
    assert next_rate(history, start=2000, max_rate=64000) is None
    assert next_rate([(2000, False), (1000, True)], start=2000, max_rate=64000) == 1500


def test_plotted_trials() -> None:
    trials = [
        {"rate": 2000, "flat": True},
        {"rate": 4000, "flat": True},
        {"rate": 8000, "flat": False},
        {"rate": 6000, "flat": False},
    ]
    assert [t["rate"] for t in plotted(trials)] == [4000, 8000]
    assert [t["rate"] for t in plotted(trials[:1])] == [2000]
    assert [t["rate"] for t in plotted(trials[2:])] == [8000]


OFFSET_LOG = (
    "v1\n"
    '{"batchWatermarkMs":1767225000000,"batchTimestampMs":1767225630000,'
    '"conf":{"spark.sql.shuffle.partitions":"4"}}\n'
    '{"bench.e2e.valid.ab12":{"2":1500,"1":1402,"0":1498}}'
)


def test_checkpoint_logs() -> None:
    assert latest_commit(["0", "1", "12", "3", ".12.crc", ".13.abc.tmp"]) == 12
    assert latest_commit([".0.crc"]) is None
    assert latest_commit([]) is None
    assert batch_offsets(OFFSET_LOG, "bench.e2e.valid.ab12") == {0: 1498, 1: 1402, 2: 1500}
    assert batch_offsets(OFFSET_LOG, "other") == {}
    assert batch_offsets("v1\n{}", "bench.e2e.valid.ab12") == {}


def test_backlog() -> None:
    ends = {0: 100, 1: 50, 2: 0}
    assert backlog(ends, {0: 90, 1: 50}) == 10 + 0 + 0
    assert backlog(ends, {}) == 150
    assert backlog(ends, {0: -1001, 1: 20, 2: 0}) == 100 + 30  # OFFSET_INVALID: from 0
    assert backlog(ends, {0: 120}) == 50  # never below zero
