"""How routed records become Kafka messages on cdr.valid and cdr.dlq.

Valid records are re-encoded as strict ``Cdr`` with the id registered for
``<valid topic>-value``; dead letters as ``DeadLetter`` under ``<dlq>-value``.
Both carry the raw coordinates in a ``kappa.src`` header. The contract of
``cdr.valid``, whatever the producer of ``cdr.raw`` did: key = the ``call_id``
(UTF-8; the producer's partitioner, murmur2 like Kafka's Java client, puts every
copy of a call_id on one partition), message timestamp = ``event_time`` (the
replay plans its offsets from it; the rules keep it within what a broker
accepts). A dead letter keeps the raw key and the raw message timestamp.

A valid record written with CdrRaw itself, whose value spans the decoder kept,
is not re-encoded: CdrRaw and Cdr list the same fields in the same order, and a
non-null value is written alike in both (the union index aside), so its Cdr
bytes are its raw value bytes with the union indexes dropped and ``call_type``'s
string replaced by its enum index. A null ``data_volume_kb`` becomes 0, whose
Avro long is the byte the union index already was (0x00). The compiled reader
only vouches for shortest-form varints and valid UTF-8, so the copy equals what
the encoder writes; the tests hold the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from kappa.settings import TopicSettings
from schemas import SchemaName, WireEncoder, load_schema
from schemas.codec import varint
from schemas.contract import register, schema_text, subject
from streams.validate import headers as hdr
from streams.validate.routing import Dead, Valid

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
KEPT_VALUE_MAX = 900_000
"""Bytes of an original value a dead letter keeps: a raw value near the broker's message
limit would make its dead letter too large to write (and the batch's transaction fail
again and again). A longer one keeps its first bytes, and a failure says so."""
KEPT_KEY_MAX = 16_384
"""Bytes of an original key a dead letter keeps (in its value and as its message key)."""

Message = tuple[bytes, bytes | None, int, list[tuple[str, bytes]]]
"""value, key, timestamp (ms; 0: now), headers"""


def _call_types() -> dict[str, bytes]:
    schema = load_schema(SchemaName.CDR)
    raw = load_schema(SchemaName.CDR_RAW)
    names = [f["name"] for f in schema["fields"]]
    if names != [f["name"] for f in raw["fields"]] or names[3] != "call_type":
        msg = "Cdr and CdrRaw must list the same fields in the same order"
        raise AssertionError(msg)
    symbols = schema["fields"][3]["type"]["symbols"]
    return {s: varint(i) for i, s in enumerate(symbols)}


@dataclass
class Outputs:
    valid_topic: str
    dlq_topic: str
    valid_encoder: WireEncoder
    dlq_encoder: WireEncoder

    def __post_init__(self) -> None:
        self._call_types = _call_types()
        self._valid_header = self.valid_encoder.header

    def valid_value(self, v: Valid) -> bytes:
        """The framed Cdr bytes of a valid record: copied when it has spans."""
        s = v.spans
        if s is None:
            return self.valid_encoder.encode(v.cdr)
        buf = v.source.value
        assert buf is not None
        return b"".join(
            (
                self._valid_header,
                buf[s[0] : s[1]],
                buf[s[2] : s[3]],
                buf[s[4] : s[5]],
                self._call_types[v.cdr["call_type"]],
                buf[s[8] : s[9]],
                buf[s[10] : s[11]],
                buf[s[12] : s[13]],
                buf[s[14] : s[15]],
                buf[s[16] : s[17]] or b"\x00",
            )
        )

    @classmethod
    def register(cls, client: SchemaRegistryClient, topics: TopicSettings) -> Outputs:
        valid_id = register(client, subject(topics.valid), schema_text(SchemaName.CDR))
        dlq_id = register(client, subject(topics.dlq), schema_text(SchemaName.DEAD_LETTER))
        return cls(
            topics.valid,
            topics.dlq,
            WireEncoder(load_schema(SchemaName.CDR), valid_id),
            WireEncoder(load_schema(SchemaName.DEAD_LETTER), dlq_id),
        )

    def valid(self, v: Valid, extra: list[tuple[str, bytes]] | None = None) -> Message:
        src = v.source
        headers = [(hdr.SOURCE, hdr.coords(src.topic, src.partition, src.offset))]
        if extra:
            headers += extra
        cdr = v.cdr
        return self.valid_value(v), cdr["call_id"].encode(), int(cdr["event_time"]), headers

    def dead(self, d: Dead, suite_version: str, judged_at_ms: int) -> Message:
        src = d.source
        failures = [
            {"rule": f.rule, "column": f.column, "observed": f.observed} for f in d.failures
        ]
        value = src.value
        if value is not None and len(value) > KEPT_VALUE_MAX:
            note = f"original value truncated from {len(value)} to {KEPT_VALUE_MAX} bytes"
            failures.append({"rule": failures[0]["rule"], "column": None, "observed": note})
            value = value[:KEPT_VALUE_MAX]
        key = src.key
        if key is not None and len(key) > KEPT_KEY_MAX:
            key = key[:KEPT_KEY_MAX]
        record: dict[str, Any] = {
            "original_key": key,
            "original_value": value,
            "call_id": d.call_id if d.call_id is None else d.call_id[:1000],
            "failures": failures,
            "suite_version": suite_version,
            # Avro int: a framed id outside int32 (random bytes after a zero byte) is kept
            # only in the failure text.
            "schema_id": d.schema_id
            if d.schema_id is not None and _INT32_MIN <= d.schema_id <= _INT32_MAX
            else None,
            "source_topic": src.topic,
            "source_partition": src.partition,
            "source_offset": src.offset,
            "source_timestamp": src.timestamp_ms,
            "judged_at": judged_at_ms,
        }
        headers = [
            (hdr.SOURCE, hdr.coords(src.topic, src.partition, src.offset)),
            (hdr.SUITE, suite_version.encode()),
        ]
        return self.dlq_encoder.encode(record), key, src.timestamp_ms or 0, headers
