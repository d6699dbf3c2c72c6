"""The aggregation query's plan and its start: the source checked, the output schemas
registered, the state store configured, the checkpoint checked, the query started."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka.schema_registry import SchemaRegistryClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from kappa import clients
from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    StackSettings,
    TopicSettings,
)
from kappa.topics import require_topics
from schemas.contract import SchemaName, register, schema_text, subject
from streams import spark_errors
from streams.aggregate.checkpoint import Checkpoint, incompatible_message
from streams.aggregate.decode import Decoders, decode
from streams.aggregate.exceptions import IncompatibleCheckpointError
from streams.aggregate.handle import AggregateQuery
from streams.aggregate.late import OBSERVED, LateCapture
from streams.aggregate.paths import Paths
from streams.aggregate.tables import (
    CDR_INPUTS,
    TABLES,
    Params,
    Table,
    aggregate_exploded,
    keyed,
)
from streams.aggregate.transforms import interval_ms
from streams.aggregate.window_sink import BatchHook, OutputTopics, WindowSink
from streams.exceptions import BadSettingError

log = logging.getLogger(__name__)

QUERY_NAME = "aggregate"

STATE_STORE_PROVIDERS = {
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
}


def check_source(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 10.0) -> None:
    """A clear error when the broker is down (``ServiceUnreachableError``) or a topic
    the job reads or writes is missing (``TopicMissingError``)."""
    needed = [topics.valid, *[t.topic(topics) for t in TABLES], topics.late]
    require_topics(clients.admin(kafka), needed, kafka.bootstrap, timeout_s=timeout_s)


def register_outputs(registry: SchemaRegistryClient, topics: TopicSettings) -> OutputTopics:
    by_table = {t.name: t.topic(topics) for t in TABLES}
    ids = {
        t.topic(topics): register(registry, subject(t.topic(topics)), schema_text(t.schema))
        for t in TABLES
    }
    ids[topics.late] = register(registry, subject(topics.late), schema_text(SchemaName.LATE_CDR))
    return OutputTopics(by_table, topics.late, ids)


def kafka_source(
    spark: SparkSession, kafka: KafkaSettings, topic: str, settings: AggregateSettings
) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka.spark_options())
        .option("subscribe", topic)
        .option("startingOffsets", settings.starting_offsets)
        .option("kafka.isolation.level", "read_committed")
        .option("failOnDataLoss", "true")
        .option("minPartitions", str(settings.min_read_tasks))
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


def windowed(
    source: DataFrame,
    decoders: Decoders,
    settings: AggregateSettings,
    tables: tuple[Table, ...] = TABLES,
) -> DataFrame:
    """The streaming plan over Kafka rows: decode once, explode per table, watermark,
    Spark's windowed aggregation (``tables.aggregate_exploded``).

    The explode's input is an expression, not a column, and carries ``event_time``
    inside its structs: Spark then infers no filter from it and pushes ``window``'s
    ``event_time IS NOT NULL`` no lower than the explode, so nothing below it
    evaluates the Avro decoding a second time.
    """
    framed = decode(source.select("value"), decoders).observe(
        OBSERVED, sf.count(sf.when(sf.col("decoded").isNull(), sf.lit(1))).alias("undecodable")
    )
    cdrs = framed.select(
        (sf.col("decoded").isNotNull()).alias("ok"),
        *[sf.col(f"decoded.{t.key}").alias(t.key) for t in tables if t.key not in CDR_INPUTS],
        *[
            sf.col(f"decoded.{c}").cast("string").alias(c)
            if c == "call_type"
            else sf.col(f"decoded.{c}").alias(c)
            for c in CDR_INPUTS
        ],
        sf.col("decoded.event_time").alias("event_time"),
    )
    rows = cdrs.select(sf.explode(keyed(sf.col("ok"), tables)).alias("k")).select("k.*")
    watermarked = rows.withWatermark("event_time", settings.watermark)
    return aggregate_exploded(watermarked, tables, Params.from_settings(settings))


def configure_state_store(spark: SparkSession, settings: AggregateSettings) -> None:
    """Spark's state store provider (and RocksDB's changelog checkpointing) for new
    checkpoints; a checkpoint keeps the provider it was started with."""
    spark.conf.set(
        "spark.sql.streaming.stateStore.providerClass",
        STATE_STORE_PROVIDERS[settings.state_store],
    )
    spark.conf.set(
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled",
        "true" if settings.changelog_checkpointing else "false",
    )
    # A caller set per (window, tower): hash-based aggregation for every group of a
    # batch rather than sorting after 128 keys.
    spark.conf.set("spark.sql.objectHashAggregate.sortBased.fallbackThreshold", "1000000")


def check_intervals(settings: AggregateSettings, trigger: str | None) -> None:
    """A clear error for a bad watermark, window or trigger interval before Spark's."""
    interval_ms(settings.watermark)
    interval_ms(settings.window)
    try:
        interval_ms(trigger or settings.trigger)
    except BadSettingError as exc:
        msg = f"bad trigger (--trigger / KAPPA_AGGREGATE_TRIGGER): {exc}"
        raise BadSettingError(msg) from exc


def _writer(
    plan: DataFrame,
    sink: WindowSink,
    paths: Paths,
    trigger: str,
    available_now: bool,
) -> DataStreamWriter:
    """The query's writer: append mode, the checkpoint, the sink and the trigger."""
    stream = (
        plan.writeStream.queryName(QUERY_NAME)
        .outputMode("append")
        .option("checkpointLocation", paths.checkpoint)
        .foreachBatch(sink)
    )
    try:
        if available_now:
            return stream.trigger(availableNow=True)
        return stream.trigger(processingTime=trigger)
    except (ValueError, TypeError) as exc:
        msg = f"bad trigger {trigger!r}: {exc}"
        raise BadSettingError(msg) from exc


def _launcher(stream: DataStreamWriter, checkpoint: Checkpoint) -> Callable[[], StreamingQuery]:
    def launch() -> StreamingQuery:
        """Start the query (or start it again), first logging the no-data batch that a
        restart would skip."""
        planned = checkpoint.plan_closing_batch(int(time.time() * 1000))
        if planned is not None:
            log.info("closing batch logged id=%s (the last batch moved the watermark)", planned)
        return stream.start()

    return launch


def _first_launch(
    launch: Callable[[], StreamingQuery], paths: Paths, trigger: str
) -> StreamingQuery:
    """The first start, Spark's refusals told as the setting or checkpoint at fault."""
    try:
        return launch()
    except Exception as exc:
        if spark_errors.checkpoint_mismatch(exc):
            raise IncompatibleCheckpointError(incompatible_message(paths.checkpoint)) from exc
        if spark_errors.bad_trigger(exc):
            why = spark_errors.first_line(exc, 300)
            msg = f"bad trigger {trigger!r}: {why}"
            raise BadSettingError(msg) from exc
        raise


def start(
    spark: SparkSession,
    settings: AggregateSettings,
    *,
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    stack: StackSettings,
    output: str | None = None,
    trigger: str | None = None,
    available_now: bool = False,
    kafka_outputs: bool = True,
    after_parquet: BatchHook | None = None,
    decoders: Decoders | None = None,
) -> AggregateQuery:
    """Check the source, register the output schemas and start the query."""
    check_source(kafka, topics)
    check_intervals(settings, trigger)
    configure_state_store(spark, settings)
    reg = clients.registry(registry)
    decoders = decoders or Decoders.fetch(reg, topics.valid)
    outputs = register_outputs(reg, topics) if kafka_outputs else None
    paths = Paths.resolve(settings, stack, output)
    checkpoint = Checkpoint(spark, paths.checkpoint)
    checkpoint.check_shape()
    sink = WindowSink(spark, settings, paths, kafka, outputs, after_parquet=after_parquet)
    capture = LateCapture(
        spark, kafka, checkpoint, decoders, sink.write_captured, window=settings.window
    )
    # Batches committed before this start and not yet captured (a crash): scan them.
    capture.catch_up(checkpoint.committed())
    plan = windowed(kafka_source(spark, kafka, topics.valid, settings), decoders, settings)
    every = trigger or settings.trigger
    launch = _launcher(_writer(plan, sink, paths, every, available_now), checkpoint)
    query = _first_launch(launch, paths, every)
    log.info(
        "aggregate query started id=%s output=%s checkpoint=%s state_store=%s ids=%s",
        query.id,
        paths.output,
        paths.checkpoint,
        settings.state_store,
        sorted(decoders.writers),
    )
    return AggregateQuery(query, sink, capture, paths, restart=launch)
