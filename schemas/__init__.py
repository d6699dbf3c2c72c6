"""The Avro contract of telecom-kappa and the code that loads, registers and (de)serializes it."""

from schemas.contract import SchemaName, load_schema, parsed_schema, schema_text
from schemas.wire import MAGIC_BYTE, Undecodable, WireDecoder, WireEncoder

__all__ = [
    "MAGIC_BYTE",
    "SchemaName",
    "Undecodable",
    "WireDecoder",
    "WireEncoder",
    "load_schema",
    "parsed_schema",
    "schema_text",
]
