"""The repartition of cdr.raw by call_id, through an internal topic (Kafka Streams' way).

A producer of ``cdr.raw`` may key its records by anything, so two copies of a
call_id can sit on different raw partitions, read by different validator
instances of one consumer group. The validator therefore judges in two steps,
both inside its one Kafka transaction per micro-batch:

1. **forward**: a record of ``cdr.raw`` is decoded for its call_id only, and
   written unchanged (value bytes as they came) to the internal topic
   ``<raw>.by-call-id.<group>``, keyed by the call_id (murmur2, like Kafka's Java
   client; a record without a readable call_id goes to any partition, it is dead
   anyway). Its raw coordinates, timestamp and key ride in headers.
2. **judge**: a record of the internal topic is judged as the raw record it
   carries (the dead letter names the raw coordinates, the ledger matches them),
   with the dedup state of its internal partition.

The internal topic has as many partitions as ``cdr.valid``, and both are keyed by
call_id with the same hash, so internal partition *p* holds exactly the call_ids
of ``cdr.valid`` partition *p*: every copy of a call_id is judged by the one
instance that owns *p*, and that instance's dedup state for *p* is rebuilt from
``cdr.valid`` partition *p* alone. The consumer reads both topics in one group;
the forwarded records, the valid and dead ones and the offsets of both topics
commit together, so a crash loses or doubles nothing. The internal topic uses
``LogAppendTime`` (its retention counts from forwarding, whatever the event
time) and a retention of 7 days (``RETENTION_MS``): only records not yet judged
matter.

Cost: every record is written and read once more, and decoded twice (once for
its call_id); ``bench/validate`` measures it.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kappa.settings import KafkaSettings
from schemas.wire import Decoded
from streams.validate import headers as hdr
from streams.validate.exceptions import PartitionCountMismatchError
from streams.validate.routing import Decode, RawRecord

log = logging.getLogger(__name__)

RETENTION_MS = 7 * 24 * 3600 * 1000
SOURCE_TS = "kappa.src.ts"
SOURCE_KEY = "kappa.src.key"

Message = tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]


def topic_name(raw_topic: str, group_id: str) -> str:
    """The internal topic of a consumer group reading ``raw_topic``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{raw_topic}.by-call-id.{group_id}")[:249]


def ensure_topic(kafka: KafkaSettings, name: str, partitions: int) -> None:
    """Create the internal topic with ``partitions`` partitions, or check that it has them."""
    admin = AdminClient(kafka.client_config())
    topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=-1,
        config={"retention.ms": str(RETENTION_MS), "message.timestamp.type": "LogAppendTime"},
    )
    try:
        admin.create_topics([topic], operation_timeout=30)[name].result(60)
        log.info("created topic=%s partitions=%d", name, partitions)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise
    deadline = time.monotonic() + 30
    have = 0
    while True:  # a new topic's metadata takes a moment to reach every broker
        meta = admin.list_topics(name, timeout=30).topics.get(name)
        have = len(meta.partitions) if meta is not None and meta.error is None else 0
        if have or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if have != partitions:
        raise PartitionCountMismatchError(name, have, partitions)


def forward(decode: Decode, raw: RawRecord) -> Message:
    """The internal topic's message for a raw record: its value as it came, keyed by its
    call_id, its raw coordinates, timestamp and key in headers."""
    key: bytes | None = None
    got = decode(raw.value)
    if isinstance(got, Decoded):
        call_id = got.record.get("call_id")
        if isinstance(call_id, str):
            key = call_id.encode()
    headers = [(hdr.SOURCE, hdr.coords(raw.topic, raw.partition, raw.offset))]
    if raw.timestamp_ms is not None:
        headers.append((SOURCE_TS, str(raw.timestamp_ms).encode()))
    if raw.key is not None:
        headers.append((SOURCE_KEY, raw.key))
    return raw.value, key, 0, headers


def unwrap(consumed: RawRecord, headers: Any) -> RawRecord | None:
    """The raw record an internal message carries, judged in the dedup shard of its
    internal partition; None if it carries no raw coordinates (not the validator's)."""
    src = hdr.source_of(headers)
    if src is None:
        return None
    ts = hdr.get(headers, SOURCE_TS)
    key = hdr.get(headers, SOURCE_KEY)
    return RawRecord(
        src[0],
        src[1],
        src[2],
        int(ts) if isinstance(ts, bytes) and ts.isdigit() else None,
        key.encode() if isinstance(key, str) else key,
        consumed.value,
        consumed.partition,
    )
