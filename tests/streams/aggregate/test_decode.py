"""Decoding Confluent-framed Avro with from_avro, one writer schema per id."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.types import BinaryType, StructField, StructType

from schemas.contract import SchemaName, parsed_schema, schema_text
from schemas.wire import WireEncoder
from streams.aggregate.decode import Decoders, decode, schema_id_col, unknown_id_in
from tests.streams.aggregate.dataset import STEPS

pytestmark = pytest.mark.spark

V2 = json.loads(schema_text(SchemaName.CDR))
V2["fields"].append({"name": "roaming", "type": "boolean", "default": False})


def _values(spark: SparkSession, values: list[bytes]) -> object:
    schema = StructType([StructField("value", BinaryType())])
    return spark.createDataFrame([(v,) for v in values], schema)


def test_every_known_id_decodes_to_the_reader_schema_and_garbage_to_null(
    spark: SparkSession,
) -> None:
    v1 = WireEncoder(parsed_schema(SchemaName.CDR), 11)
    v2 = WireEncoder(V2, 12)
    rec = STEPS[0][0].record
    values = [
        v1.encode(rec),
        v2.encode({**rec, "call_id": "v2", "roaming": True}),
        b"\x01\x00\x00\x00\x0bjunk",
        b"\x00\x00\x00\x00\x0b\xff\xff",
    ]
    decoders = Decoders(
        "t-value",
        {11: schema_text(SchemaName.CDR), 12: json.dumps(V2)},
        schema_text(SchemaName.CDR),
    )
    rows = decode(_values(spark, values), decoders).collect()  # type: ignore[arg-type]
    assert [r.schema_id for r in rows] == [11, 12, 11, 11]
    assert rows[0].decoded.call_id == rec["call_id"]
    assert rows[0].decoded.event_time.replace(tzinfo=None) is not None
    assert rows[1].decoded.call_id == "v2"
    assert "roaming" not in rows[1].decoded.asDict()  # resolved to the reader's fields
    assert rows[2].decoded is None  # wrong magic byte
    assert rows[3].decoded is None  # not Avro for its writer schema


def test_an_unknown_id_fails_the_batch_with_a_recognisable_message(spark: SparkSession) -> None:
    enc = WireEncoder(parsed_schema(SchemaName.CDR), 99)
    decoders = Decoders("t-value", {11: schema_text(SchemaName.CDR)}, schema_text(SchemaName.CDR))
    df = decode(_values(spark, [enc.encode(STEPS[0][0].record)]), decoders)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="KAPPA_UNKNOWN_SCHEMA_ID") as info:
        df.collect()
    assert unknown_id_in(str(info.value)) == 99


def test_known_ids_by_prefix_equal_the_parsed_ids(spark: SparkSession) -> None:
    """The 5-byte prefix shortcut gives the id the hex parsing gives, for any bytes."""
    values = [
        b"\x00\x00\x00\x00\x0bxyz",
        b"\x00\x00\x00\x01\x02",
        b"\x01\x00\x00\x00\x0b",  # wrong magic byte: still its id, like the parsed one
        b"\x00\xff\xff\xff\xff",
        b"\x00\x00\x00",  # too short: no id
        b"",
    ]
    df = _values(spark, values)
    rows = df.select(  # type: ignore[attr-defined]
        schema_id_col(F.col("value"), [11, 258]).alias("by_prefix"),
        schema_id_col(F.col("value")).alias("parsed"),
    ).collect()
    assert [r.by_prefix for r in rows] == [r.parsed for r in rows]
    assert [r.parsed for r in rows] == [11, 258, 11, 4294967295, None, None]
