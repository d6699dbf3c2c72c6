"""Planning a replay: which offsets of which partitions hold an event-time range.

Message timestamps are event times (the producers and the validator keep them),
so Kafka's time index finds the offsets:

* start: per partition, the first offset whose timestamp is at or after
  ``start - margin``. Every earlier record is older than that, hence outside
  the range: the start side is exact.
* end: per partition, the first offset whose timestamp is at or after
  ``end + margin`` (or the end of the partition when there is none), fixed
  before anything is read. A record after it with an event time inside the
  range would be more than ``margin`` behind a record already in the log:
  later than the lateness margin allows. Kafka's time lookup may land on a
  transaction marker, whose timestamp is the commit's wall-clock time rather
  than an event time; the plan then reads on from there to the first real
  record at or after ``end + margin`` (or to the end of the partition).

Rows are then filtered on their event time exactly (``replay.transform.in_range``).

Refused before anything is written: a reversed or empty range, a range that is
not closed yet (its end within the margin of now), a range older than the
topic keeps (``retention.ms``, or records already deleted from a partition).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource

from kappa import clients
from kappa.clients import kafka_unreachable
from kappa.exceptions import KappaError
from kappa.settings import KafkaSettings
from kappa.topics import require_topics
from replay.exceptions import (
    PlanningError,
    RangeExpiredError,
    RangeNotClosedError,
    ReversedRangeError,
)

log = logging.getLogger(__name__)

TIMEOUT_S = 15.0
SCAN_BUDGET = 500_000


def iso(t: datetime) -> str:
    """``2026-01-01T00:00:00Z`` (milliseconds when there are any)."""
    t = t.astimezone(UTC)
    text = t.isoformat(timespec="milliseconds" if t.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def to_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def range_id(start: datetime, end: datetime) -> str:
    """A path-safe name of a range: ``20260101T000000Z_20260101T060000Z``."""

    def fmt(t: datetime) -> str:
        t = t.astimezone(UTC)
        ms = f"{t.microsecond // 1000:03d}" if t.microsecond else ""
        return t.strftime("%Y%m%dT%H%M%S") + ms + "Z"

    return f"{fmt(start)}_{fmt(end)}"


@dataclass(frozen=True, slots=True)
class PartitionSpan:
    """Offsets ``[start, end)`` of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class ReplayPlan:
    topic: str
    start: datetime
    end: datetime
    margin: timedelta
    spans: tuple[PartitionSpan, ...]
    planned_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def range_id(self) -> str:
        return range_id(self.start, self.end)

    @property
    def offsets_to_read(self) -> int:
        return sum(s.size for s in self.spans)

    def assign_json(self) -> str:
        return json.dumps({self.topic: [s.partition for s in self.spans]})

    def starting_offsets_json(self) -> str:
        """Spark's ``startingOffsets`` (inclusive)."""
        return json.dumps({self.topic: {str(s.partition): s.start for s in self.spans}})

    def ending_offsets_json(self) -> str:
        """Spark's ``endingOffsets`` (exclusive)."""
        return json.dumps({self.topic: {str(s.partition): s.end for s in self.spans}})

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "from": iso(self.start),
            "to": iso(self.end),
            "lateness_margin_s": int(self.margin.total_seconds()),
            "planned_at": iso(self.planned_at),
            "partitions": [
                {"partition": s.partition, "start_offset": s.start, "end_offset": s.end}
                for s in self.spans
            ],
        }


# -- checks (pure) ----------------------------------------------------------------------


def check_range(start: datetime, end: datetime, margin: timedelta, now: datetime) -> None:
    """Refuse a reversed or empty range, and one that is not closed yet."""
    for name, t in (("--from", start), ("--to", end)):
        if t.tzinfo is None:
            msg = (
                f"{name} {t.isoformat()} has no time zone; "
                "give UTC times such as 2026-01-01T00:00:00Z"
            )
            raise ReversedRangeError(msg)
    if end <= start:
        what = "empty" if end == start else "reversed"
        msg = f"the range [{iso(start)}, {iso(end)}) is {what}: --to must be after --from"
        raise ReversedRangeError(msg)
    closes = end + margin
    if closes > now:
        minutes = margin.total_seconds() / 60
        msg = (
            f"the range [{iso(start)}, {iso(end)}) is not closed yet: records for it may arrive "
            f"until {iso(closes)} (its end plus the {minutes:g}-minute lateness margin), "
            f"and it is {iso(now)}; replay it after {iso(closes)}"
        )
        raise RangeNotClosedError(msg)


def check_retention(
    start: datetime, margin: timedelta, now: datetime, retention_ms: int | None, topic: str
) -> None:
    """Refuse a range whose start (minus the margin) the topic's retention has passed."""
    if retention_ms is None or retention_ms < 0:
        return
    kept_since = now - timedelta(milliseconds=retention_ms)
    if start - margin < kept_since:
        msg = (
            f"the range starting {iso(start)} is older than what {topic} keeps: retention.ms="
            f"{retention_ms} keeps records since about {iso(kept_since)}; "
            "the records of this range are (partly) deleted"
        )
        raise RangeExpiredError(msg)


def check_deleted(
    topic: str,
    partition: int,
    *,
    low: int,
    high: int,
    first_at_start: int,
    start: datetime,
    margin: timedelta,
) -> None:
    """Refuse when records a partition no longer holds may have belonged to the range.

    ``first_at_start`` is the first offset whose timestamp is at or after
    ``start - margin`` (-1: none). When the earliest offset still held is
    after 0 and is that offset (or the partition is emptied), the deleted
    records before it may have had timestamps in the range.
    """
    if low <= 0:
        return
    if first_at_start == low or (first_at_start < 0 and low >= high):
        msg = (
            f"{topic} partition {partition} no longer holds its records before offset {low} "
            f"(retention or deleted records), and those may belong to the range starting "
            f"{iso(start)} (minus the {margin.total_seconds() / 60:g}-minute lateness margin); "
            "refusing an incomplete replay"
        )
        raise RangeExpiredError(msg)


# -- planning against the broker -----------------------------------------------------------


def plan(
    kafka: KafkaSettings,
    topic: str,
    start: datetime,
    end: datetime,
    margin: timedelta,
    *,
    now: datetime | None = None,
) -> ReplayPlan:
    """The offsets of ``topic`` that hold the event-time range ``[start, end)``."""
    now = now or datetime.now(UTC)
    check_range(start, end, margin, now)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    consumer = clients.consumer(kafka, group_id=f"kappa-replay-plan-{uuid.uuid4().hex[:12]}")
    try:
        partitions = _partitions(consumer, kafka, topic)
        check_retention(start, margin, now, _retention_ms(kafka, topic), topic)
        marks = {
            p: consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=TIMEOUT_S, cached=False
            )
            for p in partitions
        }
        firsts = _offsets_for_time(consumer, topic, partitions, start - margin)
        candidates = _offsets_for_time(consumer, topic, partitions, end + margin)
        lasts = {
            p: _first_record_at(
                consumer,
                topic,
                p,
                candidate=candidates[p],
                high=marks[p][1],
                target_ms=to_ms(end + margin),
            )
            for p in partitions
        }
    except KafkaException as exc:
        raise _planning_error(kafka, topic, exc) from exc
    finally:
        consumer.close()
    spans = []
    for p in partitions:
        low, high = marks[p]
        check_deleted(
            topic, p, low=low, high=high, first_at_start=firsts[p], start=start, margin=margin
        )
        first = firsts[p] if firsts[p] >= 0 else high
        last = lasts[p]
        first = max(low, min(first, high))
        last = max(first, min(last, high))
        spans.append(PartitionSpan(p, first, last))
    result = ReplayPlan(topic, start, end, margin, tuple(spans), planned_at=now)
    _log_planned(result)
    return result


def _log_planned(p: ReplayPlan) -> None:
    log.info(
        "replay planned topic=%s from=%s to=%s offsets=%s spans=%s",
        p.topic,
        iso(p.start),
        iso(p.end),
        p.offsets_to_read,
        " ".join(f"{s.partition}:{s.start}-{s.end}" for s in p.spans),
    )


def _partitions(consumer: Consumer, kafka: KafkaSettings, topic: str) -> list[int]:
    """The topic's partition ids (``kappa.exceptions.TopicMissingError`` when it has none)."""
    return require_topics(consumer, [topic], kafka.bootstrap, timeout_s=TIMEOUT_S)[topic]


_UNREACHABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


def _planning_error(kafka: KafkaSettings, topic: str, exc: KafkaException) -> KappaError:
    """A broker gone quiet while planning is unreachable; any other Kafka error a
    ``PlanningError`` naming it."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError) and err.code() in _UNREACHABLE_CODES:
        return kafka_unreachable(kafka.bootstrap, exc)
    cause = err.str() if isinstance(err, KafkaError) else str(err)
    return PlanningError(topic, kafka.bootstrap, cause)


def _retention_ms(kafka: KafkaSettings, topic: str) -> int | None:
    admin = clients.admin(kafka)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    futures = admin.describe_configs([resource], request_timeout=TIMEOUT_S)
    configs = next(iter(futures.values())).result(timeout=TIMEOUT_S)
    entry = configs.get("retention.ms")
    if entry is None or entry.value is None:
        return None
    return int(entry.value)


def _first_record_at(
    consumer: Consumer, topic: str, partition: int, *, candidate: int, high: int, target_ms: int
) -> int:
    """The offset of the first record at or after ``candidate`` whose timestamp is at or
    after ``target_ms``; ``high`` when there is none (or the scan runs out of budget).

    Kafka's time lookup can land on a transaction marker: markers carry the
    wall-clock time of the commit, not an event time, so records after one may
    still belong to the range. Reading from there finds the first real record.
    Ending at ``high`` instead is always safe (rows are filtered on event time).
    """
    if candidate < 0 or candidate >= high:
        return high
    consumer.assign([TopicPartition(topic, partition, candidate)])
    scanned = 0
    idle_until = time.monotonic() + TIMEOUT_S
    try:
        while scanned < SCAN_BUDGET and time.monotonic() < idle_until:
            msgs = consumer.consume(num_messages=10_000, timeout=1.0)
            for m in msgs:
                if m.error() is not None or m.partition() != partition:
                    continue
                scanned += 1
                off = m.offset()
                if off is not None and off >= high:
                    return high
                if m.timestamp()[1] >= target_ms and off is not None:
                    return int(off)
            if msgs:
                idle_until = time.monotonic() + TIMEOUT_S
            (pos,) = consumer.position([TopicPartition(topic, partition)])
            if pos.offset >= high:
                return high
        log.info(
            "end offset scan out of budget topic=%s partition=%s scanned=%s; "
            "reading to the end of the partition",
            topic,
            partition,
            scanned,
        )
        return high
    finally:
        consumer.unassign()


def _offsets_for_time(
    consumer: Consumer, topic: str, partitions: list[int], at: datetime
) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is >= ``at`` (-1: none)."""
    ms = max(0, to_ms(at))
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, ms) for p in partitions], timeout=TIMEOUT_S
    )
    out = {}
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[tp.partition] = tp.offset
    return out
