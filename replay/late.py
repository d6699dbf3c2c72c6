"""The late records of the ``cdr.late`` topic as a DataFrame (when the aggregation's
``late/`` Parquet is not there)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.avro.functions import from_avro

from replay import runner
from schemas import SchemaName, schema_text


def read_late_topic(spark: SparkSession, s: runner.Settings, columns: list[str]) -> DataFrame:
    """Every record of the late topic, decoded with the ``LateCdr`` schema of this release."""
    raw = (
        spark.read.format("kafka")
        .options(**s.kafka.spark_options())
        .option("subscribe", s.topics.late)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .option("kafka.isolation.level", "read_committed")
        .load()
    )
    body = F.expr("substring(value, 6, length(value) - 5)")
    decoded = raw.select(from_avro(body, schema_text(SchemaName.LATE_CDR)).alias("r"))
    return decoded.select(*[F.col(f"r.{c}").alias(c) for c in columns])
