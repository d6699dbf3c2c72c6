"""Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, Avro binary.

The encoder is the producers' fast path (one header, one fastavro call per
record). The decoder resolves writer schemas by id from the registry, caches
them, and turns every way bytes can be wrong into an ``Undecodable`` value.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader

from schemas.codec import compile_encoder

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

_ID_FIELDS = frozenset({"call_id"})

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


@dataclass(frozen=True, slots=True)
class Decoded:
    record: dict[str, Any]
    schema_id: int
    writer_fields: frozenset[str]


class WireDecoder:
    """Decodes Confluent-framed Avro with the writer schema named by each record's id."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self._registry = registry
        self._schemas: dict[int, tuple[Any, frozenset[str]] | None] = {}

    def writer_schema(self, schema_id: int) -> tuple[Any, frozenset[str]] | None:
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
            import json

            schema = json.loads(text or "null")
            fields = frozenset(f["name"] for f in schema.get("fields", []))
            self._schemas[schema_id] = (parse_schema(schema), fields)
        return self._schemas[schema_id]

    def decode(self, value: bytes | None) -> Decoded | Undecodable:
        if not value:
            return Undecodable("empty", "no value bytes")
        if len(value) < _HEADER.size:
            return Undecodable("malformed_avro", f"{len(value)} bytes, shorter than the header")
        magic, schema_id = _HEADER.unpack_from(value)
        if magic != MAGIC_BYTE:
            return Undecodable("wrong_magic_byte", f"magic byte {magic}, expected {MAGIC_BYTE}")
        writer = self.writer_schema(schema_id)
        if writer is None:
            return Undecodable(
                "unknown_schema_id", f"schema id {schema_id} is not registered", schema_id
            )
        schema, fields = writer
        buf = io.BytesIO(value)
        buf.seek(_HEADER.size)
        try:
            record = schemaless_reader(buf, schema, None)
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
        return Decoded(record, schema_id, fields)
