"""What is in the topics: offsets, and exact committed record counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import OFFSET_END, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata

from kappa import clients
from kappa.clients import kafka_unreachable
from kappa.exceptions import TopicMissingError
from kappa.settings import KafkaSettings

__all__ = ["TopicCount", "TopicMissingError", "count", "require_topics"]

MISSING_HINT = "`kappa stack up` creates the pipeline's topics"


class _HasMetadata(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata: ...


def require_topics(
    client: _HasMetadata,
    topics: list[str],
    bootstrap: str,
    *,
    timeout_s: float = 30.0,
    hint: str = MISSING_HINT,
) -> dict[str, list[int]]:
    """The partition ids of each of ``topics``, the one topic-existence check.

    ``client`` is any client with ``list_topics`` (admin, consumer, producer). A
    broker that does not answer -> ``ServiceUnreachableError``; topics missing, in
    error or without partitions -> one ``TopicMissingError`` naming them all.
    """
    try:
        meta = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise kafka_unreachable(bootstrap, exc) from exc
    found: dict[str, list[int]] = {}
    for topic in topics:
        md = meta.topics.get(topic)
        if md is not None and md.error is None and md.partitions:
            found[topic] = sorted(md.partitions)
    missing = [t for t in topics if t not in found]
    if missing:
        raise TopicMissingError(missing, bootstrap, hint)
    return found


@dataclass(frozen=True)
class TopicCount:
    topic: str
    partitions: int
    offsets: int  # high minus low watermark, summed (includes transaction markers)
    records: int | None  # committed records, when counted exactly


def count(
    kafka: KafkaSettings, topics: list[str], *, exact: bool = False, timeout_s: float = 30.0
) -> list[TopicCount]:
    admin: AdminClient = clients.admin(kafka)
    found = require_topics(admin, topics, kafka.bootstrap, timeout_s=timeout_s)
    consumer = clients.consumer(kafka, group_id="kappa-topics", **{"enable.partition.eof": True})
    out = []
    try:
        for topic in topics:
            parts = found[topic]
            span = 0
            ends: dict[int, int] = {}
            starts: dict[int, int] = {}
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout_s
                )
                span += high - low
                starts[p], ends[p] = low, high
            records = _read_count(consumer, topic, starts, ends, timeout_s) if exact else None
            out.append(TopicCount(topic, len(parts), span, records))
    finally:
        consumer.close()
    return out


def _read_count(
    consumer: object, topic: str, starts: dict[int, int], ends: dict[int, int], timeout_s: float
) -> int:
    from confluent_kafka import Consumer

    assert isinstance(consumer, Consumer)
    todo = {p for p in ends if ends[p] > starts[p]}
    if not todo:
        return 0
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
    n = 0
    idle = 0
    while todo and idle < int(timeout_s * 2):
        batch = consumer.consume(10_000, timeout=0.5)
        idle = 0 if batch else idle + 1
        for m in batch:
            err = m.error()
            if err is None:
                n += 1
                if m.offset() + 1 >= ends[m.partition()]:
                    todo.discard(m.partition())
            elif err.code() == err._PARTITION_EOF:
                todo.discard(m.partition())
        # Read-committed reads stop short of the high watermark at transaction markers.
        for p in list(todo):
            pos = consumer.position([TopicPartition(topic, p, OFFSET_END)])[0].offset
            if pos >= ends[p]:
                todo.discard(p)
    consumer.unassign()
    return n
