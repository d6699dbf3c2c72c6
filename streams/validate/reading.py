"""Bounded reads of whole topics (read_committed), for the ledger, the DLQ tools and reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

from confluent_kafka import OFFSET_END, Consumer, Message, TopicPartition

from kappa import clients
from kappa.settings import KafkaSettings
from kappa.topics import require_topics


def side_consumer(kafka: KafkaSettings, purpose: str) -> Consumer:
    """A consumer for assign()-style reads; it never commits."""
    return clients.consumer(kafka, f"kappa-{purpose}", **{"enable.partition.eof": False})


def partitions_of(consumer: Consumer, topic: str, bootstrap: str = "the broker") -> list[int]:
    """The partition ids of ``topic``; ``TopicMissingError`` if it does not exist."""
    return require_topics(consumer, [topic], bootstrap)[topic]


def offsets_at(
    consumer: Consumer, topic: str, partitions: list[int], when: datetime | int | None
) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after ``when`` (ms or a
    datetime; None: the beginning). A partition with no such record maps to its end."""
    out: dict[int, int] = {}
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in partitions
    }
    if when is None:
        return {p: lo for p, (lo, _) in ends.items()}
    ms = int(when.timestamp() * 1000) if isinstance(when, datetime) else int(when)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, max(ms, 0)) for p in partitions], timeout=30
    )
    for tp in found:
        out[tp.partition] = ends[tp.partition][1] if tp.offset in (OFFSET_END, -1) else tp.offset
    return out


def read_range(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int] | None = None,
    *,
    follow: bool = False,
    timeout_s: float = 600.0,
) -> Iterator[Message]:
    """Records of ``topic`` from ``starts`` (partition -> offset) up to ``ends`` (exclusive;
    default: each partition's end now). ``follow``: keep reading as records arrive."""
    if ends is None:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in starts
        }
    pending = {p for p in starts if starts[p] < ends[p]}
    if not pending and not follow:
        return
    consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    deadline = time.monotonic() + timeout_s
    try:
        while follow or (pending and time.monotonic() < deadline):
            for msg in consumer.consume(5000, 0.5):
                if msg.error() is not None:
                    continue
                p = msg.partition()
                off = msg.offset()
                assert p is not None
                assert off is not None
                if not follow and off >= ends[p]:
                    pending.discard(p)
                    continue
                yield msg
                if not follow and off + 1 >= ends[p]:
                    pending.discard(p)
            if pending and not follow:
                # Transaction markers are never delivered: look at positions too.
                for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                    if tp.offset >= ends[tp.partition]:
                        pending.discard(tp.partition)
    finally:
        consumer.unassign()
