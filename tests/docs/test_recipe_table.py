"""Recipe (b) of docs/ARCHITECTURE.md, a new aggregate table, followed in process.

A ``Table`` declared as ``streams/aggregate/tables.py`` declares billing and tower health
(events, seconds and data volume per call type and window) is appended to ``TABLES`` for
the length of a test (``monkeypatch``) and computed by ``tables.aggregate`` over a small
batch DataFrame together with the existing tables, as the stream and the replay compute
them. Its rows must equal a plain-Python computation, match its Avro record (encoded as
the stream's Kafka sink encodes them), and leave the existing tables' rows unchanged.

Step 1 (a ``SchemaName`` for the record) cannot be taken in process: an enum gains no
member at run time. The record is written out below, and the table's ``schema`` is a
stand-in with the name that member would have.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from fastavro import parse_schema, schemaless_reader
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from schemas.contract import SchemaName
from streams.aggregate import tables
from streams.aggregate.sinks import avro_value
from streams.aggregate.tables import Gauge, Measure, Params, Table
from streams.aggregate.transforms import CDR_SCHEMA, RateCard

PARAMS = Params(RateCard(voice_per_minute=2.0, sms_each=1.0, data_per_mb=0.5))
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
SUMS = ("events", "duration_sec", "data_volume_kb")

# Step 1: the table's Avro record (schemas/avro/call_type_window.avsc).
CALL_TYPE_WINDOW_AVSC: dict[str, Any] = {
    "type": "record",
    "name": "CallTypeWindow",
    "namespace": "lk.telecom.kappa",
    "doc": "Events, seconds and data volume per call type per 5-minute window.",
    "fields": [
        {"name": "window_start", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "window_end", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "call_type", "type": "string"},
        {"name": "events", "type": "long"},
        {"name": "duration_sec", "type": "long"},
        {"name": "data_volume_kb", "type": "long"},
    ],
}

# Step 2: the Table.
CALL_TYPES = Table(
    name="call_types",
    key="call_type",
    measures=(
        Measure("events", sf.sum, lambda p: sf.lit(1)),
        Measure("duration_sec", sf.sum, lambda p: sf.col("duration_sec")),
        Measure("data_volume_kb", sf.sum, lambda p: sf.col("data_volume_kb")),
    ),
    output=lambda p: {c: sf.col(c) for c in SUMS},
    columns=StructType(
        [
            StructField("window_start", TimestampType()),
            StructField("window_end", TimestampType()),
            StructField("call_type", StringType()),
            *[StructField(c, LongType()) for c in SUMS],
        ]
    ),
    schema=cast(SchemaName, "call_type_window"),  # stand-in, see the module docstring
    default_topic="cdr.call_types.5m",
    topic_setting=None,
    folder="call_types_realtime",
    replay_folder="call_types_report",
    gauges=(Gauge("events", lambda p: sf.sum("events")),),
)


def _records() -> list[dict[str, Any]]:
    out = []
    kinds = ("VOICE", "VOICE", "SMS", "DATA")
    for i in range(40):
        kind = kinds[i % 4]
        out.append(
            {
                "call_id": f"c{i}",
                "caller_num": f"+9477000000{i % 3}",
                "callee_num": "+94779999999",
                "call_type": kind,
                "duration_sec": 0 if kind == "SMS" else 17 * i,
                # on, just before and after the window bounds of three windows
                "event_time": T0 + timedelta(minutes=5 * (i % 3), milliseconds=(i % 5 - 2) * 7),
                "tower_id": f"TWR-000{i % 2}",
                "signal_strength": 1 + i % 5,
                "data_volume_kb": 100 * i if kind == "DATA" else 0,
            }
        )
    return out


def _expected(records: list[dict[str, Any]]) -> dict[tuple[datetime, str], tuple[int, ...]]:
    """The new table in plain Python: half-open 5-minute windows aligned on the epoch."""
    out: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        t = r["event_time"]
        start = t - timedelta(minutes=t.minute % 5, seconds=t.second, microseconds=t.microsecond)
        row = out[(start, r["call_type"])]
        row[0] += 1
        row[1] += r["duration_sec"]
        row[2] += r["data_volume_kb"]
    return {k: tuple(v) for k, v in out.items()}


def _frame(spark: SparkSession, records: list[dict[str, Any]]) -> DataFrame:
    cols = [f.name for f in CDR_SCHEMA.fields]
    return spark.createDataFrame([tuple(r[c] for c in cols) for r in records], CDR_SCHEMA)


def _rows(df: DataFrame) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.collect())


def test_the_table_matches_its_avro_record() -> None:
    """The check ``tests/streams/aggregate/test_transforms.py`` makes of every table."""
    kinds = {"long": "bigint", "double": "double", "string": "string"}
    fields = parse_schema(CALL_TYPE_WINDOW_AVSC)["fields"]
    assert [f["name"] for f in fields] == list(CALL_TYPES.column_names)
    for f, col in zip(fields, CALL_TYPES.columns.fields, strict=True):
        avro = f["type"]["logicalType"] if isinstance(f["type"], dict) else f["type"]
        want = "timestamp" if avro == "timestamp-millis" else kinds[avro]
        assert col.dataType.simpleString() == want, f["name"]


@pytest.mark.spark
def test_a_new_table_is_computed_with_the_existing_ones(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "TABLES", (*tables.TABLES, CALL_TYPES))
    assert tables.by_name("call_types") is CALL_TYPES
    records = _records()
    df = _frame(spark, records)
    both = tables.aggregate(df, tables.TABLES, PARAMS).cache()
    try:
        mine = CALL_TYPES.rows(both, PARAMS)
        assert [(f.name, f.dataType) for f in mine.schema.fields] == [
            (f.name, f.dataType) for f in CALL_TYPES.columns.fields
        ]
        got = {
            (r.window_start.astimezone(UTC), r.call_type): (
                r.events,
                r.duration_sec,
                r.data_volume_kb,
            )
            for r in mine.collect()
        }
        assert got == _expected(records)

        # The existing tables give what they give without the new one.
        for table in tables.TABLES[:-1]:
            assert _rows(table.rows(both, PARAMS)) == _rows(table.compute(df, PARAMS))

        # Its gauges, one small row per closed window.
        stats = tables.window_stats(both, tables.TABLES, PARAMS)["call_types"]
        per_window: dict[int, int] = defaultdict(int)
        for (start, _), (events, _, _) in got.items():
            per_window[int((start + timedelta(minutes=5)).timestamp() * 1000)] += events
        assert {s["window_end_ms"]: s["events"] for s in stats} == per_window
        assert sum(s["rows"] for s in stats) == len(got)

        # Its rows as the stream's Kafka sink encodes them: Confluent frame + the record.
        schema_id = 7
        encoded = mine.select(
            avro_value(
                mine, CALL_TYPES.column_names, json.dumps(CALL_TYPE_WINDOW_AVSC), schema_id
            ).alias("value")
        ).collect()
        parsed = parse_schema(CALL_TYPE_WINDOW_AVSC)
        decoded = set()
        for row in encoded:
            value = bytes(row.value)
            assert value[:5] == b"\x00" + schema_id.to_bytes(4, "big")
            rec = schemaless_reader(io.BytesIO(value[5:]), parsed, None)
            assert isinstance(rec, dict)
            decoded.add((rec["window_start"], rec["call_type"], *(rec[c] for c in SUMS)))
        assert decoded == {(k[0], k[1], *v) for k, v in got.items()}
    finally:
        both.unpersist()


@pytest.mark.spark
def test_measures_read_only_the_key_event_time_and_cdr_inputs(spark: SparkSession) -> None:
    """What the recipe says of ``CDR_INPUTS``: a column outside it is not there."""
    assert "tower_id" not in tables.CDR_INPUTS
    towers = Table(
        name="call_type_towers",
        key="call_type",
        measures=(Measure("towers", sf.collect_set, lambda p: sf.col("tower_id")),),
        output=lambda p: {"towers": sf.size(sf.col("towers"))},
        columns=CALL_TYPES.columns,
        schema=CALL_TYPES.schema,
        default_topic="unused",
        topic_setting=None,
        folder="unused",
        replay_folder="unused",
    )
    with pytest.raises(AnalysisException, match="tower_id"):
        tables.aggregate(_frame(spark, _records()[:4]), (towers,), PARAMS)
