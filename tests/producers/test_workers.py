"""``kappa produce --workers``: how the work is split and summed (pure), and the record
streams of one seed (the generator, no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producers.clock import SimulatedClock, WallClock
from producers.exceptions import ProducerError
from producers.generator import CdrGenerator, FaultRates
from producers.run import ProduceRequest, ProduceStats
from producers.workers import Report, split, total
from schemas import SchemaName, WireEncoder, load_schema

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def request(count: int | None = 10, rate: float = 900.0, clock: object = None) -> ProduceRequest:
    return ProduceRequest(
        rate=rate,
        count=count,
        duration_s=None if count is not None else 60.0,
        seed=5,
        faults=FaultRates(bad=0.1),
        clock=clock or WallClock(),  # type: ignore[arg-type]
    )


def test_each_worker_gets_its_stream_and_its_share() -> None:
    parts = split(request(count=10, rate=900.0), 3)
    assert [p.stream for p in parts] == [0, 1, 2]
    assert [p.count for p in parts] == [4, 3, 3]
    assert [p.rate for p in parts] == [300.0, 300.0, 300.0]
    assert all(p.seed == 5 for p in parts)


def test_a_duration_goes_to_every_worker_and_workers_without_records_are_dropped() -> None:
    assert [p.duration_s for p in split(request(count=None), 2)] == [60.0, 60.0]
    assert [p.count for p in split(request(count=2), 4)] == [1, 1]


def test_a_simulated_clock_covers_the_same_event_time_in_every_worker() -> None:
    clock = SimulatedClock(start=START, speed=60.0, rate=1000.0)
    parts = split(request(rate=1000.0, clock=clock), 2)
    # record i of a worker at 500/s is as far into event time as record 2i at 1000/s
    assert [p.clock.event_time_ms(50) for p in parts] == [clock.event_time_ms(100)] * 2


def test_no_workers_is_a_clear_error() -> None:
    with pytest.raises(ProducerError, match="--workers"):
        split(request(), 0)


def test_the_figures_are_summed_and_the_time_is_the_longest() -> None:
    a = ProduceStats(sent=3, delivered=3, seconds=2.0)
    a.by_kind.update({"valid": 2, "schema": 1})
    a.by_type.update({"VOICE": 3})
    b = ProduceStats(sent=4, delivered=3, errors=1, seconds=3.0)
    b.by_kind.update({"valid": 4})
    b.by_type.update({"SMS": 4})
    got = total({0: Report.of(0, a), 1: Report.of(1, b, done=True)})
    assert (got.sent, got.delivered, got.errors, got.seconds) == (7, 6, 1, 3.0)
    assert got.by_kind == {"valid": 6, "schema": 1}
    assert got.by_type == {"VOICE": 3, "SMS": 4}


def generator(stream: int, seed: int = 9) -> CdrGenerator:
    raw = WireEncoder(load_schema(SchemaName.CDR_RAW), 1)
    legacy = WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), 2)
    return CdrGenerator(
        seed=seed,
        clock=SimulatedClock(start=START, speed=1.0, rate=10.0),
        encode=raw.encode,
        encode_legacy=legacy.encode,
        faults=FaultRates(bad=0.05, duplicate=0.02),
        fast_header=raw.header,
        stream=stream,
    )


def test_streams_share_the_population_and_differ_in_their_records() -> None:
    zero, one, one_again = generator(0), generator(1), generator(1)
    assert zero.subscribers == one.subscribers
    assert zero.towers == one.towers
    first = [zero.next().value for _ in range(200)]
    second = [one.next().value for _ in range(200)]
    assert [one_again.next().value for _ in range(200)] == second  # deterministic
    assert not set(first) & set(second)


def test_stream_zero_is_the_seed_itself() -> None:
    plain = CdrGenerator(
        seed=9,
        clock=SimulatedClock(start=START, speed=1.0, rate=10.0),
        encode=WireEncoder(load_schema(SchemaName.CDR_RAW), 1).encode,
        encode_legacy=WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), 2).encode,
        faults=FaultRates(bad=0.05, duplicate=0.02),
        fast_header=WireEncoder(load_schema(SchemaName.CDR_RAW), 1).header,
    )
    zero = generator(0)
    assert [plain.next().value for _ in range(100)] == [zero.next().value for _ in range(100)]


def test_another_seed_is_not_a_stream_of_this_one() -> None:
    assert generator(1, seed=9).next().value != generator(0, seed=10).next().value
