"""The aggregation job: Spark's own stateful streaming from ``cdr.valid`` to the window tables.

Shape of the query (one Kafka scan and one decode per micro-batch, one checkpoint)::

    Kafka cdr.valid ─► decode (every writer schema id; observed: undecodable values)
        ─► explode: each CDR as one row per table it feeds (billing: caller, network: tower)
        ─► withWatermark("event_time", "10 minutes")
        ─► groupBy(window(event_time, "5 minutes"), table, key).agg(...)   append mode,
                                                         state in Spark's state store
        ─► foreachBatch(closed windows): billing_realtime/, network_realtime/ (Parquet),
                                         cdr.billing.5m, cdr.network.5m (Avro), gauges
    beside it, on the driver (``late.LateCapture``): the rows the watermark dropped
        ─► late/, cdr.late; undecodable values ─► undecodable/

Windows, watermark and window state are Spark's: ``tables.aggregate`` is the plain
DataFrame function (also used by the replay); Spark's state store (RocksDB with
changelog checkpointing by default, ``KAPPA_AGGREGATE_STATE_STORE``) keeps the open
windows under the checkpoint, which, like the outputs, may be any Hadoop URL. Each
window row is emitted once, in append mode, when the watermark passes its end;
``foreachBatch`` only writes what Spark emitted. A batch redone after a crash
emits the same rows; the Parquet sink replaces its own files (``sinks``) and the
Kafka topics are compacted by window and key.

Spark behaviours this module works with (pinned by ``tests/streams/aggregate``):

- ``run(until_idle=True)`` (``kappa aggregate --available-now``) is Spark's own
  ``availableNow`` trigger: it reads what the topic holds at the start, in as many
  batches as the read limit asks for, then runs the no-data batch that emits the
  windows the last watermark closed, and stops;
- Spark 4.1.1's Kafka source fails the progress report of a batch re-run after a
  restart (its output and commit are already written); ``recoverable`` restarts once.
- a restarted query runs the no-data batch that closes the windows of its last
  batch's watermark only once new data arrives; every start logs that batch in the
  checkpoint first (``Checkpoint.plan_closing_batch``), so a stop or a crash between
  the two holds no window back and a drain writes them all.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.streaming.query import StreamingQuery

from kappa import clients
from kappa.clients import kafka_unreachable
from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    StackSettings,
    TopicSettings,
)
from monitoring import metrics
from monitoring.business import publish_gauges
from schemas.contract import SchemaName, register, schema_text, subject
from streams import spark_errors
from streams.aggregate.checkpoint import Checkpoint, incompatible_message
from streams.aggregate.decode import Decoders, decode, unknown_id_in
from streams.aggregate.exceptions import (
    AggregateError,
    BadSettingError,
    IncompatibleCheckpointError,
    SourceUnavailableError,
)
from streams.aggregate.late import (
    LATE_COLUMNS,
    OBSERVED,
    LateCapture,
    progress_flags,
)
from streams.aggregate.paths import LATE_TABLE, TABLE_FOLDERS, UNDECODABLE_TABLE, Paths
from streams.aggregate.sinks import (
    ParquetTables,
    avro_value,
    kafka_rows,
    window_key,
    write_kafka_rows,
)
from streams.aggregate.tables import (
    CDR_INPUTS,
    TABLES,
    Params,
    Table,
    aggregate_exploded,
    keyed,
    window_stats,
)
from streams.aggregate.transforms import interval_ms
from streams.spark import run_concurrently

log = logging.getLogger(__name__)

QUERY_NAME = "aggregate"

STATE_STORE_PROVIDERS = {
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
}

BatchHook = Callable[[int], None]
MAX_RECOVERIES = 3


def recoverable(exc: BaseException) -> bool:
    """Spark 4.1.1's Kafka source fails the progress report of the first batch after a
    restart when that batch re-runs one logged before a crash: ``latestPartitionOffsets``
    was never fetched (NullPointerException in ``KafkaMicroBatchStream.metrics``). The
    batch's sink output and its commit are written before the report, so restarting the
    query once more simply goes on with the next batch."""
    return spark_errors.progress_report_bug(exc)


@dataclass
class BatchCounts:
    """What one micro-batch emitted (window rows) and what its capture found."""

    batch_id: int
    billing_rows: int = 0
    network_rows: int = 0
    late_rows: int = 0
    undecodable_rows: int = 0


@dataclass
class OutputTopics:
    """The Kafka topics of the window tables (by table name) and of late CDRs."""

    tables: dict[str, str]
    late: str
    ids: dict[str, int] = field(default_factory=dict)


def check_source(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 10.0) -> None:
    """A clear error when the broker is down or a topic is missing."""
    try:
        meta = clients.admin(kafka).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise kafka_unreachable(kafka.bootstrap, exc) from exc
    needed = [topics.valid, *[t.topic(topics) for t in TABLES], topics.late]
    missing = [t for t in needed if t not in meta.topics]
    if missing:
        msg = (
            f"topic(s) {', '.join(missing)} do not exist on {kafka.bootstrap}; "
            "`kappa stack up` creates them"
        )
        raise SourceUnavailableError(msg)


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


class WindowSink:
    """The ``foreachBatch`` function over the windows Spark emitted (closed by the
    watermark): one Parquet table and one Kafka topic per table, and the gauges."""

    def __init__(
        self,
        spark: SparkSession,
        settings: AggregateSettings,
        paths: Paths,
        kafka: KafkaSettings,
        outputs: OutputTopics | None,
        *,
        after_parquet: BatchHook | None = None,
    ) -> None:
        self.params = Params.from_settings(settings)
        self.tables = ParquetTables(spark, paths.output)
        self.kafka_options = kafka.spark_options()
        self.outputs = outputs
        self.after_parquet = after_parquet
        self.history: dict[int, BatchCounts] = {}

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        closed = df.persist()
        try:
            # The one job that runs the stateful plan (materializing ``closed``); the
            # jobs below read the cached rows. (A first job with two branches over the
            # cache would run the plan twice, and count Spark's drops twice.)
            if closed.count() == 0:
                self.history.setdefault(batch_id, BatchCounts(batch_id))
                log.info(
                    "batch id=%s windows=0 seconds=%.2f", batch_id, time.perf_counter() - started
                )
                return
            # One small job: rows and gauges per table and closed window.
            stats = window_stats(closed, TABLES, self.params)
            counts = {name: sum(w["rows"] for w in windows) for name, windows in stats.items()}
            result = self.history.setdefault(batch_id, BatchCounts(batch_id))
            result.billing_rows = counts.get("billing", 0)
            result.network_rows = counts.get("network", 0)
            emitted = {t: t.rows(closed, self.params) for t in TABLES if counts.get(t.name)}
            if emitted:
                self._write(batch_id, emitted)
            for table in emitted:
                metrics.AGGREGATE_WINDOW_ROWS.labels(table=table.folder).inc(counts[table.name])
                publish_gauges(table.name, stats[table.name])
        finally:
            closed.unpersist()
        log.info(
            "batch id=%s windows=%s seconds=%.2f", batch_id, counts, time.perf_counter() - started
        )

    def _write(self, batch_id: int, emitted: dict[Table, DataFrame]) -> None:
        """Every table's Parquet and the Kafka rows of all tables, as concurrent jobs."""
        jobs: dict[str, Callable[[], Any]] = {
            t.folder: functools.partial(self.tables.write, r, t.folder, batch_id)
            for t, r in emitted.items()
        }
        if self.outputs is not None:
            frames = [self._kafka_rows(t, r) for t, r in emitted.items()]
            union = reduce(DataFrame.unionByName, frames)
            jobs["kafka"] = functools.partial(write_kafka_rows, union, self.kafka_options)
        run_concurrently(jobs)
        if self.after_parquet is not None:
            self.after_parquet(batch_id)

    def _kafka_rows(self, table: Table, rows: DataFrame) -> DataFrame:
        out = self.outputs
        assert out is not None
        topic = out.tables[table.name]
        value = avro_value(rows, table.column_names, schema_text(table.schema), out.ids[topic])
        return kafka_rows(rows, topic, window_key(table.key), value)

    def write_captured(
        self, batch_id: int, late: DataFrame | None, undecodable: DataFrame | None
    ) -> None:
        """The late capture's sink: ``late/`` and ``cdr.late``, ``undecodable/``."""
        result = self.history.setdefault(batch_id, BatchCounts(batch_id))
        if late is not None:
            self.tables.write(late, LATE_TABLE, batch_id)
            if self.outputs is not None:
                out = self.outputs
                value = avro_value(
                    late, LATE_COLUMNS, schema_text(SchemaName.LATE_CDR), out.ids[out.late]
                )
                write_kafka_rows(
                    kafka_rows(late, out.late, sf.col("call_id"), value), self.kafka_options
                )
            result.late_rows = int(late.count())
        if undecodable is not None:
            self.tables.write(undecodable, UNDECODABLE_TABLE, batch_id)
            result.undecodable_rows = int(undecodable.count())


@dataclass
class AggregateQuery:
    """A started aggregation query, its sink and its late capture."""

    query: StreamingQuery
    sink: WindowSink
    capture: LateCapture
    paths: Paths
    restart: Callable[[], StreamingQuery] | None = None
    restarts: int = 0
    _seen: int = -1

    @property
    def history(self) -> list[BatchCounts]:
        return [self.sink.history[b] for b in sorted(self.sink.history)]

    def capture_committed(self) -> int:
        """Hand the new progress reports to the capture and capture every committed batch;
        the newest batch id reported (-1 before any)."""
        newest = self._seen
        for progress in self.query.recentProgress:
            flags = progress_flags(progress)
            if flags is None:
                continue
            batch_id, dropped, undecodable = flags
            if batch_id > self._seen:
                self.capture.note(batch_id, dropped, undecodable)
                newest = max(newest, batch_id)
        self._seen = newest
        self.capture.catch_up(newest)
        return newest

    def process_all_available(self) -> None:
        """Process what is available and capture it; survives the Spark progress bug."""
        while True:
            try:
                self.query.processAllAvailable()
                self.capture_committed()
                return
            except StreamingQueryException as exc:
                if not self.recover(exc):
                    raise

    def recover(self, exc: BaseException) -> bool:
        """Restart after ``exc`` if it is the known harmless failure; False otherwise."""
        if self.restart is None or not recoverable(exc) or self.restarts >= MAX_RECOVERIES:
            return False
        self.restarts += 1
        log.warning(
            "restarting the query after Spark's progress-report failure on a re-run "
            "batch (its output and commit are complete)"
        )
        self.query = self.restart()
        return True

    def stop(self) -> None:
        self.query.stop()
        self.capture_committed()


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
    # a clear error for a bad interval before Spark's
    interval_ms(settings.watermark)
    interval_ms(settings.window)
    try:
        interval_ms(trigger or settings.trigger)
    except BadSettingError as exc:
        msg = f"bad trigger (--trigger / KAPPA_AGGREGATE_TRIGGER): {exc}"
        raise BadSettingError(msg) from exc
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
    stream = (
        plan.writeStream.queryName(QUERY_NAME)
        .outputMode("append")
        .option("checkpointLocation", paths.checkpoint)
        .foreachBatch(sink)
    )
    try:
        if available_now:
            stream = stream.trigger(availableNow=True)
        else:
            stream = stream.trigger(processingTime=trigger or settings.trigger)
    except (ValueError, TypeError) as exc:
        msg = f"bad trigger {trigger or settings.trigger!r}: {exc}"
        raise BadSettingError(msg) from exc

    def launch() -> StreamingQuery:
        """Start the query (or start it again), first logging the no-data batch that a
        restart would skip."""
        planned = checkpoint.plan_closing_batch(int(time.time() * 1000))
        if planned is not None:
            log.info("closing batch logged id=%s (the last batch moved the watermark)", planned)
        return stream.start()

    try:
        query = launch()
    except Exception as exc:
        if spark_errors.checkpoint_mismatch(exc):
            raise IncompatibleCheckpointError(incompatible_message(paths.checkpoint)) from exc
        if spark_errors.bad_trigger(exc):
            why = spark_errors.first_line(exc, 300)
            msg = f"bad trigger {trigger or settings.trigger!r}: {why}"
            raise BadSettingError(msg) from exc
        raise
    log.info(
        "aggregate query started id=%s output=%s checkpoint=%s state_store=%s ids=%s",
        query.id,
        paths.output,
        paths.checkpoint,
        settings.state_store,
        sorted(decoders.writers),
    )
    return AggregateQuery(query, sink, capture, paths, restart=launch)


def run(
    spark: SparkSession,
    settings: AggregateSettings,
    *,
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    stack: StackSettings,
    output: str | None = None,
    trigger: str | None = None,
    until_idle: bool = False,
    stop: threading.Event | None = None,
    decoders: Decoders | None = None,
) -> list[BatchCounts]:
    """Run until stopped, or with ``until_idle`` (Spark's ``availableNow`` trigger)
    until what the topic held at the start is read and every window the watermark
    then closed is written.

    A batch that met a schema id registered after the start fails before its
    commit; the versions are fetched again and the query restarts from its
    checkpoint, redoing that batch.
    """
    reg = clients.registry(registry)
    history: list[BatchCounts] = []
    seen_unknown: set[int] = set()
    handle: AggregateQuery | None = None
    try:
        while True:
            if handle is None:
                handle = start(
                    spark,
                    settings,
                    kafka=kafka,
                    registry=registry,
                    topics=topics,
                    stack=stack,
                    output=output,
                    trigger=trigger,
                    available_now=until_idle,
                    decoders=decoders,
                )
            try:
                while not handle.query.awaitTermination(1):
                    handle.capture_committed()
                    if stop is not None and stop.is_set():
                        handle.stop()
                handle.capture_committed()
                history.extend(handle.history)
                return history
            except StreamingQueryException as exc:
                if handle.recover(exc):
                    continue
                history.extend(handle.history)
                if spark_errors.checkpoint_mismatch(exc):
                    msg = incompatible_message(handle.paths.checkpoint)
                    raise IncompatibleCheckpointError(msg) from exc
                schema_id = unknown_id_in(str(exc))
                if schema_id is None or schema_id in seen_unknown:
                    msg = f"the aggregation query failed: {spark_errors.first_line(exc)}"
                    raise AggregateError(msg) from exc
                seen_unknown.add(schema_id)
                log.warning(
                    "schema id %s appeared after start; fetching the subject's "
                    "versions and restarting from the checkpoint",
                    schema_id,
                )
                decoders = Decoders.fetch(reg, topics.valid)
                if schema_id not in decoders.writers:
                    decoders = decoders.with_id(reg, schema_id)
                handle = None
    finally:
        if handle is not None and handle.query.isActive:
            handle.stop()


@dataclass(frozen=True)
class ResetReport:
    checkpoint: str | None
    tables: list[str]


def reset(spark: SparkSession, paths: Paths, now: datetime | None = None) -> ResetReport:
    """Move the checkpoint and the tables it fed aside, so that the next start rebuilds
    them from the topic (from ``starting_offsets``) with nothing doubled."""
    now = now or datetime.now(UTC)
    moved = Checkpoint(spark, paths.checkpoint).move_aside(now)
    aside = f"_reset-{now.strftime('%Y%m%dT%H%M%SZ')}"
    tables = ParquetTables(spark, paths.output).move_aside(TABLE_FOLDERS, aside)
    return ResetReport(moved, tables)
