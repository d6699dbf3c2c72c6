"""``kappa ledger``: every raw offset of a range ends in exactly one of cdr.valid or cdr.dlq.

How: read the raw range (by time through ``offsets_for_times``, or an explicit
partition and offsets), noting its offsets, its smallest message timestamp and its
smallest event time (records decoded). A dead letter keeps the raw timestamp and
a valid copy carries its event time as timestamp, so every copy of a raw record in
the range sits at or after ``offsets_for_times`` of the smaller of the two in
cdr.valid and cdr.dlq: both are read from there to their end (read_committed), keys and headers only
(``kappa.src`` names the raw coordinates); dead letters in range are decoded for
their rules. An offset found in neither is *missing*, one found in both (or
twice in one) is *doubled*. A dead letter redriven into cdr.valid
(``kappa.redriven``) counts once, as redriven. Zero missing and zero doubled is
the only good answer.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import TopicPartition

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings
from schemas.wire import Decoded, WireDecoder
from streams.validate import headers as hdr
from streams.validate.exceptions import ValidatorError
from streams.validate.reading import offsets_at, partitions_of, read_range, side_consumer

log = logging.getLogger(__name__)
_LIST_MAX = 100


@dataclass
class LedgerReport:
    raw_topic: str
    ranges: dict[int, tuple[int, int]]
    raw: int = 0
    valid: int = 0
    dead: int = 0
    redriven: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    missing: list[tuple[int, int]] = field(default_factory=list)
    doubled: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.missing and not self.doubled and self.valid + self.dead == self.raw

    def as_dict(self) -> dict[str, Any]:
        return {
            "raw_topic": self.raw_topic,
            "ranges": {str(p): list(r) for p, r in sorted(self.ranges.items())},
            "raw": self.raw,
            "valid": self.valid,
            "dead_lettered": self.dead,
            "redriven": self.redriven,
            "by_rule": dict(sorted(self.by_rule.items())),
            "missing": len(self.missing),
            "doubled": len(self.doubled),
            "missing_offsets": [f"{p}:{o}" for p, o in self.missing[:_LIST_MAX]],
            "doubled_offsets": [f"{p}:{o} ({why})" for p, o, why in self.doubled[:_LIST_MAX]],
            "balanced": self.balanced,
        }


def ledger(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    partition: int | None = None,
    from_offset: int | None = None,
    to_offset: int | None = None,
) -> LedgerReport:
    """Reconcile a raw range: ``[start, end)`` by time, or ``[from_offset, to_offset)`` of
    ``partition``."""
    consumer = side_consumer(kafka, "ledger")
    try:
        ranges = _ranges(
            consumer,
            topics.raw,
            start,
            end,
            partition=partition,
            from_offset=from_offset,
            to_offset=to_offset,
            bootstrap=kafka.bootstrap,
        )
        report = LedgerReport(topics.raw, ranges)
        decoder = WireDecoder(clients.registry(registry), millis=True)
        raw = _read_raw(consumer, decoder, topics.raw, ranges)
        report.raw = sum(len(s) for s in raw.offsets.values())
        if raw.min_ts is None:
            return report
        seen = _Seen()
        for topic, is_dlq in ((topics.valid, False), (topics.dlq, True)):
            parts = partitions_of(consumer, topic, kafka.bootstrap)
            starts = offsets_at(consumer, topic, parts, raw.min_ts)
            for msg in read_range(consumer, topic, starts):
                seen.count(msg, raw, decoder, report, is_dlq=is_dlq)
        seen.reconcile(raw, report)
        return report
    finally:
        consumer.close()


@dataclass(frozen=True)
class _RawRead:
    """The offsets read per raw partition, and the earliest time among them (ms)."""

    offsets: dict[int, set[int]]
    min_ts: int | None
    topic: str


def _read_raw(
    consumer: Any, decoder: WireDecoder, topic: str, ranges: dict[int, tuple[int, int]]
) -> _RawRead:
    """Read the raw ranges: their offsets and the earliest of their timestamps and
    event times (where the outcomes may start)."""
    offsets: dict[int, set[int]] = {p: set() for p in ranges}
    min_ts: int | None = None
    for msg in read_range(
        consumer,
        topic,
        {p: r[0] for p, r in ranges.items()},
        {p: r[1] for p, r in ranges.items()},
    ):
        p, o = msg.partition(), msg.offset()
        assert p is not None
        assert o is not None
        offsets[p].add(o)
        ts = msg.timestamp()[1]
        got = decoder.decode(msg.value())
        if isinstance(got, Decoded):
            when = got.record.get("event_time")
            if type(when) is int and when >= 0:
                ts = min(ts, when)
        min_ts = ts if min_ts is None else min(min_ts, ts)
    return _RawRead(offsets, min_ts, topic)


@dataclass
class _Seen:
    """How many times each raw record of the range came out valid, dead or redriven."""

    valid: Counter[tuple[int, int]] = field(default_factory=Counter)
    dead: Counter[tuple[int, int]] = field(default_factory=Counter)
    redriven: Counter[tuple[int, int]] = field(default_factory=Counter)

    def count(
        self, msg: Any, raw: _RawRead, decoder: WireDecoder, report: LedgerReport, *, is_dlq: bool
    ) -> None:
        src = hdr.source_of(msg.headers())
        if src is None or src[0] != raw.topic or src[2] not in raw.offsets.get(src[1], ()):
            return
        key = (src[1], src[2])
        if is_dlq:
            self.dead[key] += 1
            got = decoder.decode(msg.value())
            if isinstance(got, Decoded):
                report.by_rule.update({f["rule"] for f in got.record["failures"]})
        elif hdr.redriven_from(msg.headers()) is not None:
            self.redriven[key] += 1
        else:
            self.valid[key] += 1

    def reconcile(self, raw: _RawRead, report: LedgerReport) -> None:
        """Each raw record in exactly one place, or named missing or doubled."""
        for p, offs in sorted(raw.offsets.items()):
            for o in sorted(offs):
                k = (p, o)
                v, d, r = self.valid[k], self.dead[k], self.redriven[k]
                if v == 0 and d == 0:
                    report.missing.append(k)
                elif v + d > 1 or r > 1 or (r and not d) or (r and v):
                    report.doubled.append((p, o, f"valid={v} dlq={d} redriven={r}"))
                elif v:
                    report.valid += 1
                else:
                    report.dead += 1
                    report.redriven += r


def _ranges(
    consumer: Any,
    topic: str,
    start: datetime | None,
    end: datetime | None,
    *,
    partition: int | None,
    from_offset: int | None,
    to_offset: int | None,
    bootstrap: str,
) -> dict[int, tuple[int, int]]:
    parts = partitions_of(consumer, topic, bootstrap)
    if partition is not None:
        if partition not in parts:
            msg = f"{topic} has no partition {partition} (it has {len(parts)})"
            raise ValidatorError(msg)
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        first = lo if from_offset is None else max(lo, from_offset)
        last = hi if to_offset is None else min(hi, to_offset)
        return {partition: (first, max(first, last))}
    if start is None or end is None:
        msg = "give --from and --to, or --partition with --from-offset/--to-offset"
        raise ValidatorError(msg)
    if end <= start:
        msg = f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})"
        raise ValidatorError(msg)
    los = offsets_at(consumer, topic, parts, start)
    his = offsets_at(consumer, topic, parts, end)
    return {p: (los[p], max(los[p], his[p])) for p in parts}
