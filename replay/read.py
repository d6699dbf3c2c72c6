"""Reading a replay's offsets of the topic with Spark's Kafka source, and decoding them."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from kappa import clients
from kappa.settings import KafkaSettings
from replay.context import ReplayContext
from replay.plan import ReplayPlan
from replay.transform import CDR_COLUMNS
from streams.aggregate import decode as agg_decode
from streams.aggregate.decode import Decoders


def read_tasks(plan: ReplayPlan, records_per_task: int) -> int:
    """Read tasks for the plan: at least one per partition, about ``records_per_task`` each.

    A topic of three partitions on two cores would otherwise leave one core idle
    for the last third of the read; Spark splits each partition's span in
    proportion (``minPartitions``).
    """
    return max(len(plan.spans), -(-plan.offsets_to_read // records_per_task))


def read_kafka(
    spark: SparkSession,
    kafka: KafkaSettings,
    assign: str,
    starting: str,
    ending: str,
    *,
    tasks: int | None = None,
) -> DataFrame:
    """Spark's Kafka source rows (batch) of the ``assign``ed partitions between two
    offset specs (JSON, or ``earliest``/``latest``), in ``tasks`` read tasks at least."""
    reader = (
        spark.read.format("kafka")
        .options(**kafka.spark_options())
        .option("assign", assign)
        .option("startingOffsets", starting)
        .option("endingOffsets", ending)
        # cdr.valid is written in transactions: aborted records are not records.
        .option("kafka.isolation.level", "read_committed")
    )
    if tasks is not None:
        reader = reader.option("minPartitions", str(tasks))
    return reader.load()


def read_offsets(
    spark: SparkSession,
    kafka: KafkaSettings,
    plan: ReplayPlan,
    records_per_task: int = 250_000,
) -> DataFrame:
    """The planned offsets of the topic as Spark's Kafka source rows (batch)."""
    return read_kafka(
        spark,
        kafka,
        plan.assign_json(),
        plan.starting_offsets_json(),
        plan.ending_offsets_json(),
        tasks=read_tasks(plan, records_per_task),
    )


def decoders_for(ctx: ReplayContext, topic: str) -> Decoders:
    """The aggregation's decoders: every writer schema registered under the topic's
    subject, resolved to the contract's ``Cdr``."""
    return Decoders.fetch(clients.registry(ctx.registry), topic)


def decode(raw: DataFrame, decoders: Decoders) -> DataFrame:
    """Kafka rows → the ``Cdr`` columns plus where each came from (partition, offset, schema id).

    Bytes that are not a record keep null ``Cdr`` columns (``where_col`` calls them
    ``undecodable``; the run keeps them whole in ``undecodable/``).
    """
    framed = agg_decode.decode(raw, decoders)
    return framed.select(
        *[F.col(f"decoded.{c}").alias(c) for c in CDR_COLUMNS],
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("schema_id").cast("int").alias("schema_id"),
    )


def undecodable(raw: DataFrame, decoders: Decoders) -> DataFrame:
    """The rows whose bytes are not a record (wrong magic byte, malformed Avro), as they were."""
    return (
        agg_decode.decode(raw, decoders)
        .where(F.col("decoded").isNull())
        .select(
            "key",
            "value",
            "partition",
            "offset",
            "timestamp",
            F.col("schema_id").cast("int").alias("schema_id"),
        )
    )
