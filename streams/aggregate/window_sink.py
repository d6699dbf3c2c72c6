"""The ``foreachBatch`` sink of the aggregation query: the windows Spark emitted (closed
by the watermark) to Parquet and Kafka, and the late capture's rows beside them."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf

from kappa.settings import AggregateSettings, KafkaSettings
from monitoring import metrics
from monitoring.business import publish_gauges
from schemas.contract import SchemaName, schema_text
from streams.aggregate.late import LATE_COLUMNS
from streams.aggregate.paths import LATE_TABLE, UNDECODABLE_TABLE, Paths
from streams.aggregate.sinks import (
    ParquetTables,
    avro_value,
    kafka_rows,
    window_key,
    write_kafka_rows,
)
from streams.aggregate.tables import TABLES, Params, Table, window_stats
from streams.spark import run_concurrently

log = logging.getLogger(__name__)

BatchHook = Callable[[int], None]


@dataclass
class BatchCounts:
    """What one micro-batch emitted (window rows) and what its capture found."""

    batch_id: int
    billing_rows: int = 0
    network_rows: int = 0
    late_rows: int = 0
    undecodable_rows: int = 0


@dataclass(frozen=True)
class OutputTopics:
    """The Kafka topics of the window tables (by table name) and of late CDRs, and the
    registered schema id of each topic."""

    tables: dict[str, str]
    late: str
    ids: dict[str, int] = field(default_factory=dict)


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
        counts: dict[str, int] = {}
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
            counts = self._emit(closed, batch_id)
        finally:
            closed.unpersist()
        log.info(
            "batch id=%s windows=%s seconds=%.2f", batch_id, counts, time.perf_counter() - started
        )

    def _emit(self, closed: DataFrame, batch_id: int) -> dict[str, int]:
        """Write the closed windows of a non-empty batch and publish their gauges; the
        window rows per table name."""
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
        return counts

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
