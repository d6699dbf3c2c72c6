"""Reading the real-time tables back: the summaries ``kappa aggregate --show`` prints."""

from __future__ import annotations

from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as sf

from streams.aggregate.sinks import ParquetTables


def _table(spark: SparkSession, output: str, name: str) -> Any:
    # Asked first: Spark logs a Java stack trace for a missing path before it fails.
    if not ParquetTables(spark, output).exists(name):
        return None
    try:
        return spark.read.parquet(f"{output.rstrip('/')}/{name}")
    except AnalysisException:  # a folder without Parquet files yet
        return None


def top_callers(spark: SparkSession, output: str, n: int = 10) -> list[dict[str, Any]]:
    """Callers with the most revenue over all closed windows in ``billing_realtime/``."""
    df = _table(spark, output, "billing_realtime")
    if df is None:
        return []
    rows = (
        df.groupBy("caller_num")
        .agg(
            sf.round(sf.sum("revenue"), 4).alias("revenue"),
            sf.sum("calls").alias("calls"),
            sf.sum("billable_minutes").alias("billable_minutes"),
            sf.sum("sms_count").alias("sms_count"),
            sf.sum("data_volume_kb").alias("data_volume_kb"),
            sf.count(sf.lit(1)).alias("windows"),
        )
        .orderBy(sf.desc("revenue"), "caller_num")
        .limit(n)
        .collect()
    )
    return [r.asDict() for r in rows]


def worst_towers(spark: SparkSession, output: str, n: int = 10) -> list[dict[str, Any]]:
    """Towers with the lowest event-weighted average signal in ``network_realtime/``."""
    df = _table(spark, output, "network_realtime")
    if df is None:
        return []
    rows = (
        df.groupBy("tower_id")
        .agg(
            (sf.sum(sf.col("avg_signal") * sf.col("events")) / sf.sum("events")).alias(
                "avg_signal"
            ),
            (sf.sum(sf.col("low_signal_share") * sf.col("events")) / sf.sum("events")).alias(
                "low_signal_share"
            ),
            sf.sum("events").alias("events"),
            sf.avg("distinct_callers").alias("avg_distinct_callers"),
        )
        .orderBy("avg_signal", "tower_id")
        .limit(n)
        .collect()
    )
    return [r.asDict() for r in rows]
