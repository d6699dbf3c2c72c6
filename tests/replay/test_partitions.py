"""The records' date and hour folders: arithmetic on microseconds, equal to Spark's to_date/hour."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812

from replay.transform import with_partitions

pytestmark = pytest.mark.spark

CENTURY_US = 100 * 365 * 86_400 * 10**6
EDGES = [
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 1, 2, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC),
    datetime(2028, 2, 29, 13, 0, tzinfo=UTC),
]


def test_event_date_and_hour_equal_to_date_and_hour_in_utc(spark: SparkSession) -> None:
    rnd = random.Random(5)
    base = datetime(1950, 1, 1, tzinfo=UTC)
    times = EDGES + [base + timedelta(microseconds=rnd.randrange(CENTURY_US)) for _ in range(5000)]
    df = spark.createDataFrame([(t,) for t in times], "event_time timestamp")
    out = with_partitions(df)
    assert dict(out.dtypes)["event_date"] == "date"
    assert dict(out.dtypes)["event_hour"] == "int"
    mismatched = out.where(
        (F.col("event_date") != F.to_date("event_time"))
        | (F.col("event_hour") != F.hour("event_time"))
    )
    assert mismatched.count() == 0
    first = out.collect()[: len(EDGES)]
    assert [(r.event_date.isoformat(), r.event_hour) for r in first] == [
        ("1969-12-31", 23),
        ("1970-01-01", 0),
        ("2026-01-01", 23),
        ("2026-01-02", 0),
        ("2026-03-29", 0),
        ("2028-02-29", 13),
    ]
