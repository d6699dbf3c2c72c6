"""The aggregation job: one streaming query from ``cdr.valid`` to the real-time tables.

Shape of the query (one Kafka scan per micro-batch, one checkpoint)::

    Kafka cdr.valid ─► foreachBatch(batch N):
        decode once (every writer schema id)
        └─► explode: each on-time CDR as (billing, caller) and (network, tower);
            late rows and undecodable bytes as their own kind
            └─► one aggregation per (window, kind, key)         ─┐  transforms.keyed_partial
        open windows of batch N-1 (checkpoint/windows/N-1) ─────┤  transforms.keyed_merge
                                                                 ├─► closed: billing_realtime/,
                                                                 │   network_realtime/ (Parquet),
                                                                 │   cdr.billing.5m, cdr.network.5m
                                                                 └─► open: checkpoint/windows/N
        late/undecodable rows (only when the batch has some): late/, cdr.late, undecodable/

Windows are 5-minute tumbling windows in append mode: each window row is written
once, when the watermark (max event time - 10 min) passes its end; a row whose
window was already written is late and captured whole (``late``). The window
state is the job's own (``state``), written under the checkpoint with each batch
id, so a batch redone after a crash starts from the same state and replaces its
own output (``sinks``): no window row missing or doubled.

The earlier shape of this query unioned three scans of the topic (two Spark
stateful aggregations and the rows themselves) and decoded every record three
times; this one reads and decodes it once (``bench/aggregate``).

Spark behaviours this module works with (pinned by ``tests/streams/aggregate``):

- Spark's ``availableNow`` trigger stops once the offsets are drained, so
  ``run(until_idle=True)`` uses a short processing-time trigger and stops once the
  newest batch is committed and nothing moves (``drain``);
- Spark 4.1.1's Kafka source fails the progress report of a batch re-run after a
  restart (its output and commit are already written); ``recoverable`` restarts once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.streaming.query import StreamingQuery

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
    IncompatibleCheckpointError,
    SourceUnavailableError,
)
from streams.aggregate.late import LATE_COLUMNS, batch_timestamp_ms, late_rows
from streams.aggregate.sinks import (
    ParquetTables,
    avro_value,
    kafka_rows,
    window_key,
    write_kafka_rows,
)
from streams.aggregate.state import (
    Stamp,
    WindowState,
    check_shape,
    incompatible_message,
    move_aside,
)
from streams.aggregate.transforms import (
    BILLING_KIND,
    BILLING_SCHEMA,
    CDR_SCHEMA,
    NETWORK_KIND,
    NETWORK_SCHEMA,
    RateCard,
    billing_final,
    billing_slice,
    interval_ms,
    keyed_merge,
    keyed_partial,
    keys,
    network_final,
    network_slice,
    window_bounds,
)

log = logging.getLogger(__name__)

QUERY_NAME = "aggregate"
BILLING_TABLE = "billing_realtime"
NETWORK_TABLE = "network_realtime"
LATE_TABLE = "late"
UNDECODABLE_TABLE = "undecodable"
BILLING_COLUMNS = tuple(f.name for f in BILLING_SCHEMA.fields)
NETWORK_COLUMNS = tuple(f.name for f in NETWORK_SCHEMA.fields)
CDR_COLUMNS = tuple(f.name for f in CDR_SCHEMA.fields if f.name != "callee_num")
LATE, UNDECODABLE, CDR = "late", "undecodable", "cdr"
TABLES = (BILLING_TABLE, NETWORK_TABLE, LATE_TABLE, UNDECODABLE_TABLE)
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
        .option("minPartitions", str(settings.min_read_tasks))
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


def source_rows(source: DataFrame) -> DataFrame:
    """The streaming plan: the Kafka columns the batch function needs, nothing stateful."""
    return source.select(
        "value",
        sf.col("partition").alias("source_partition"),
        sf.col("offset").alias("source_offset"),
        sf.col("timestamp").alias("source_timestamp"),
    )


def decoded_rows(batch: DataFrame, decoders: Decoders) -> DataFrame:
    """A micro-batch's Kafka rows decoded once: the ``Cdr`` columns the transforms and
    the late capture read, ``ok`` (a record), and the raw value of undecodable rows."""
    framed = decode(batch, decoders)
    ok = sf.col("decoded").isNotNull()
    return framed.select(
        ok.alias("ok"),
        *[sf.col(f"decoded.{c}").alias(c) for c in CDR_COLUMNS if c != "call_type"],
        sf.col("decoded.call_type").cast("string").alias("call_type"),
        "source_partition",
        "source_offset",
        sf.when(~ok, sf.col("value")).alias("value"),
        sf.when(~ok, sf.col("schema_id")).alias("schema_id"),
        sf.when(~ok, sf.col("source_timestamp")).alias("source_timestamp"),
    )


class BatchWriter:
    """The ``foreachBatch`` function: decode once, capture late rows, fold the rest into
    the open windows (``state``), write the windows the watermark closed to every sink."""

    def __init__(
        self,
        spark: SparkSession,
        settings: AggregateSettings,
        paths: Paths,
        kafka: KafkaSettings,
        outputs: OutputTopics | None,
        *,
        decoders: Decoders,
        aggregate: bool = True,
        after_parquet: BatchHook | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.tables = ParquetTables(spark, paths.output)
        self.state = WindowState(spark, paths.checkpoint)
        self.kafka_options = kafka.spark_options()
        self.outputs = outputs
        self.decoders = decoders
        self.aggregate = aggregate
        self.after_parquet = after_parquet
        self.delay_ms = interval_ms(settings.watermark)
        self.rates = RateCard.from_settings(settings)
        self.history: list[BatchCounts] = []

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        before = self.state.before(batch_id)
        partial = self._partial(decoded_rows(df, self.decoders), before).persist()
        try:
            stats = {
                r["kind"]: r
                for r in partial.groupBy("kind")
                .agg(sf.sum("events").alias("n"), sf.max("max_event_time").alias("top"))
                .collect()
            }
            tops = [r["top"] for k, r in stats.items() if k not in {LATE, UNDECODABLE}]
            top = max((t for t in tops if t is not None), default=None)
            after = before.advanced(
                batch_id, None if top is None else int(top.timestamp() * 1000), self.delay_ms
            )
            result = BatchCounts(
                batch_id,
                late_rows=int(stats[LATE]["n"]) if LATE in stats else 0,
                undecodable_rows=int(stats[UNDECODABLE]["n"]) if UNDECODABLE in stats else 0,
            )
            merged = None
            newest_ms = None
            if self.aggregate:
                on_time = partial.where(~sf.col("kind").isin(LATE, UNDECODABLE, CDR))
                merged = keyed_merge(
                    self.state.open_windows(before).unionByName(on_time.drop("max_event_time"))
                ).persist()
                # Counting computes ``merged`` (from ``partial``) before that is dropped.
                counts = _split_counts(merged, _closed(after))
                result.billing_rows, result.network_rows = (
                    counts.closed_billing,
                    counts.closed_network,
                )
                after = replace(
                    after, billing_rows=counts.open_billing, network_rows=counts.open_network
                )
                newest_ms = counts.newest_closed_ms
        finally:
            partial.unpersist()
        # Late and undecodable rows are written whole: only a batch that has some reads
        # its Kafka range a second time, keeping just those rows.
        late = undecodable = None
        if result.late_rows:
            captured_ms = batch_timestamp_ms(self.paths.checkpoint, batch_id)
            late = late_rows(
                decoded_rows(df, self.decoders).where(sf.col("ok")),
                before.watermark_ms,
                captured_ms,
                self.settings.window,
            ).persist()
        if result.undecodable_rows:
            undecodable = (
                decoded_rows(df, self.decoders)
                .where(~sf.col("ok"))
                .select(*UNDECODABLE_COLUMNS)
                .persist()
            )
        try:
            self._fold(
                result,
                after=after,
                newest_ms=newest_ms,
                merged=merged,
                late=late,
                undecodable=undecodable,
            )
        finally:
            for frame in (merged, late, undecodable):
                if frame is not None:
                    frame.unpersist()
        self.history.append(result)
        log.info(
            "batch id=%s billing=%s network=%s late=%s undecodable=%s seconds=%.2f watermark_ms=%s",
            batch_id,
            result.billing_rows,
            result.network_rows,
            result.late_rows,
            result.undecodable_rows,
            time.perf_counter() - started,
            after.watermark_ms,
        )

    def _partial(self, rows: DataFrame, before: Stamp) -> DataFrame:
        """One aggregation over the batch: billing and tower partials of the rows on time,
        plus the number of late and of undecodable rows (their own ``kind``)."""
        window = self.settings.window
        threshold = sf.timestamp_millis(sf.lit(before.watermark_ms))
        is_late = window_bounds(sf.col("event_time"), window)[1] <= threshold
        on_time = keys() if self.aggregate else sf.array(_pair(CDR))
        kinds = (
            sf.when(~sf.col("ok"), sf.array(_pair(UNDECODABLE)))
            .when(is_late, sf.array(_pair(LATE)))
            .otherwise(on_time)
        )
        keyed = rows.select(*CDR_COLUMNS, sf.explode(kinds).alias("k")).select(
            *CDR_COLUMNS, "k.kind", "k.key"
        )
        return keyed_partial(keyed, self.settings.low_signal_threshold, window)

    def _fold(
        self,
        result: BatchCounts,
        *,
        after: Stamp,
        newest_ms: int | None,
        merged: DataFrame | None,
        late: DataFrame | None,
        undecodable: DataFrame | None,
    ) -> None:
        """Split the merged windows into closed (written) and open (the next state)."""
        closed = _closed(after)
        still_open = bill = net = None
        if merged is not None:
            bill = billing_final(billing_slice(merged.where(closed)), self.rates)
            net = network_final(network_slice(merged.where(closed)))
            still_open = merged.where(~closed)
        self._write_parquet(result, bill, net, late, undecodable)
        if self.after_parquet is not None:
            self.after_parquet(result.batch_id)
        if self.outputs is not None:
            self._write_kafka(result, bill, net, late)
        self.state.write(after, still_open)
        self._publish(result, after, newest_ms, bill, net)

    def _write_parquet(
        self,
        n: BatchCounts,
        bill: DataFrame | None,
        net: DataFrame | None,
        late: DataFrame | None,
        undecodable: DataFrame | None,
    ) -> None:
        if n.billing_rows and bill is not None:
            self.tables.write(bill, BILLING_TABLE, n.batch_id)
        if n.network_rows and net is not None:
            self.tables.write(net, NETWORK_TABLE, n.batch_id)
        if n.late_rows and late is not None:
            self.tables.write(late, LATE_TABLE, n.batch_id)
        if n.undecodable_rows and undecodable is not None:
            self.tables.write(undecodable, UNDECODABLE_TABLE, n.batch_id)

    def _write_kafka(
        self,
        n: BatchCounts,
        bill: DataFrame | None,
        net: DataFrame | None,
        late: DataFrame | None,
    ) -> None:
        out = self.outputs
        assert out is not None
        opts = self.kafka_options
        frames = []
        if n.billing_rows and bill is not None:
            schema = schema_text(SchemaName.BILLING_WINDOW)
            value = avro_value(bill, BILLING_COLUMNS, schema, out.ids[out.billing])
            frames.append(kafka_rows(bill, out.billing, window_key("caller_num"), value))
        if n.network_rows and net is not None:
            schema = schema_text(SchemaName.TOWER_WINDOW)
            value = avro_value(net, NETWORK_COLUMNS, schema, out.ids[out.network])
            frames.append(kafka_rows(net, out.network, window_key("tower_id"), value))
        if n.late_rows and late is not None:
            value = avro_value(
                late, LATE_COLUMNS, schema_text(SchemaName.LATE_CDR), out.ids[out.late]
            )
            frames.append(kafka_rows(late, out.late, sf.col("call_id"), value))
        if frames:
            # Every topic's rows in one Spark job: the sink takes each row's topic.
            write_kafka_rows(reduce(DataFrame.unionByName, frames), opts)

    def _publish(
        self,
        n: BatchCounts,
        after: Stamp,
        newest_ms: int | None,
        bill: DataFrame | None,
        net: DataFrame | None,
    ) -> None:
        metrics.AGGREGATE_LATE_RECORDS.inc(n.late_rows)
        metrics.AGGREGATE_DROPPED_BY_WATERMARK.inc(n.late_rows)
        metrics.AGGREGATE_UNDECODABLE_RECORDS.inc(n.undecodable_rows)
        metrics.AGGREGATE_WINDOW_ROWS.labels(table=BILLING_TABLE).inc(n.billing_rows)
        metrics.AGGREGATE_WINDOW_ROWS.labels(table=NETWORK_TABLE).inc(n.network_rows)
        metrics.AGGREGATE_STATE_ROWS.labels(operator="billing-windows").set(after.billing_rows)
        metrics.AGGREGATE_STATE_ROWS.labels(operator="network-windows").set(after.network_rows)
        if after.watermark_ms > 0:
            metrics.AGGREGATE_WATERMARK_SECONDS.set(after.watermark_ms / 1000.0)
            metrics.AGGREGATE_WATERMARK_DELAY_SECONDS.set(time.time() - after.watermark_ms / 1000.0)
        if newest_ms is None or not (n.billing_rows or n.network_rows):
            return
        # Only the newest window of each table feeds the business gauges.
        record_closed_window(
            _window(bill, newest_ms) if n.billing_rows and bill is not None else [],
            _window(net, newest_ms) if n.network_rows and net is not None else [],
        )


def _closed(after: Stamp) -> Column:
    """Windows the watermark after this batch has passed: final, written now."""
    return sf.col("window_end") <= sf.timestamp_millis(sf.lit(after.watermark_ms))


def _pair(kind: str) -> Column:
    return sf.struct(sf.lit(kind).alias("kind"), sf.lit(None).cast("string").alias("key"))


@dataclass(frozen=True, slots=True)
class SplitCounts:
    """Rows of the merged windows on either side of the watermark after the batch."""

    closed_billing: int
    closed_network: int
    open_billing: int
    open_network: int
    newest_closed_ms: int | None
    """The end of the newest window the batch closes (epoch ms); None if none."""


def _split_counts(merged: DataFrame, closed: Column) -> SplitCounts:
    """Closed and open rows per table, and the newest closed window (one Spark job)."""
    billing = sf.col("kind") == sf.lit(BILLING_KIND)
    network = sf.col("kind") == sf.lit(NETWORK_KIND)
    row = merged.agg(
        *[
            sf.count(sf.when(c, sf.lit(1)))
            for c in (closed & billing, closed & network, ~closed & billing, ~closed & network)
        ],
        sf.max(sf.when(closed, sf.unix_millis("window_end"))),
    ).collect()[0]
    newest = None if row[4] is None else int(row[4])
    return SplitCounts(int(row[0]), int(row[1]), int(row[2]), int(row[3]), newest)


def _window(df: DataFrame, end_ms: int) -> list[Any]:
    """The rows of ``df`` in the window ending at ``end_ms`` (one Spark job)."""
    return df.where(sf.unix_millis("window_end") == sf.lit(end_ms)).collect()


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
    # The one aggregation keeps a caller set per group: hash-based for every group
    # of a batch rather than falling back to sorting after 128 keys.
    spark.conf.set("spark.sql.objectHashAggregate.sortBased.fallbackThreshold", "1000000")
    reg = clients.registry(registry)
    decoders = decoders or Decoders.fetch(reg, topics.valid)
    outputs = register_outputs(reg, topics) if kafka_outputs else None
    paths = Paths.resolve(settings, stack, output)
    check_shape(paths.checkpoint)
    plan = source_rows(kafka_source(spark, kafka, topics.valid, settings))
    writer = BatchWriter(
        spark,
        settings,
        paths,
        kafka,
        outputs,
        decoders=decoders,
        aggregate=aggregate,
        after_parquet=after_parquet,
    )
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
    try:
        query = stream.start()
    except Exception as exc:
        if _checkpoint_mismatch(str(exc)):
            raise IncompatibleCheckpointError(incompatible_message(paths.checkpoint)) from exc
        raise
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
                if _checkpoint_mismatch(text):
                    msg = incompatible_message(handle.paths.checkpoint)
                    raise IncompatibleCheckpointError(msg) from exc
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


def _checkpoint_mismatch(text: str) -> bool:
    """Spark's own words for a checkpoint that does not fit the query."""
    return "sources in the checkpoint" in text or "STATE_STORE_" in text


@dataclass(frozen=True)
class ResetReport:
    checkpoint: Path | None
    tables: list[str]


def reset(spark: SparkSession, paths: Paths, now: datetime | None = None) -> ResetReport:
    """Move the checkpoint and the tables it fed aside, so that the next start rebuilds
    them from the topic (from ``starting_offsets``) with nothing doubled."""
    now = now or datetime.now(UTC)
    moved = move_aside(paths.checkpoint, now)
    aside = f"_reset-{now.strftime('%Y%m%dT%H%M%SZ')}"
    tables = ParquetTables(spark, paths.output).move_aside(TABLES, aside)
    return ResetReport(moved, tables)
