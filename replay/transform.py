"""Where each decoded record stands against the range, and its hour partition columns."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from replay.plan import ReplayPlan, to_ms
from streams.aggregate import transforms

CDR_COLUMNS = [f.name for f in transforms.CDR_SCHEMA.fields]
SOURCE_COLUMNS = ["kafka_partition", "kafka_offset", "schema_id"]
PARTITION_COLUMNS = ["event_date", "event_hour"]
WHERE = "where"


def where_col(plan: ReplayPlan) -> Column:
    """Where a decoded row stands against the range: ``in``, ``before``, ``after``, or
    ``undecodable`` (bytes that are not a record)."""
    ms = F.unix_millis(F.col("event_time"))
    return (
        F.when(F.col("call_id").isNull(), F.lit("undecodable"))
        .when(ms < F.lit(to_ms(plan.start)), F.lit("before"))
        .when(ms >= F.lit(to_ms(plan.end)), F.lit("after"))
        .otherwise(F.lit("in"))
    )


def in_range(cdrs: DataFrame, plan: ReplayPlan) -> DataFrame:
    """Exactly the records whose event time is in ``[from, to)``."""
    ms = F.unix_millis(F.col("event_time"))
    return cdrs.where((ms >= F.lit(to_ms(plan.start))) & (ms < F.lit(to_ms(plan.end))))


_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000


def with_partitions(cdrs: DataFrame) -> DataFrame:
    """``event_date`` (a date: folders ``event_date=2026-01-01``) and ``event_hour``
    (0-23) of each record's UTC event time, by arithmetic on its microseconds
    (``to_date``/``hour`` go through the session's zone rules for every row)."""
    us = F.unix_micros(F.col("event_time"))
    in_day = F.pmod(us, F.lit(_DAY_US))
    days = (us - in_day) / F.lit(_DAY_US)
    return cdrs.withColumn("event_date", F.date_from_unix_date(days.cast("int"))).withColumn(
        "event_hour", (in_day / F.lit(_HOUR_US)).cast("int")
    )


def no_rows(spark: SparkSession, decoded: DataFrame) -> DataFrame:
    """No records, with the decoded columns (an empty range)."""
    return spark.createDataFrame([], decoded.schema)
