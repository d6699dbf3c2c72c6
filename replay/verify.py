"""Verification of a published replay against the log, independently of Spark's reading.

The log's count of valid records in the range comes from reading the planned
offsets with a plain consumer (not Spark) and counting event times in the range.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import TopicPartition

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings
from replay.exceptions import ReplayVerificationError
from replay.manifest import Manifest
from replay.plan import ReplayPlan, iso, to_ms
from schemas import Undecodable, WireDecoder

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 30.0


def count_in_range(
    kafka: KafkaSettings, registry: RegistrySettings, plan: ReplayPlan
) -> dict[str, int]:
    """Valid records of ``plan``'s offsets whose event time is in its range, by reading them."""
    lo, hi = to_ms(plan.start), to_ms(plan.end)
    todo = {s.partition: s for s in plan.spans if s.size > 0}
    counts = {"read": 0, "records": 0, "undecodable": 0}
    if not todo:
        return counts
    decoder = WireDecoder(clients.registry(registry))
    consumer = clients.consumer(kafka, group_id=f"kappa-replay-verify-{uuid.uuid4().hex[:12]}")
    try:
        consumer.assign([TopicPartition(plan.topic, p, s.start) for p, s in todo.items()])
        idle_since = time.monotonic()
        while todo:
            msgs = consumer.consume(num_messages=5000, timeout=0.5)
            for m in msgs:
                if m.error() is not None:
                    continue
                span = todo.get(m.partition())
                off = m.offset()
                if span is None or off is None or off >= span.end:
                    continue
                counts["read"] += 1
                decoded = decoder.decode(m.value())
                if isinstance(decoded, Undecodable):
                    counts["undecodable"] += 1
                    continue
                et = decoded.record["event_time"]
                ms = to_ms(et) if isinstance(et, datetime) else int(et)
                if lo <= ms < hi:
                    counts["records"] += 1
            if msgs:
                idle_since = time.monotonic()
            positions = consumer.position([TopicPartition(plan.topic, p) for p in todo])
            for tp in positions:
                if tp.offset >= todo[tp.partition].end:
                    todo.pop(tp.partition)
            if todo and time.monotonic() - idle_since > IDLE_TIMEOUT_S:
                msg = (
                    f"reading {plan.topic} to verify the replay stalled; partitions "
                    f"{sorted(todo)} did not reach their end offsets"
                )
                raise ReplayVerificationError(msg)
    finally:
        consumer.close()
    return counts


def ledger_count(
    kafka: KafkaSettings, registry: RegistrySettings, plan: ReplayPlan
) -> tuple[int, str]:
    """The log's count of valid records in the range, and where it comes from.

    The validator's ledger (``kappa ledger``) reconciles raw offsets between
    two message timestamps: a contiguous offset range, not an event-time range,
    so out-of-order records would make it disagree with an exact replay. The
    count here is of ``cdr.valid`` records whose event time is in the range.
    """
    return count_in_range(kafka, registry, plan)["records"], "cdr.valid read"


@dataclass(frozen=True)
class VerificationReport:
    """A published replay that agrees with the log."""

    start: str
    end: str
    records: int | None
    expected: int
    source: str
    parquet_rows: int | None
    run_id: str | None
    verified: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "range": {"from": self.start, "to": self.end},
            "records": self.records,
            "expected": self.expected,
            "source": self.source,
            "parquet_rows": self.parquet_rows,
            "run_id": self.run_id,
            "verified": self.verified,
        }


def check(
    manifest: Manifest | None,
    *,
    success: bool,
    plan: ReplayPlan,
    expected: int,
    source: str,
    parquet_rows: int | None,
) -> VerificationReport:
    """Compare; raise ``ReplayVerificationError`` naming every disagreement."""
    where = f"[{iso(plan.start)}, {iso(plan.end)})"
    problems = []
    if manifest is None:
        problems.append("there is no manifest.json")
    if not success:
        problems.append("_SUCCESS is missing")
    got = None
    if manifest is not None:
        got = manifest.counts.records
        r = manifest.range
        if r.from_ms != to_ms(plan.start) or r.to_ms != to_ms(plan.end):
            problems.append(f"the manifest is for [{r.start}, {r.end})")
        if got != expected:
            problems.append(f"the manifest counts {got} records, the log ({source}) {expected}")
        if parquet_rows is not None and parquet_rows != got:
            problems.append(f"cdr/ holds {parquet_rows} rows, the manifest says {got}")
    if problems:
        msg = f"replay of {where} failed verification: " + "; ".join(problems)
        raise ReplayVerificationError(msg)
    return VerificationReport(
        iso(plan.start),
        iso(plan.end),
        got,
        expected,
        source,
        parquet_rows,
        manifest.run_id if manifest else None,
    )
