"""``kappa dlq tail`` and ``kappa dlq redrive``.

Redrive re-judges dead letters with the *current* suite (settings), through the
same ``routing.validate`` as the live job, and writes those that now pass to
cdr.valid in one Kafka transaction (its own ``transactional.id``:
``<validator's>-redrive``). It never writes to cdr.dlq, so a record cannot loop.
Each redriven record keeps the raw key, timestamp and ``kappa.src`` coordinates
and adds ``kappa.redriven`` (the dead letter's coordinates). Before judging,
cdr.valid is read back from ``offsets_for_times(oldest candidate - dedup
horizon)``: raw coordinates already there are skipped (a second redrive adds
nothing) and the call_ids there feed the dedup check (a redriven record cannot
duplicate a valid one).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from schemas.wire import Decoded, WireDecoder
from streams.validate import headers as hdr
from streams.validate.connections import suite_config, transactional_producer
from streams.validate.dedup import SHARD, DedupState
from streams.validate.encoding import produce_all
from streams.validate.exceptions import ValidatorError
from streams.validate.outputs import Message, Outputs
from streams.validate.reading import offsets_at, partitions_of, read_range, side_consumer
from streams.validate.routing import RawRecord, validate
from streams.validate.suite import CdrSuite

log = logging.getLogger(__name__)
_CHUNK = 10_000


@dataclass(frozen=True)
class DeadLetterView:
    """A dead letter as the tools show it."""

    dlq_partition: int
    dlq_offset: int
    record: dict[str, Any]

    @property
    def rules(self) -> list[str]:
        return list(dict.fromkeys(f["rule"] for f in self.record["failures"]))

    @property
    def judged_at(self) -> datetime:
        value = self.record["judged_at"]
        return value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)

    def as_json(self) -> dict[str, Any]:
        r = self.record
        ts = r.get("source_timestamp")
        return {
            "judged_at": self.judged_at.isoformat(),
            "call_id": r.get("call_id"),
            "rules": self.rules,
            "failures": r["failures"],
            "suite_version": r["suite_version"],
            "schema_id": r.get("schema_id"),
            "source": f"{r['source_topic']}:{r['source_partition']}:{r['source_offset']}",
            "source_timestamp": ts.isoformat() if isinstance(ts, datetime) else ts,
            "dlq": f"{self.dlq_partition}:{self.dlq_offset}",
            "original_value_bytes": len(r["original_value"] or b""),
        }


def tail(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    *,
    rule: str | None = None,
    since: datetime | None = None,
    follow: bool = False,
) -> Iterator[DeadLetterView]:
    """Dead letters judged at or after ``since``, failing ``rule`` if given."""
    decoder = WireDecoder(clients.registry(registry))
    consumer = side_consumer(kafka, "dlq-tail")
    try:
        parts = partitions_of(consumer, topics.dlq, kafka.bootstrap)
        # Message timestamps are the raw event times; judged_at is filtered on below.
        starts = offsets_at(consumer, topics.dlq, parts, None)
        for msg in read_range(consumer, topics.dlq, starts, follow=follow):
            got = decoder.decode(msg.value())
            if not isinstance(got, Decoded):
                log.warning(
                    "unreadable dead letter partition=%s offset=%s", msg.partition(), msg.offset()
                )
                continue
            view = DeadLetterView(msg.partition() or 0, msg.offset() or 0, got.record)
            if since is not None and view.judged_at < since:
                continue
            if rule is not None and rule not in view.rules:
                continue
            yield view
    finally:
        consumer.close()


@dataclass
class RedriveReport:
    candidates: int = 0
    already_valid: int = 0
    moved: Counter[str] = field(default_factory=Counter)
    still_failing: Counter[str] = field(default_factory=Counter)
    now_failing: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False
    suite_version: str = ""

    @property
    def moved_total(self) -> int:
        return sum(self.moved.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "suite_version": self.suite_version,
            "candidates": self.candidates,
            "already_valid": self.already_valid,
            "moved": self.moved_total,
            "moved_by_original_rule": dict(sorted(self.moved.items())),
            "still_failing_by_original_rule": dict(sorted(self.still_failing.items())),
            "failing_now_by_rule": dict(sorted(self.now_failing.items())),
        }


@dataclass(frozen=True)
class Candidate:
    """A dead letter to judge again, and the raw record it holds."""

    raw: RawRecord
    view: DeadLetterView


def redrive(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    settings: ValidatorSettings,
    *,
    rule: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> RedriveReport:
    """Move dead letters that pass the current suite to cdr.valid, exactly once."""
    suite = CdrSuite(suite_config(settings))
    report = RedriveReport(dry_run=dry_run, suite_version=suite.version)
    letters = [
        v
        for v in tail(kafka, registry, topics, rule=rule, since=since)
        if v.record["source_topic"] == topics.raw
    ]
    if not letters:
        return report
    dedup = DedupState(int(settings.dedup_horizon_s * 1000))
    oldest = min((_ms(v.record.get("source_timestamp")) for v in letters), default=0)
    done = _valid_sources(kafka, topics, dedup, max(0, oldest - dedup.horizon_ms))
    todo = _candidates(letters, done, report)
    report.candidates = len(todo)
    client = clients.registry(registry)
    judge = _Rejudge(WireDecoder(client), suite, dedup, report, topics.dlq)
    outputs = Outputs.register(client, topics) if not dry_run else None
    producer = None
    if not dry_run:
        producer = transactional_producer(kafka, settings, f"{settings.transactional_id}-redrive")
        producer.begin_transaction()
    try:
        for i in range(0, len(todo), _CHUNK):
            messages = judge.chunk(todo[i : i + _CHUNK], outputs)
            if producer is not None and outputs is not None:
                produce_all(producer, outputs.valid_topic, messages)
        if producer is not None:
            producer.commit_transaction(120)
    except KafkaException as exc:
        if producer is not None:
            producer.abort_transaction(60)
        msg = f"redrive aborted, nothing written: {exc}"
        raise ValidatorError(msg) from exc
    finally:
        if producer is not None:
            producer.flush(10)
    log.info("redrive %s", " ".join(f"{k}={v}" for k, v in report.as_dict().items()))
    return report


def _candidates(
    letters: list[DeadLetterView], done: set[tuple[int, int]], report: RedriveReport
) -> list[Candidate]:
    """The raw records of ``letters`` not already on cdr.valid (``done``, which learns
    them: two dead letters of one raw record are judged once)."""
    todo: list[Candidate] = []
    for v in letters:
        r = v.record
        coords = (r["source_partition"], r["source_offset"])
        if coords in done:
            report.already_valid += 1
            continue
        done.add(coords)
        raw = RawRecord(
            r["source_topic"],
            r["source_partition"],
            r["source_offset"],
            _ms(r.get("source_timestamp")) or None,
            r.get("original_key"),
            r.get("original_value"),
        )
        todo.append(Candidate(raw, v))
    return todo


@dataclass(frozen=True)
class _Rejudge:
    """Judges candidates with the current suite, counting what moves in ``report``."""

    decoder: WireDecoder
    suite: CdrSuite
    dedup: DedupState
    report: RedriveReport
    dlq_topic: str

    def chunk(self, chunk: list[Candidate], outputs: Outputs | None) -> list[Message]:
        """The cdr.valid messages of the candidates that pass now (none without
        ``outputs``: a dry run)."""
        report = self.report
        by_coords = {(c.raw.partition, c.raw.offset): c.view for c in chunk}
        routed = validate(
            [c.raw for c in chunk],
            decode=self.decoder.decode,
            suite=self.suite,
            seen=self.dedup.seen,
            judged_at_ms=time.time_ns() // 1_000_000,
        )
        self.dedup.add_many(routed.accepted)
        for d in routed.dead:
            view = by_coords[(d.source.partition, d.source.offset)]
            report.still_failing.update(view.rules)
            report.now_failing.update(d.rules)
        messages = []
        for ok in routed.valid:
            view = by_coords[(ok.source.partition, ok.source.offset)]
            report.moved.update(view.rules)
            if outputs is not None:
                extra = [
                    (hdr.REDRIVEN, hdr.coords(self.dlq_topic, view.dlq_partition, view.dlq_offset))
                ]
                messages.append(outputs.valid(ok, extra))
        return messages


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


def _valid_sources(
    kafka: KafkaSettings, topics: TopicSettings, dedup: DedupState, from_ms: int
) -> set[tuple[int, int]]:
    """Raw coordinates already on cdr.valid (from ``from_ms``), feeding ``dedup`` too."""
    consumer = side_consumer(kafka, "dlq-redrive")
    out: set[tuple[int, int]] = set()
    try:
        parts = partitions_of(consumer, topics.valid, kafka.bootstrap)
        starts = offsets_at(consumer, topics.valid, parts, from_ms)
        for msg in read_range(consumer, topics.valid, starts):
            src = hdr.source_of(msg.headers())
            if src is None or src[0] != topics.raw:
                continue
            out.add((src[1], src[2]))
            key = msg.key()
            if key:
                dedup.add(SHARD, key.decode("utf-8", "replace"), msg.timestamp()[1])
    finally:
        consumer.close()
    return out
