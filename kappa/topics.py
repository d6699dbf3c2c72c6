"""What is in the topics: offsets, and exact committed record counts."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import OFFSET_END, TopicPartition
from confluent_kafka.admin import AdminClient

from kappa import clients
from kappa.exceptions import KappaError
from kappa.settings import KafkaSettings


class TopicMissingError(KappaError):
    """A topic asked for does not exist."""


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
    md = admin.list_topics(timeout=timeout_s)
    consumer = clients.consumer(kafka, group_id="kappa-topics", **{"enable.partition.eof": True})
    out = []
    try:
        for topic in topics:
            if topic not in md.topics:
                msg = f"topic {topic} does not exist on {kafka.bootstrap}"
                raise TopicMissingError(msg)
            parts = list(md.topics[topic].partitions)
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
