"""Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, Avro binary.

The encoder is the producers' fast path (one header, one compiled encoder call
per record). The decoder resolves writer schemas by id from the registry, caches
them, reads flat records with ``schemas.codec``'s compiled reader (fastavro for
the rest, and for any bytes the compiled reader declines, so errors are
fastavro's), and turns every way bytes can be wrong into an ``Undecodable`` value.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader

from schemas.codec import compile_encoder, compile_reader

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

_ID_FIELDS = frozenset({"call_id"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

UndecodableKind = Literal["empty", "wrong_magic_byte", "unknown_schema_id", "malformed_avro"]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Bytes that are not a record: why, and the schema id when one could be read."""

    kind: UndecodableKind
    detail: str
    schema_id: int | None = None


class WireEncoder:
    """Encodes dicts with one writer schema into Confluent-framed bytes.

    Flat schemas go through ``schemas.codec``'s compiled encoder; others through
    fastavro. Either way the bytes are what fastavro would write.
    """

    __slots__ = ("_body", "_header", "schema_id")

    def __init__(
        self, schema: dict[str, Any], schema_id: int, unique_fields: frozenset[str] = frozenset()
    ) -> None:
        parsed = parse_schema(schema)
        if not isinstance(parsed, dict):
            msg = "WireEncoder takes a record schema as a dict (load_schema)"
            raise TypeError(msg)
        self._body = compile_encoder(parsed, unique_fields or _ID_FIELDS)
        self.schema_id = schema_id
        self._header = _HEADER.pack(MAGIC_BYTE, schema_id)

    @property
    def header(self) -> bytes:
        """The 5-byte Confluent header of this encoder's schema id."""
        return self._header

    def encode(self, record: dict[str, Any]) -> bytes:
        return self._header + self._body(record)


class Decoded(NamedTuple):
    """A decoded record (a named tuple: one is built per record on the hot path)."""

    record: dict[str, Any]
    schema_id: int
    writer_fields: frozenset[str]
    signature: str = ""
    """The writer schema's fields and types (canonical JSON): equal signatures, equal shapes."""
    spans: tuple[int, ...] | None = None
    """Where each field's value bytes start and end in the framed value, when the
    compiled reader read it and spans were asked for (see ``compile_reader``)."""


def signature(schema: Any) -> str:
    """A record schema's fields and their types, as canonical JSON."""
    fields = schema.get("fields", []) if isinstance(schema, dict) else []
    return json.dumps([[f["name"], f["type"]] for f in fields], sort_keys=True)


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A registered writer schema as the decoder uses it."""

    parsed: Any
    fields: frozenset[str]
    read: Callable[[bytes], Any] | None
    """The compiled reader of the framed bytes (None: fastavro only)."""
    millis_fields: tuple[str, ...]
    """Top-level timestamp-millis fields (turned into epoch ms in ``millis`` mode)."""
    signature: str


class WireDecoder:
    """Decodes Confluent-framed Avro with the writer schema named by each record's id.

    ``millis=True``: timestamp-millis fields come as epoch milliseconds (int) instead of
    datetimes, whichever reader read them (the validator's frame wants numbers).
    ``spans=True``: records the compiled reader read carry their value spans.
    """

    def __init__(
        self, registry: SchemaRegistryClient, *, millis: bool = False, spans: bool = False
    ) -> None:
        self._registry = registry
        self._millis = millis
        self._spans = spans
        self._schemas: dict[int, WriterSchema | None] = {}
        # Framed headers of registered schemas the compiled reader reads: the hot path.
        self._compiled: dict[bytes, WriterSchema] = {}

    def writer(self, schema_id: int) -> WriterSchema | None:
        if schema_id not in self._schemas:
            try:
                text = self._registry.get_schema(schema_id).schema_str
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    # Unknown ids are cached as such: a poison pill must not
                    # cost a registry round trip per record.
                    self._schemas[schema_id] = None
                    return None
                raise
            schema = json.loads(text or "null")
            fields = schema.get("fields", []) if isinstance(schema, dict) else []
            millis = tuple(
                f["name"]
                for f in fields
                if any(
                    isinstance(t, dict) and t.get("logicalType") == "timestamp-millis"
                    for t in (f["type"] if isinstance(f["type"], list) else [f["type"]])
                )
            )
            reader = (
                compile_reader(
                    schema, offset=_HEADER.size, logical=not self._millis, spans=self._spans
                )
                if isinstance(schema, dict)
                else None
            )
            writer = WriterSchema(
                parse_schema(schema),
                frozenset(f["name"] for f in fields),
                reader,
                millis,
                signature(schema),
            )
            self._schemas[schema_id] = writer
            if reader is not None:
                self._compiled[_HEADER.pack(MAGIC_BYTE, schema_id)] = writer
        return self._schemas[schema_id]

    def writer_schema(self, schema_id: int) -> tuple[Any, frozenset[str]] | None:
        writer = self.writer(schema_id)
        return None if writer is None else (writer.parsed, writer.fields)

    def decode(self, value: bytes | None) -> Decoded | Undecodable:
        if value:
            hot = self._compiled.get(value[:5])
            if hot is not None and hot.read is not None:
                try:
                    if self._spans:
                        got: tuple[dict[str, Any], tuple[int, ...]] = hot.read(value)
                        return Decoded(
                            got[0], _HEADER.unpack_from(value)[1], hot.fields, hot.signature, got[1]
                        )
                    return Decoded(
                        hot.read(value), _HEADER.unpack_from(value)[1], hot.fields, hot.signature
                    )
                except (ValueError, IndexError):
                    pass  # the general path below asks fastavro
        return self._decode(value)

    def _decode(self, value: bytes | None) -> Decoded | Undecodable:
        if not value:
            return Undecodable("empty", "no value bytes")
        if len(value) < _HEADER.size:
            return Undecodable("malformed_avro", f"{len(value)} bytes, shorter than the header")
        magic, schema_id = _HEADER.unpack_from(value)
        if magic != MAGIC_BYTE:
            return Undecodable("wrong_magic_byte", f"magic byte {magic}, expected {MAGIC_BYTE}")
        writer = self.writer(schema_id)
        if writer is None:
            return Undecodable(
                "unknown_schema_id", f"schema id {schema_id} is not registered", schema_id
            )
        if writer.read is not None:
            try:
                if self._spans:
                    got: tuple[dict[str, Any], tuple[int, ...]] = writer.read(value)
                    return Decoded(got[0], schema_id, writer.fields, writer.signature, got[1])
                return Decoded(writer.read(value), schema_id, writer.fields, writer.signature)
            except (ValueError, IndexError):
                pass  # not vouched for: fastavro decides, with its own words
        buf = io.BytesIO(value)
        buf.seek(_HEADER.size)
        try:
            record = schemaless_reader(buf, writer.parsed, None)
        except Exception as exc:
            return Undecodable("malformed_avro", f"{type(exc).__name__}: {exc}", schema_id)
        if buf.tell() != len(value):
            return Undecodable(
                "malformed_avro",
                f"{len(value) - buf.tell()} trailing bytes after the record",
                schema_id,
            )
        if not isinstance(record, dict):
            return Undecodable("malformed_avro", "not a record", schema_id)
        if self._millis:
            for name in writer.millis_fields:
                when = record.get(name)
                if isinstance(when, datetime):
                    record[name] = (when - _EPOCH) // _MS
        return Decoded(record, schema_id, writer.fields, writer.signature)
