"""What the validator counted: the run's totals, and the metrics of each batch."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException

from monitoring import metrics
from streams.validate.routing import RawRecord, Routed

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    batches: int = 0
    records_in: int = 0
    valid: int = 0
    dead: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    aborts: int = 0
    forwarded: int = 0
    gx_seconds: float = 0.0
    decode_seconds: float = 0.0
    txn_seconds: float = 0.0
    seconds: float = 0.0
    startup_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "records_in": self.records_in,
            "valid": self.valid,
            "dead_lettered": self.dead,
            "by_rule": dict(sorted(self.by_rule.items())),
            "aborts": self.aborts,
            "forwarded": self.forwarded,
            "gx_seconds": round(self.gx_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "transaction_seconds": round(self.txn_seconds, 3),
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
        }

    def account(self, batch: list[RawRecord], routed: Routed, txn: float, total: float) -> None:
        """Count a committed batch, in these totals and in the metrics."""
        judged = len(routed.valid) + len(routed.dead)
        self.batches += 1
        self.records_in += judged
        self.forwarded += len(routed.forward)
        self.valid += len(routed.valid)
        self.dead += len(routed.dead)
        self.gx_seconds += routed.gx_seconds
        self.decode_seconds += routed.decode_seconds
        self.txn_seconds += txn
        by_rule: Counter[str] = Counter()
        for d in routed.dead:
            by_rule.update(d.rules)
        self.by_rule.update(by_rule)
        _observe(batch, routed, by_rule, txn=txn, total=total)


def _observe(
    batch: list[RawRecord], routed: Routed, by_rule: Counter[str], *, txn: float, total: float
) -> None:
    metrics.VALIDATOR_RECORDS_IN.inc(len(routed.valid) + len(routed.dead))
    metrics.VALIDATOR_VALID.inc(len(routed.valid))
    for rule, n in by_rule.items():
        metrics.VALIDATOR_DEAD_LETTERED.labels(rule=rule).inc(n)
    metrics.VALIDATOR_BATCH_RECORDS.observe(len(batch))
    metrics.VALIDATOR_BATCH_SECONDS.observe(total)
    metrics.VALIDATOR_GX_SECONDS.observe(routed.gx_seconds)
    metrics.VALIDATOR_TRANSACTION_SECONDS.observe(txn)
    log.debug(
        "batch records=%d forwarded=%d valid=%d dead=%d gx=%.3f txn=%.3f",
        len(batch),
        len(routed.forward),
        len(routed.valid),
        len(routed.dead),
        routed.gx_seconds,
        txn,
    )


def record_lag(consumer: Consumer, internal: str) -> None:
    """The consumer lag of each assigned raw partition, as a gauge."""
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic != internal]
        for tp, pos in zip(assigned, consumer.position(assigned), strict=True):
            _, high = consumer.get_watermark_offsets(tp, timeout=2, cached=True)
            lag = high - pos.offset if pos.offset >= 0 else 0
            metrics.VALIDATOR_CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, lag))
    except KafkaException as exc:
        log.debug("lag not measured error=%s", exc)
