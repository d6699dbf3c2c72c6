"""The aggregation job: one streaming query from ``cdr.valid`` to the real-time tables.

Shape of the query (one Kafka read, one checkpoint)::

    Kafka cdr.valid ─► decode (every writer schema id) ─┬─► undecodable rows ───────────┐
                                                        └─► watermark 10 min on event_time
                                                              ├─► billing(...)        ─┤ union
                                                              ├─► network_health(...) ─┤ (kind)
                                                              └─► the rows themselves ─┘
                                                                             │
                            foreachBatch: billing_realtime/, network_realtime/, late/ (Parquet)
                                          cdr.billing.5m, cdr.network.5m, cdr.late (Avro)

Both aggregations run in append mode over 5-minute tumbling windows, so each
window row is emitted once, when the watermark passes its end. The third branch
lets the batch function see every row read and capture, exactly, those the
aggregations dropped as late (``late``). Everything is checkpointed under
``<checkpoint_dir>``: a restart resumes at the first uncommitted batch and the
sinks replace or repeat that batch's output idempotently (``sinks``).

Spark behaviours this module works with (pinned by ``tests/streams/aggregate``):

- the aggregation drops a row when its window ended at or before the watermark of
  the *previous* batch, and closes windows with the current one (``late``);
- Spark's ``availableNow`` trigger stops before the no-data batch that closes the
  last windows, so ``run(until_idle=True)`` uses a short processing-time trigger and
  stops once the newest batch is committed and nothing moves (``drain``);
- the watermark a batch computed is persisted only with the next batch: a restart
  right after a data batch resumes with the older watermark, and the windows it would
  have closed are written when the next data arrives;
- Spark 4.1.1's Kafka source fails the progress report of a batch re-run after a
  restart (its output and commit are already written); ``recoverable`` restarts once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.window import Window

from kappa import clients
from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    StackSettings,
    TopicSettings,
)
from monitoring import metrics
from monitoring.business import record_closed_window
from schemas.contract import SchemaName, register, schema_text, subject
from streams.aggregate.decode import Decoders, decode, unknown_id_in
from streams.aggregate.exceptions import (
    AggregateError,
    BadSettingError,
    SourceUnavailableError,
)
from streams.aggregate.late import LATE_COLUMNS, batch_clock, late_rows
from streams.aggregate.sinks import ParquetTables, avro_value, window_key, write_kafka
from streams.aggregate.transforms import (
    BILLING_SCHEMA,
    NETWORK_SCHEMA,
    RateCard,
    billing,
    network_health,
)

log = logging.getLogger(__name__)

QUERY_NAME = "aggregate"
BILLING_TABLE = "billing_realtime"
NETWORK_TABLE = "network_realtime"
LATE_TABLE = "late"
UNDECODABLE_TABLE = "undecodable"
BILLING_COLUMNS = tuple(f.name for f in BILLING_SCHEMA.fields)
NETWORK_COLUMNS = tuple(f.name for f in NETWORK_SCHEMA.fields)
UNDECODABLE_COLUMNS = (
    "value",
    "schema_id",
    "source_partition",
    "source_offset",
    "source_timestamp",
)

BatchHook = Callable[[int], None]
MAX_RECOVERIES = 3


def recoverable(exc: BaseException) -> bool:
    """Spark 4.1.1's Kafka source fails the progress report of the first batch after a
    restart when that batch re-runs one logged before a crash: ``latestPartitionOffsets``
    was never fetched (NullPointerException in ``KafkaMicroBatchStream.metrics``). The
    batch's sink output and its commit are written before the report, so restarting the
    query once more simply goes on with the next batch."""
    text = str(exc)
    return ("KafkaMicroBatchStream" in text and "NullPointerException" in text) or (
        "Option.get()" in text and "is null" in text
    )


@dataclass(frozen=True)
class Paths:
    """Where the job writes: Parquet root (local path or URL) and checkpoint folder."""

    output: str
    checkpoint: Path

    @classmethod
    def resolve(
        cls, settings: AggregateSettings, stack: StackSettings, output: str | None = None
    ) -> Paths:
        out = output or settings.output or str(stack.state_dir / "aggregate")
        if "://" not in out:
            out = str(Path(out).resolve())
        ckpt = settings.checkpoint_dir or stack.state_dir / "checkpoints" / "aggregate"
        return cls(output=out, checkpoint=Path(ckpt).resolve())


@dataclass
class BatchCounts:
    """What one micro-batch emitted."""

    batch_id: int
    billing_rows: int = 0
    network_rows: int = 0
    late_rows: int = 0
    undecodable_rows: int = 0


@dataclass
class OutputTopics:
    billing: str
    network: str
    late: str
    ids: dict[str, int] = field(default_factory=dict)


def check_source(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 10.0) -> None:
    """A clear error when the broker is down or a topic is missing."""
    try:
        meta = clients.admin(kafka).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        msg = (
            f"cannot reach Kafka at {kafka.bootstrap} ({exc.args[0]}); "
            "start the local stack with `kappa stack up` or set KAPPA_KAFKA_BOOTSTRAP"
        )
        raise SourceUnavailableError(msg) from exc
    needed = [topics.valid, topics.billing, topics.network, topics.late]
    missing = [t for t in needed if t not in meta.topics]
    if missing:
        msg = (
            f"topic(s) {', '.join(missing)} do not exist on {kafka.bootstrap}; "
            "`kappa stack up` creates them"
        )
        raise SourceUnavailableError(msg)


def register_outputs(registry: SchemaRegistryClient, topics: TopicSettings) -> OutputTopics:
    ids = {
        topics.billing: register(
            registry, subject(topics.billing), schema_text(SchemaName.BILLING_WINDOW)
        ),
        topics.network: register(
            registry, subject(topics.network), schema_text(SchemaName.TOWER_WINDOW)
        ),
        topics.late: register(registry, subject(topics.late), schema_text(SchemaName.LATE_CDR)),
    }
    return OutputTopics(topics.billing, topics.network, topics.late, ids)


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
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


def build(
    source: DataFrame, decoders: Decoders, settings: AggregateSettings, *, aggregate: bool = True
) -> DataFrame:
    """The query's plan over a Kafka source DataFrame: the union of all branches by ``kind``.

    ``aggregate=False`` leaves out the two windowed aggregations (the benchmark's baseline).
    """
    framed = decode(
        source.select(
            "value",
            sf.col("partition").alias("source_partition"),
            sf.col("offset").alias("source_offset"),
            sf.col("timestamp").alias("source_timestamp"),
        ),
        decoders,
    )
    # Each branch of the union below reads the source again (Spark does not share a
    # streaming scan), so the rows and the undecodable values share one branch.
    ok = sf.col("decoded").isNotNull()
    out = framed.select(
        sf.when(ok, sf.lit("cdr")).otherwise(sf.lit("undecodable")).alias("kind"),
        sf.col("decoded.call_id").alias("call_id"),
        sf.col("decoded.caller_num").alias("caller_num"),
        sf.col("decoded.tower_id").alias("tower_id"),
        sf.col("decoded.call_type").cast("string").alias("call_type"),
        sf.col("decoded.event_time").alias("event_time"),
        "source_partition",
        "source_offset",
        sf.when(~ok, sf.col("value")).alias("value"),
        sf.when(~ok, sf.col("schema_id")).alias("schema_id"),
        sf.when(~ok, sf.col("source_timestamp")).alias("source_timestamp"),
    )
    cdrs = (
        framed.where(ok)
        .select("decoded.*", "source_partition", "source_offset")
        .withWatermark("event_time", settings.watermark)
    )
    if aggregate:
        bill = billing(cdrs, RateCard.from_settings(settings), settings.window)
        net = network_health(cdrs, settings.low_signal_threshold, settings.window)
        out = (
            bill.withColumn("kind", sf.lit("billing"))
            .unionByName(net.withColumn("kind", sf.lit("network")), allowMissingColumns=True)
            .unionByName(out, allowMissingColumns=True)
        )
    return out


class BatchWriter:
    """The ``foreachBatch`` function: splits a batch by kind and writes every sink."""

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
        self.settings = settings
        self.paths = paths
        self.tables = ParquetTables(spark, paths.output)
        self.kafka_options = kafka.spark_options()
        self.outputs = outputs
        self.after_parquet = after_parquet
        self.history: list[BatchCounts] = []

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        clock = batch_clock(self.paths.checkpoint, batch_id)
        threshold = sf.timestamp_millis(sf.lit(clock.late_threshold_ms))
        # Keep the aggregates and the rows that can be late; the rest of the batch's
        # rows are not needed past this point (a late row's event time is before W(N-1)).
        kept = df.where((sf.col("kind") != sf.lit("cdr")) | (sf.col("event_time") < threshold))
        kept = kept.persist()
        try:
            counts = {r["kind"]: int(r["count"]) for r in kept.groupBy("kind").count().collect()}
            result = BatchCounts(
                batch_id,
                counts.get("billing", 0),
                counts.get("network", 0),
                0,
                counts.get("undecodable", 0),
            )
            if "window_start" in df.columns:
                bill = kept.where(sf.col("kind") == "billing").select(*BILLING_COLUMNS)
                net = kept.where(sf.col("kind") == "network").select(*NETWORK_COLUMNS)
            else:  # the plan without the aggregations (the benchmark's baseline)
                bill = net = kept.limit(0)
            late = late_rows(
                kept.where(sf.col("kind") == "cdr"),
                clock.late_threshold_ms,
                clock.batch_timestamp_ms,
                self.settings.window,
            ).persist()
            try:
                result.late_rows = late.count() if counts.get("cdr", 0) else 0
                self._write_parquet(
                    result, bill, net, late, kept.where(sf.col("kind") == "undecodable")
                )
                if self.after_parquet is not None:
                    self.after_parquet(batch_id)
                if self.outputs is not None:
                    self._write_kafka(result, bill, net, late)
                self._publish(result, bill, net)
            finally:
                late.unpersist()
        finally:
            kept.unpersist()
        self.history.append(result)
        log.info(
            "batch id=%s billing=%s network=%s late=%s undecodable=%s seconds=%.2f watermark_ms=%s",
            batch_id,
            result.billing_rows,
            result.network_rows,
            result.late_rows,
            result.undecodable_rows,
            time.perf_counter() - started,
            clock.watermark_ms,
        )

    def _write_parquet(
        self,
        n: BatchCounts,
        bill: DataFrame,
        net: DataFrame,
        late: DataFrame,
        undecodable: DataFrame,
    ) -> None:
        if n.billing_rows:
            self.tables.write(bill, BILLING_TABLE, n.batch_id)
        if n.network_rows:
            self.tables.write(net, NETWORK_TABLE, n.batch_id)
        if n.late_rows:
            self.tables.write(late, LATE_TABLE, n.batch_id)
        if n.undecodable_rows:
            self.tables.write(
                undecodable.select(*UNDECODABLE_COLUMNS), UNDECODABLE_TABLE, n.batch_id
            )

    def _write_kafka(
        self, n: BatchCounts, bill: DataFrame, net: DataFrame, late: DataFrame
    ) -> None:
        out = self.outputs
        assert out is not None
        opts = self.kafka_options
        if n.billing_rows:
            write_kafka(
                bill,
                window_key("caller_num"),
                avro_value(
                    bill,
                    BILLING_COLUMNS,
                    schema_text(SchemaName.BILLING_WINDOW),
                    out.ids[out.billing],
                ),
                out.billing,
                opts,
            )
        if n.network_rows:
            write_kafka(
                net,
                window_key("tower_id"),
                avro_value(
                    net, NETWORK_COLUMNS, schema_text(SchemaName.TOWER_WINDOW), out.ids[out.network]
                ),
                out.network,
                opts,
            )
        if n.late_rows:
            write_kafka(
                late,
                sf.col("call_id"),
                avro_value(late, LATE_COLUMNS, schema_text(SchemaName.LATE_CDR), out.ids[out.late]),
                out.late,
                opts,
            )

    def _publish(self, n: BatchCounts, bill: DataFrame, net: DataFrame) -> None:
        metrics.AGGREGATE_LATE_RECORDS.inc(n.late_rows)
        metrics.AGGREGATE_UNDECODABLE_RECORDS.inc(n.undecodable_rows)
        metrics.AGGREGATE_WINDOW_ROWS.labels(table=BILLING_TABLE).inc(n.billing_rows)
        metrics.AGGREGATE_WINDOW_ROWS.labels(table=NETWORK_TABLE).inc(n.network_rows)
        if not (n.billing_rows or n.network_rows):
            return
        # Only the newest window of each table feeds the business gauges.
        record_closed_window(
            _newest(bill) if n.billing_rows else [], _newest(net) if n.network_rows else []
        )


def _newest(df: DataFrame) -> list[Any]:
    """The rows of the latest window in ``df`` (one Spark job)."""
    w = Window.orderBy(sf.desc("window_end"))
    return [r for r in df.withColumn("_r", sf.dense_rank().over(w)).where("_r = 1").collect()]


@dataclass
class AggregateQuery:
    """A started aggregation query and what its batches wrote."""

    query: StreamingQuery
    writer: BatchWriter
    paths: Paths
    restart: Callable[[], StreamingQuery] | None = None
    restarts: int = 0

    def process_all_available(self) -> None:
        """Process what is available; survives the Spark progress bug (``recoverable``)."""
        while True:
            try:
                self.query.processAllAvailable()
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
    aggregate: bool = True,
    kafka_outputs: bool = True,
    after_parquet: BatchHook | None = None,
    decoders: Decoders | None = None,
) -> AggregateQuery:
    """Check the source, register the output schemas and start the query."""
    check_source(kafka, topics)
    reg = clients.registry(registry)
    decoders = decoders or Decoders.fetch(reg, topics.valid)
    outputs = register_outputs(reg, topics) if kafka_outputs else None
    paths = Paths.resolve(settings, stack, output)
    paths.checkpoint.mkdir(parents=True, exist_ok=True)
    plan = build(
        kafka_source(spark, kafka, topics.valid, settings), decoders, settings, aggregate=aggregate
    )
    writer = BatchWriter(spark, settings, paths, kafka, outputs, after_parquet=after_parquet)
    stream = (
        plan.writeStream.queryName(QUERY_NAME)
        .outputMode("append")
        .option("checkpointLocation", str(paths.checkpoint))
        .foreachBatch(writer)
    )
    try:
        if available_now:
            stream = stream.trigger(availableNow=True)
        else:
            stream = stream.trigger(processingTime=trigger or settings.trigger)
    except (ValueError, TypeError) as exc:
        msg = f"bad trigger {trigger or settings.trigger!r}: {exc}"
        raise BadSettingError(msg) from exc
    query = stream.start()
    log.info(
        "aggregate query started id=%s output=%s checkpoint=%s ids=%s",
        query.id,
        paths.output,
        paths.checkpoint,
        sorted(decoders.writers),
    )
    return AggregateQuery(query, writer, paths, restart=stream.start)


IDLE_TRIGGER = "1 second"
IDLE_STABLE_S = 3.0


def drain(handle: AggregateQuery, stop: threading.Event | None = None) -> None:
    """Return once the query has nothing left: all offsets read and the newest batch
    (the no-data batch that closes windows, if any) committed, stable for a while."""
    ckpt = handle.paths.checkpoint
    while stop is None or not stop.is_set():
        handle.process_all_available()
        newest = _newest_batch(ckpt)
        waited = 0.0
        while waited < IDLE_STABLE_S:
            time.sleep(0.25)
            waited += 0.25
            if _newest_batch(ckpt) != newest or handle.query.status["isTriggerActive"]:
                break
        else:
            if newest[0] == newest[1]:
                return


def _newest_batch(checkpoint: Path) -> tuple[int, int]:
    """(newest batch in the offset log, newest committed batch); -1 when none."""

    def top(folder: str) -> int:
        ids = [int(p.name) for p in (checkpoint / folder).glob("[0-9]*") if p.name.isdigit()]
        return max(ids, default=-1)

    return top("offsets"), top("commits")


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
    """Run until stopped, or with ``until_idle`` until the topic is drained and every
    window the watermark has closed is written (Spark's ``availableNow`` trigger
    would stop before the no-data batch that emits them).

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
                    trigger=IDLE_TRIGGER if until_idle else trigger,
                    decoders=decoders,
                )
            try:
                if until_idle:
                    drain(handle, stop)
                    handle.stop()
                while not handle.query.awaitTermination(1):
                    if stop is not None and stop.is_set():
                        handle.stop()
                history.extend(handle.writer.history)
                return history
            except StreamingQueryException as exc:
                history.extend(handle.writer.history)
                handle.writer.history.clear()
                if handle.recover(exc):
                    continue
                text = str(exc)
                schema_id = unknown_id_in(text)
                if schema_id is None or schema_id in seen_unknown:
                    first = text.strip().splitlines()[0] if text.strip() else repr(exc)
                    msg = f"the aggregation query failed: {first[:500]}"
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
