"""``call_id`` uniqueness across micro-batches, restarts and raw partitions, within a horizon.

State: per shard, a dict ``call_id -> event time`` of the call_ids *accepted*
into ``cdr.valid`` (a rejected record does not take its call_id). The validator's
shards are the partitions of its internal topic keyed by call_id
(``repartition``): every copy of a call_id, whatever raw partition it came on,
is judged in the one shard its call_id hashes to, which is also its partition
of ``cdr.valid``. The state follows the internal topic's partition assignment.
Redrive keeps every call_id in one shard (``SHARD``).

The horizon is counted in event time (``cdr.valid``'s message timestamps are
event times): a shard's clock is the largest event time it has seen, and
call_ids older than that clock minus the horizon are forgotten. Simulated
clocks in the past therefore dedup exactly like live ones.

Rebuild (at start-up and on every partition assignment, after
``init_transactions`` has aborted whatever a crashed predecessor left open):
``cdr.valid`` partition *p* (for shard *p*) is read with
``isolation.level=read_committed`` from ``offsets_for_times(last timestamp -
horizon)`` to its end, keys and headers only (no Avro decoding): the key is the
call_id, the timestamp its event time, and the ``kappa.src`` header says the
record came from the raw topic. Because ``cdr.valid`` holds exactly the
committed batches, the rebuilt state is the state after the last committed
batch. Records written before keys became call_ids carry the raw key; a foreign
producer's non-call_id keys of that time are not known to the state.

Cost of a rebuild: one sequential read of a horizon's worth of ``cdr.valid``
(24 h at 10 CDR/s is 864k records, a few seconds and ~100 MB of dict; at
50k CDR/s a 24 h horizon would need billions of keys, so shorten the horizon
or move the state to a compacted changelog topic / RocksDB at that scale).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from streams.validate import headers as hdr

log = logging.getLogger(__name__)

SHARD = 0
"""The shard of a state that holds every call_id in one (redrive, the pure tests)."""


class PartitionState:
    __slots__ = ("clock_ms", "ids")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.clock_ms = 0

    def add(self, call_id: str, ts_ms: int) -> None:
        self.ids[call_id] = ts_ms
        self.clock_ms = max(self.clock_ms, ts_ms)

    def evict(self, horizon_ms: int) -> int:
        """Forget call_ids older than the clock minus the horizon; insertion order is
        close to time order, so this stops at the first young entry."""
        cutoff = self.clock_ms - horizon_ms
        ids = self.ids
        stale = []
        for call_id, ts in ids.items():
            if ts >= cutoff:
                break
            stale.append(call_id)
        for call_id in stale:
            del ids[call_id]
        return len(stale)


class DedupState:
    """Accepted call_ids per shard (``SHARD``), within ``horizon_ms`` of event time."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._parts: dict[int, PartitionState] = {}

    def seen(self, partition: int, call_id: str, ts_ms: int | None = None) -> bool:
        state = self._parts.get(partition)
        if state is None:
            return False
        first = state.ids.get(call_id)
        if first is None:
            return False
        # Two copies further apart than the horizon are not duplicates.
        return ts_ms is None or abs(ts_ms - first) <= self.horizon_ms

    def add(self, partition: int, call_id: str, ts_ms: int) -> None:
        state = self._parts.get(partition)
        if state is None:
            state = self._parts[partition] = PartitionState()
        state.add(call_id, ts_ms)

    def add_many(self, accepted: Iterable[tuple[int, str, int]]) -> None:
        for partition, call_id, ts in accepted:
            self.add(partition, call_id, ts)

    def evict(self) -> int:
        return sum(p.evict(self.horizon_ms) for p in self._parts.values())

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.pop(p, None)

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def __len__(self) -> int:
        return sum(len(p.ids) for p in self._parts.values())


def rebuild(
    state: DedupState,
    make_consumer: Any,
    *,
    valid_topic: str,
    raw_topic: str,
    shards: Iterable[int],
    timeout_s: float = 120.0,
) -> int:
    """Refill ``state``'s ``shards`` from the tail of the same partitions of
    ``valid_topic`` (every record that came from ``raw_topic``).

    ``make_consumer()`` returns a fresh read_committed consumer (no group commits).
    Returns the number of records read.
    """
    parts = sorted(set(shards))
    state.drop(parts)
    if not parts:
        return 0
    started = time.monotonic()
    consumer: Consumer = make_consumer()
    try:
        tail = _tail(consumer, state.horizon_ms, valid_topic, parts)
        if not tail:
            return 0
        consumer.assign([TopicPartition(valid_topic, p, start) for p, (start, _) in tail.items()])
        ends = {p: end for p, (_, end) in tail.items()}
        read = _read_tail(
            consumer, state, valid_topic, raw_topic, ends=ends, deadline=started + timeout_s
        )
        if ends:
            msg = f"dedup rebuild from {valid_topic} did not finish in {timeout_s:.0f} s"
            raise KafkaException(msg)
    finally:
        consumer.close()
    state.evict()
    log.info(
        "dedup rebuilt shards=%s read=%d keys=%d seconds=%.2f",
        parts,
        read,
        len(state),
        time.monotonic() - started,
    )
    return read


def _tail(
    consumer: Consumer, horizon_ms: int, valid_topic: str, parts: list[int]
) -> dict[int, tuple[int, int]]:
    """Per partition of ``parts`` with records within the horizon of its last
    timestamp: (first offset to read, end offset). Empty if the topic is missing."""
    meta = consumer.list_topics(valid_topic, timeout=30)
    tmeta = meta.topics.get(valid_topic)
    if tmeta is None or tmeta.error is not None:
        return {}
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for p in tmeta.partitions:
        if p not in parts:
            continue
        low, high = consumer.get_watermark_offsets(TopicPartition(valid_topic, p), timeout=30)
        if high <= low:
            continue
        ends[p] = high
        last_ts = _last_timestamp(consumer, valid_topic, p, low, high)
        starts.append(TopicPartition(valid_topic, p, max(0, last_ts - horizon_ms)))
    if not starts:
        return {}
    out: dict[int, tuple[int, int]] = {}
    for tp in consumer.offsets_for_times(starts, timeout=30):
        if tp.offset in (OFFSET_END, -1) or tp.offset >= ends[tp.partition]:
            continue
        out[tp.partition] = (tp.offset, ends[tp.partition])
    return out


def _read_tail(
    consumer: Consumer,
    state: DedupState,
    valid_topic: str,
    raw_topic: str,
    *,
    ends: dict[int, int],
    deadline: float,
) -> int:
    """Read the assigned partitions up to ``ends`` (each removed once reached), adding
    the call_ids that came from ``raw_topic`` to ``state``; the records read."""
    read = 0
    while ends and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 0.5):
            if msg.error() is not None:
                continue
            p = msg.partition()
            src = hdr.source_of(msg.headers())
            key = msg.key()
            if src is not None and src[0] == raw_topic and key:
                state.add(p, key.decode("utf-8", "replace"), msg.timestamp()[1])
            read += 1
            if p in ends and msg.offset() + 1 >= ends[p]:
                ends.pop(p)
        # Aborted transactions leave control records, so a read_committed
        # consumer may never see the last offset itself: check positions.
        for tp in consumer.position([TopicPartition(valid_topic, p) for p in list(ends)]):
            if tp.offset >= 0 and tp.offset >= ends.get(tp.partition, 0):
                ends.pop(tp.partition, None)
    return read


def _last_timestamp(consumer: Consumer, topic: str, partition: int, low: int, high: int) -> int:
    """The largest timestamp among the last records of a partition (0 if none is readable;
    the very last offsets may be transaction markers)."""
    for back in (100, 100_000):
        start = max(low, high - back)
        consumer.assign([TopicPartition(topic, partition, start)])
        best: int | None = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.2):
                if m.error() is None:
                    best = max(best or 0, int(m.timestamp()[1]))
            if consumer.position([TopicPartition(topic, partition)])[0].offset >= high:
                break
        consumer.unassign()
        if best is not None or start == low:
            return best or 0
    return 0
