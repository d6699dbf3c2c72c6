"""The validator against the real broker and registry: poison pills, redrive, ledger."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from kappa import clients
from kappa.settings import TopicSettings, ValidatorSettings
from schemas.wire import Decoded, WireDecoder
from streams.validate import headers as hdr
from streams.validate.dlq import redrive, tail
from streams.validate.job import RunStats, run
from streams.validate.ledger import ledger
from tests.fixtures.validate import raw_encoder, read_all, valid_record, wait_for

pytestmark = pytest.mark.integration


def _produce(stack: Any, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = clients.producer(stack.kafka)
    for key, value in items:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _now_record(**changes: Any) -> dict[str, Any]:
    import time

    return valid_record(event_time=time.time_ns() // 1_000_000, **changes)


def _decode_all(stack: Any, msgs: list[Any]) -> list[dict[str, Any]]:
    decoder = WireDecoder(clients.registry(stack.registry))
    out = []
    for m in msgs:
        got = decoder.decode(m.value())
        assert isinstance(got, Decoded)
        out.append(got.record)
    return out


def test_poison_pills_land_in_the_dlq_while_the_job_keeps_running(
    stack: Any, validator_topics: TopicSettings, validator_settings: ValidatorSettings
) -> None:
    topics = validator_topics
    enc = raw_encoder(stack, topics)
    good = enc.encode(_now_record())
    pills = {
        "random_bytes": b"\x9f\x13\x00\xff\x10garbage-bytes",
        "truncated_avro": good[: len(good) // 2],
        "unknown_schema_id": b"\x00" + (0x7FFFFFF0).to_bytes(4, "big") + good[5:],
        "wrong_magic_byte": b"\x02" + good[1:],
        "empty": b"",
    }
    stop = threading.Event()
    batches: list[RunStats] = []
    job = threading.Thread(
        target=run,
        args=(stack.kafka, stack.registry, topics, validator_settings),
        kwargs={"stop": stop, "on_batch": batches.append},
        daemon=True,
    )
    _produce(stack, topics.raw, [(f"pill-{k}".encode(), v) for k, v in pills.items()])
    job.start()
    try:
        wait_for(lambda: bool(batches) and batches[-1].records_in >= len(pills), 180)
        after = [_now_record() for _ in range(20)]
        _produce(stack, topics.raw, [(r["call_id"].encode(), enc.encode(r)) for r in after])
        wait_for(lambda: batches[-1].records_in >= len(pills) + len(after), 120)
    finally:
        stop.set()
        job.join(60)
    assert not job.is_alive()
    dead = _decode_all(stack, read_all(stack.kafka, topics.dlq))
    by_key = {d["original_key"].decode(): d for d in dead}
    assert set(by_key) == {f"pill-{k}" for k in pills}
    for kind, value in pills.items():
        d = by_key[f"pill-{kind}"]
        assert [f["rule"] for f in d["failures"]] == ["undecodable"]
        observed = d["failures"][0]["observed"]
        expected = {
            "random_bytes": ("wrong_magic_byte", "malformed_avro"),
            "truncated_avro": ("malformed_avro",),
            "empty": ("empty",),
        }.get(kind, (kind,))
        assert observed.startswith(expected), (kind, observed)
        assert d["original_value"] == value
        assert d["source_topic"] == topics.raw
    valid = read_all(stack.kafka, topics.valid)
    assert sorted(m.key().decode() for m in valid) == sorted(r["call_id"] for r in after)
    report = ledger(
        stack.kafka, stack.registry, topics, partition=None, start=_epoch(2000), end=_epoch(2100)
    )
    assert report.balanced, report.as_dict()
    assert report.raw == len(pills) + len(after)


def _epoch(year: int) -> Any:
    from datetime import UTC, datetime

    return datetime(year, 1, 1, tzinfo=UTC)


def test_redrive_moves_exactly_the_records_the_new_suite_accepts_once(
    stack: Any, validator_topics: TopicSettings, validator_settings: ValidatorSettings
) -> None:
    topics = validator_topics
    enc = raw_encoder(stack, topics)
    signal_only = [_now_record(signal_strength=0) for _ in range(15)]
    both = [_now_record(signal_strength=9, duration_sec=-5) for _ in range(5)]
    other = [_now_record(duration_sec=9000) for _ in range(5)]
    fine = [_now_record() for _ in range(25)]
    dup_of_fine = dict(fine[0], signal_strength=0)  # would pass now, but its call_id is taken
    records = [*fine, *signal_only, *both, *other, dup_of_fine]
    _produce(stack, topics.raw, [(r["call_id"].encode(), enc.encode(r)) for r in records])
    stats = run(stack.kafka, stack.registry, topics, validator_settings, until_caught_up=True)
    assert stats.records_in == len(records)
    assert stats.valid == len(fine)
    assert stats.by_rule["signal_range"] == len(signal_only) + len(both) + 1

    relaxed = validator_settings.model_copy(
        update={"suite_version": "2", "disabled_rules": ("signal_range",)}
    )
    dry = redrive(stack.kafka, stack.registry, topics, relaxed, rule="signal_range", dry_run=True)
    assert dry.moved_total == len(signal_only)
    assert len(read_all(stack.kafka, topics.valid)) == len(fine)

    first = redrive(stack.kafka, stack.registry, topics, relaxed)
    assert first.moved_total == len(signal_only)
    assert first.moved == Counter({"signal_range": len(signal_only)})
    assert first.now_failing["duration_range"] == len(both) + len(other)
    assert first.now_failing["duplicate_call_id"] == 1

    second = redrive(stack.kafka, stack.registry, topics, relaxed)
    assert second.moved_total == 0
    assert second.already_valid == len(signal_only)

    valid = read_all(stack.kafka, topics.valid)
    keys = Counter(m.key().decode() for m in valid)
    assert max(keys.values()) == 1
    redriven = {m.key().decode() for m in valid if hdr.redriven_from(m.headers())}
    assert redriven == {r["call_id"] for r in signal_only}
    assert len(list(tail(stack.kafka, stack.registry, topics))) == len(records) - len(fine)

    report = ledger(stack.kafka, stack.registry, topics, start=_epoch(2000), end=_epoch(2100))
    assert report.balanced, report.as_dict()
    assert report.redriven == len(signal_only)
    assert report.valid + report.dead == len(records)
