"""The aggregate tables' one function on batch DataFrames, against plain-Python aggregates."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession

from streams.aggregate.tables import BILLING, NETWORK, TABLES, Params, aggregate
from streams.aggregate.transforms import CDR_SCHEMA, RateCard
from tests.streams.aggregate import expected
from tests.streams.aggregate.dataset import STEPS, T0, cdr

pytestmark = pytest.mark.spark

RATES = RateCard(voice_per_minute=2.0, sms_each=1.0, data_per_mb=0.5)
PARAMS = Params(RATES, low_signal_threshold=2)


def _frame(spark: SparkSession, records: list[dict[str, Any]]) -> Any:
    cols = [f.name for f in CDR_SCHEMA.fields]
    return spark.createDataFrame([tuple(r[c] for c in cols) for r in records], CDR_SCHEMA)


def _random_records(n: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        call_type = rnd.choice(["VOICE", "VOICE", "SMS", "DATA"])
        # Event times cluster on window boundaries: exact, one ms before, one ms after.
        base = T0 + timedelta(minutes=5 * rnd.randrange(6))
        t = base + timedelta(milliseconds=rnd.choice([-1, 0, 1, 150_000]))
        out.append(
            cdr(
                f"r{i}",
                rnd.choice(["+94770000001", "+94770000002", "+94770000003"]),
                call_type,
                0 if call_type == "SMS" else rnd.choice([0, 1, 59, 60, 61, 7200]),
                t,
                rnd.choice(["TWR-0001", "TWR-0002"]),
                rnd.randrange(1, 6),
                kb=rnd.randrange(0, 5000) if call_type == "DATA" else 0,
            )
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_billing_and_network_equal_plain_python(spark: SparkSession, seed: int) -> None:
    records = [r.record for s in STEPS for r in s] + _random_records(300, seed)
    df = _frame(spark, records)
    bill = BILLING.compute(df, PARAMS)
    net = NETWORK.compute(df, PARAMS)

    def shape(schema: Any) -> list[tuple[str, str]]:
        return [(f.name, f.dataType.simpleString()) for f in schema.fields]

    assert shape(bill.schema) == shape(BILLING.columns)
    assert shape(net.schema) == shape(NETWORK.columns)
    assert expected.frame_to_table(bill.toPandas(), "caller_num") == expected.billing(records)
    assert expected.frame_to_table(net.toPandas(), "tower_id") == expected.network(records)


def test_window_boundaries_are_half_open(spark: SparkSession) -> None:
    t = T0 + timedelta(minutes=5)
    records = [
        cdr("x", "+94770000001", "VOICE", 61, t - timedelta(milliseconds=1), "T", 3),
        cdr("y", "+94770000001", "VOICE", 61, t, "T", 3),
    ]
    rows = BILLING.compute(_frame(spark, records), PARAMS).orderBy("window_start").collect()
    assert [
        (r.window_start.minute, r.window_end.minute, r.calls, r.billable_minutes) for r in rows
    ] == [(0, 5, 1, 2), (5, 10, 1, 2)]
    assert rows[0].revenue == 4.0


@pytest.mark.parametrize("seed", [3])
def test_one_aggregation_of_every_table_equals_each_table_alone(
    spark: SparkSession, seed: int
) -> None:
    """The stream's one aggregation over both tables (each CDR exploded into a caller
    row and a tower row) cut by ``Table.rows`` gives what each table alone gives."""
    df = _frame(spark, _random_records(300, seed))
    both = aggregate(df, TABLES, PARAMS)
    for table in TABLES:
        assert expected.frame_to_table(
            table.rows(both, PARAMS).toPandas(), table.key
        ) == expected.frame_to_table(table.compute(df, PARAMS).toPandas(), table.key)


def test_every_table_matches_its_avro_record() -> None:
    """Columns, order and types of each table are those of its Avro schema."""
    import json

    from schemas.contract import schema_text

    kinds = {"long": "bigint", "double": "double", "string": "string"}
    for table in TABLES:
        fields = json.loads(schema_text(table.schema))["fields"]
        assert [f["name"] for f in fields] == list(table.column_names)
        for f, col in zip(fields, table.columns.fields, strict=True):
            avro = f["type"]["logicalType"] if isinstance(f["type"], dict) else f["type"]
            want = "timestamp" if avro == "timestamp-millis" else kinds[avro]
            assert col.dataType.simpleString() == want, (table.name, f["name"])
