"""The contract of cdr.valid against the real broker and registry, whatever the producer:
key = call_id, message timestamp = event time, a call_id once across raw partitions and
across the instances of one consumer group."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from kappa import clients
from kappa.settings import TopicSettings, ValidatorSettings
from schemas.wire import Decoded, WireDecoder
from streams.validate.job import RunStats, run
from streams.validate.ledger import ledger
from tests.fixtures.validate import raw_encoder, read_all, valid_record, wait_for

pytestmark = pytest.mark.integration


def test_foreign_keys_and_copies_on_every_partition_end_as_one_record_keyed_by_call_id(
    stack: Any, validator_topics: TopicSettings, validator_settings: ValidatorSettings
) -> None:
    topics = validator_topics
    enc = raw_encoder(stack, topics)
    now = time.time_ns() // 1_000_000
    # A foreign producer: keys are not call_ids, each copy on another partition,
    # message timestamps are its wall clock, event times are an hour earlier.
    records = [valid_record(event_time=now - 3_600_000 - i) for i in range(30)]
    producer = clients.producer(stack.kafka)
    for i, rec in enumerate(records):
        for p in range(3):
            key = f"switch-{p}-{uuid.uuid4().hex[:6]}".encode() if i % 2 else None
            producer.produce(topics.raw, enc.encode(rec), key, partition=(i + p) % 3)
    assert producer.flush(30) == 0

    stats = run(stack.kafka, stack.registry, topics, validator_settings, until_caught_up=True)
    assert stats.records_in == 3 * len(records)
    assert stats.valid == len(records)
    assert stats.by_rule == Counter({"duplicate_call_id": 2 * len(records)})

    valid = read_all(stack.kafka, topics.valid)
    decoder = WireDecoder(clients.registry(stack.registry), millis=True)
    by_id = {r["call_id"]: r for r in records}
    seen: Counter[str] = Counter()
    for m in valid:
        got = decoder.decode(m.value())
        assert isinstance(got, Decoded)
        call_id = got.record["call_id"]
        seen[call_id] += 1
        assert m.key() == call_id.encode()
        assert m.timestamp()[1] == got.record["event_time"] == by_id[call_id]["event_time"]
    assert seen == Counter(dict.fromkeys(by_id, 1))

    # A restarted validator knows the taken call_ids from cdr.valid (keys), whatever
    # partition their next copy comes on.
    again = [dict(records[0]), dict(records[1])]
    for p, rec in enumerate(again):
        producer.produce(topics.raw, enc.encode(rec), b"other", partition=p + 1)
    assert producer.flush(30) == 0
    stats = run(stack.kafka, stack.registry, topics, validator_settings, until_caught_up=True)
    assert stats.records_in == 2
    assert stats.by_rule == Counter({"duplicate_call_id": 2})

    report = ledger(
        stack.kafka,
        stack.registry,
        topics,
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert report.balanced, report.as_dict()
    assert report.raw == 3 * len(records) + 2


def test_two_instances_in_one_group_let_each_call_id_through_once(
    stack: Any, validator_topics: TopicSettings, validator_settings: ValidatorSettings
) -> None:
    """The copies of a call_id sit on raw partitions read by different instances; the
    repartition by call_id brings them to the one instance that owns its shard."""
    topics = validator_topics
    enc = raw_encoder(stack, topics)
    now = time.time_ns() // 1_000_000
    records: list[dict[str, Any]] = []
    stop = threading.Event()
    seen: dict[int, RunStats] = {}
    threads = []
    for i in range(2):
        settings = validator_settings.model_copy(
            update={"transactional_id": f"{validator_settings.transactional_id}-{i}"}
        )
        threads.append(
            threading.Thread(
                target=run,
                args=(stack.kafka, stack.registry, topics, settings),
                kwargs={"stop": stop, "on_batch": lambda s, i=i: seen.__setitem__(i, s)},
                daemon=True,
            )
        )
    for t in threads:
        t.start()
    producer = clients.producer(stack.kafka)
    try:
        # Rounds of records until both members have forwarded some (joins and
        # rebalances happen while records flow).
        deadline = time.monotonic() + 150
        while not (len(seen) == 2 and all(s.forwarded for s in seen.values())):
            assert time.monotonic() < deadline, {i: s.as_dict() for i, s in seen.items()}
            for _ in range(10):
                rec = valid_record(event_time=now - 60_000 - len(records))
                records.append(rec)
                for p in range(3):
                    value = enc.encode(rec)
                    producer.produce(topics.raw, value, f"cell-{p}".encode(), partition=p)
            assert producer.flush(30) == 0
            time.sleep(1.0)
        wait_for(lambda: sum(s.records_in for s in seen.values()) >= 3 * len(records), 180)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert sum(s.valid for s in seen.values()) == len(records)

    valid = read_all(stack.kafka, topics.valid)
    assert Counter(m.key() for m in valid) == Counter(r["call_id"].encode() for r in records)
    report = ledger(
        stack.kafka,
        stack.registry,
        topics,
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert report.balanced, report.as_dict()
    assert report.by_rule == Counter({"duplicate_call_id": 2 * len(records)})
