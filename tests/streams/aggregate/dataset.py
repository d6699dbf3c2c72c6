"""A fixed CDR dataset around 5-minute window boundaries, fed to the job in steps.

Each step is made visible at once (one Kafka transaction, read_committed) and
fully processed before the next, so the watermark each step meets is known:
step k's rows are judged late against W = max(event time of steps < k) - 10 min,
and a row is late when its window ends at or before W.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from kappa import clients
from kappa.settings import AggregateSettings, KafkaSettings, StackSettings, TopicSettings
from schemas.contract import SchemaName, parsed_schema, register, schema_text, subject
from schemas.wire import WireEncoder
from streams.aggregate import job
from streams.aggregate.checkpoint import Checkpoint
from streams.aggregate.handle import AggregateQuery
from streams.aggregate.query import start
from tests.harness.stack import StackHandle

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
A, B, C = "+94770000001", "+94770000002", "+94770000003"
TOWER_1, TOWER_2 = "TWR-0001", "TWR-0002"
WATERMARK_MS = 10 * 60_000


def at(minutes: int, seconds: int = 0, millis: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds, milliseconds=millis)


@dataclass(frozen=True)
class Row:
    record: dict[str, Any]
    late: bool = False


def cdr(
    cid: str,
    caller: str,
    call_type: str,
    duration: int,
    t: datetime,
    tower: str,
    signal: int,
    kb: int = 0,
) -> dict[str, Any]:
    callee = C if caller != C else A
    return {
        "call_id": cid,
        "caller_num": caller,
        "callee_num": callee,
        "call_type": call_type,
        "duration_sec": duration,
        "event_time": t,
        "tower_id": tower,
        "signal_strength": signal,
        "data_volume_kb": kb,
    }


STEPS: list[list[Row]] = [
    [  # W = 0: nothing late. Max 10:14:59.999 -> W 10:04:59.999
        Row(cdr("s1a", A, "VOICE", 61, at(0), TOWER_1, 2)),
        Row(cdr("s1b", A, "VOICE", 0, at(4, 59, 999), TOWER_1, 5)),
        Row(cdr("s1c", A, "SMS", 0, at(5), TOWER_2, 1)),
        Row(cdr("s1d", B, "DATA", 300, at(2, 30), TOWER_1, 3, kb=1500)),
        Row(cdr("s1e", B, "VOICE", 7200, at(14, 59, 999), TOWER_2, 4)),
        Row(cdr("s1f", C, "VOICE", 59, at(3), TOWER_1, 1)),  # out of order
        Row(cdr("s1g", C, "VOICE", 60, at(9, 59, 999), TOWER_2, 2)),
    ],
    [  # W = 10:04:59.999. Max 10:20 -> W 10:10
        Row(cdr("s2a", A, "VOICE", 120, at(20), TOWER_1, 3)),
        Row(cdr("s2b", B, "SMS", 0, at(6), TOWER_1, 2)),
        # Before the watermark, but its window [10:00, 10:05) is still open: counted.
        Row(cdr("s2c", C, "DATA", 10, at(4), TOWER_2, 4, kb=1024)),
    ],
    [  # W = 10:10. Max 10:30 -> W 10:20
        Row(cdr("s3a", A, "VOICE", 30, at(1), TOWER_1, 3), late=True),
        Row(cdr("s3b", B, "VOICE", 45, at(9, 59, 999), TOWER_2, 1), late=True),  # end == W
        Row(cdr("s3c", C, "SMS", 0, at(10), TOWER_1, 1)),
        Row(cdr("s3d", A, "DATA", 100, at(30), TOWER_2, 5, kb=2048)),
    ],
    [  # W = 10:20. Max 11:00 -> W 10:50
        Row(cdr("s4a", B, "VOICE", 1, at(19, 59, 999), TOWER_1, 4), late=True),
        Row(cdr("s4b", C, "VOICE", 600, at(21), TOWER_1, 2)),
        Row(cdr("s4c", A, "SMS", 0, at(60), TOWER_2, 3)),
    ],
]


def watermark_after(steps: list[list[Row]]) -> int:
    latest = max(int(r.record["event_time"].timestamp() * 1000) for s in steps for r in s)
    return latest - WATERMARK_MS


def produce_step(
    kafka: KafkaSettings, topic: str, rows: list[Row], encoders: list[WireEncoder]
) -> None:
    """One transaction: the step becomes visible to read_committed readers at once.

    Row i is encoded with ``encoders[i % len(encoders)]``.
    """
    producer = Producer(
        {
            **kafka.client_config(),
            "transactional.id": f"test-{uuid.uuid4()}",
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i, row in enumerate(rows):
        rec = row.record
        enc = encoders[i % len(encoders)]
        producer.produce(
            topic,
            key=rec["call_id"].encode(),
            value=enc.encode(rec),
            timestamp=int(rec["event_time"].timestamp() * 1000),
        )
    producer.commit_transaction(30)


def committed_watermark(handle: AggregateQuery) -> int | None:
    """The watermark of the newest batch, once it is committed (None before that)."""
    ckpt: Checkpoint = handle.capture.checkpoint
    newest = ckpt.newest("offsets")
    if newest < 0 or ckpt.committed() != newest:
        return None
    entry = ckpt.entry(newest)
    return None if entry is None else entry.watermark_ms


def settle(handle: AggregateQuery, watermark_ms: int, timeout_s: float = 300.0) -> None:
    """Process everything, then wait until a committed batch ran with ``watermark_ms``
    (Spark's no-data batch that closes the windows it passed) and was captured."""
    handle.process_all_available()
    deadline = time.monotonic() + timeout_s
    got = None
    while time.monotonic() < deadline:
        got = committed_watermark(handle)
        if got is not None and got >= watermark_ms and not handle.query.status["isTriggerActive"]:
            handle.process_all_available()
            return
        if handle.query.exception() is not None:
            handle.process_all_available()  # raises, or restarts a recoverable failure
        time.sleep(0.1)
    raise AssertionError(f"watermark {watermark_ms} not reached; committed watermark {got}")


def single_partition_topics(topic: Callable[..., str]) -> TopicSettings:
    """Fresh input and output topics of one partition each (``topic``: a topic factory)."""
    return TopicSettings(
        valid=topic(partitions=1),
        billing=topic(partitions=1),
        network=topic(partitions=1),
        late=topic(partitions=1),
    )


def encoder(stack: StackHandle, topics: TopicSettings) -> WireEncoder:
    """The contract's ``Cdr`` registered under ``topics.valid``'s subject."""
    reg = clients.registry(stack.registry)
    sid = register(reg, subject(topics.valid), schema_text(SchemaName.CDR))
    return WireEncoder(parsed_schema(SchemaName.CDR), sid)


def _connections(stack: StackHandle, topics: TopicSettings) -> dict[str, Any]:
    return {
        "kafka": stack.kafka,
        "registry": stack.registry,
        "topics": topics,
        "stack": StackSettings(),
    }


def start_query(
    spark: Any,
    stack: StackHandle,
    topics: TopicSettings,
    settings: AggregateSettings,
    **options: Any,
) -> AggregateQuery:
    """The aggregation query, running, against the test stack."""
    return start(spark, settings, **_connections(stack, topics), **options)


def drain(
    spark: Any,
    stack: StackHandle,
    settings: AggregateSettings,
    topics: TopicSettings,
    **options: Any,
) -> list[Any]:
    """Run the aggregation over everything in ``topics.valid`` until idle; its batch history."""
    return job.run(spark, settings, **_connections(stack, topics), until_idle=True, **options)
