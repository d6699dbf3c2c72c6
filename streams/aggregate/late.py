"""Late CDRs: the rows Spark's watermark dropped, captured whole, never silently lost.

Spark's stateful aggregation drops a row whose window the watermark has already
closed and only counts it (``numRowsDroppedByWatermark`` in the query progress,
per row reaching the stateful operator, i.e. per (window, table, key) group of the
batch). Spark judges the rows of batch ``N`` against the watermark of batch
``N-1`` (its offset log) and closes windows with the one of batch ``N``::

    a row of batch N is dropped  <=>  window_end(event_time) <= W(N-1)

so that a row is dropped exactly when its window was already emitted. The capture
(``LateCapture``) runs beside the query on the driver: once batch ``N`` is committed
and its progress reports rows dropped by the watermark (or undecodable values, an
observed metric of the query), it reads the batch's offset range back from Kafka
(start and end offsets from the offset log), decodes it with the same decoders and
keeps the rows the rule above selects. They go to ``late/`` (Parquet, replacing
an earlier attempt of the same batch) and ``cdr.late`` (Avro, keyed by
``call_id``), with the window they missed, the watermark, how late they were and
their source partition and offset. ``captured_at`` is the batch's own timestamp
from the offset log, so a capture redone after a crash writes the same rows.

A batch without drops costs nothing. After a restart, the batches committed since
the last capture marked in the checkpoint (``kappa-late.json``) are scanned again
whole: their progress reports were lost with the driver.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf

from kappa.settings import KafkaSettings
from monitoring import metrics
from streams.aggregate.checkpoint import Checkpoint
from streams.aggregate.decode import Decoders, decode
from streams.aggregate.transforms import CDR_SCHEMA, DEFAULT_WINDOW, window_of

log = logging.getLogger(__name__)

LATE_COLUMNS = (
    "call_id",
    "caller_num",
    "tower_id",
    "call_type",
    "event_time",
    "missed_window_start",
    "missed_window_end",
    "watermark",
    "lateness_ms",
    "source_partition",
    "source_offset",
    "captured_at",
)
"""The fields of the Avro ``LateCdr``, in order."""

UNDECODABLE_COLUMNS = (
    "value",
    "schema_id",
    "source_partition",
    "source_offset",
    "source_timestamp",
)
CDR_COLUMNS = tuple(f.name for f in CDR_SCHEMA.fields)


def _ms(col: str) -> Column:
    return sf.unix_millis(sf.col(col))


def late_rows(
    cdrs: DataFrame, threshold_ms: int, captured_at_ms: int, window: str = DEFAULT_WINDOW
) -> DataFrame:
    """The rows of ``cdrs`` whose window ends at or before ``threshold_ms``, as ``LateCdr``.

    ``cdrs`` has the ``Cdr`` columns plus ``source_partition`` and ``source_offset``.
    """
    threshold = sf.timestamp_millis(sf.lit(int(threshold_ms)))
    return (
        cdrs.withColumn("w", window_of(sf.col("event_time"), window))
        .where(sf.col("w.end") <= threshold)
        .select(
            "call_id",
            "caller_num",
            "tower_id",
            sf.col("call_type").cast("string"),
            "event_time",
            sf.col("w.start").alias("missed_window_start"),
            sf.col("w.end").alias("missed_window_end"),
            threshold.alias("watermark"),
            (sf.lit(int(threshold_ms)) - _ms("event_time")).cast("long").alias("lateness_ms"),
            sf.col("source_partition").cast("int"),
            sf.col("source_offset").cast("long"),
            sf.timestamp_millis(sf.lit(int(captured_at_ms))).alias("captured_at"),
        )
    )


def read_range(
    spark: SparkSession,
    kafka: KafkaSettings,
    start: dict[str, dict[str, int]],
    end: dict[str, dict[str, int]],
) -> DataFrame | None:
    """The Kafka rows between two offset maps of the offset log (batch read); None when
    the range is empty. A partition missing from ``start`` starts at its beginning."""
    begin: dict[str, dict[str, int]] = {}
    stop: dict[str, dict[str, int]] = {}
    for topic, parts in end.items():
        for part, offset in parts.items():
            first = start.get(topic, {}).get(part, -2)
            if first == offset:
                continue
            begin.setdefault(topic, {})[part] = first
            stop.setdefault(topic, {})[part] = offset
    if not stop:
        return None
    assign = {t: [int(p) for p in parts] for t, parts in stop.items()}
    return (
        spark.read.format("kafka")
        .options(**kafka.spark_options())
        .option("assign", json.dumps(assign))
        .option("startingOffsets", json.dumps(begin))
        .option("endingOffsets", json.dumps(stop))
        .option("kafka.isolation.level", "read_committed")
        .load()
    )


def decoded_rows(raw: DataFrame, decoders: Decoders) -> DataFrame:
    """Kafka rows decoded: the ``Cdr`` columns, ``ok``, coordinates, and for undecodable
    values their bytes and schema id."""
    framed = decode(
        raw.select(
            "value",
            sf.col("partition").alias("source_partition"),
            sf.col("offset").alias("source_offset"),
            sf.col("timestamp").alias("source_timestamp"),
        ),
        decoders,
    )
    ok = sf.col("decoded").isNotNull()
    return framed.select(
        ok.alias("ok"),
        *[sf.col(f"decoded.{c}").alias(c) for c in CDR_COLUMNS if c != "call_type"],
        sf.col("decoded.call_type").cast("string").alias("call_type"),
        *UNDECODABLE_COLUMNS,
    )


@dataclass(frozen=True, slots=True)
class Captured:
    """What the capture of one batch wrote, beside what Spark reported for it."""

    batch_id: int
    late_rows: int
    undecodable_rows: int
    late_groups: int = 0
    """(window, table, key) groups of the late rows: what Spark's drop count counts."""
    dropped: int | None = None
    """Spark's ``numRowsDroppedByWatermark`` for the batch (None: its report was lost
    with a crashed driver, the batch was scanned whole)."""

    def as_json(self) -> str:
        return json.dumps(
            {
                "batch": self.batch_id,
                "late": self.late_rows,
                "undecodable": self.undecodable_rows,
                "late_groups": self.late_groups,
                "dropped_by_watermark": self.dropped,
            }
        )


Sink = Callable[[int, DataFrame | None, DataFrame | None], None]
"""Writes a batch's late rows and undecodable rows (either may be None)."""


@dataclass(frozen=True, slots=True)
class Flags:
    """What a batch's progress says the capture must look for."""

    dropped: int
    undecodable: int


class LateCapture:
    """Captures the dropped rows of each committed batch, in order, on a driver thread."""

    def __init__(
        self,
        spark: SparkSession,
        kafka: KafkaSettings,
        checkpoint: Checkpoint,
        decoders: Decoders,
        sink: Sink,
        *,
        window: str = DEFAULT_WINDOW,
    ) -> None:
        self.spark = spark
        self.kafka = kafka
        self.checkpoint = checkpoint
        self.decoders = decoders
        self.sink = sink
        self.window = window
        self.done = checkpoint.captured_through()
        self.flags: dict[int, Flags] = {}
        self.captured: list[Captured] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def note(self, batch_id: int, dropped: int, undecodable: int) -> None:
        """Record what batch ``batch_id``'s progress reported."""
        self.flags[batch_id] = Flags(dropped, undecodable)

    def catch_up(self, through: int) -> None:
        """Capture every batch after the last captured one, up to ``through`` (committed)."""
        with self._lock:
            while self.done < through:
                batch_id = self.done + 1
                flags = self.flags.pop(batch_id, None)
                if flags is None or flags.dropped or flags.undecodable:
                    self.captured.append(self.capture(batch_id, flags))
                self.checkpoint.mark_captured(batch_id)
                self.done = batch_id

    def capture(self, batch_id: int, flags: Flags | None) -> Captured:
        """Read batch ``batch_id``'s offsets again and write its late and undecodable rows."""
        started = time.perf_counter()
        entry = self.checkpoint.entry(batch_id)
        if entry is None:
            return Captured(batch_id, 0, 0)
        raw = read_range(
            self.spark, self.kafka, self.checkpoint.start_offsets(batch_id), entry.end_offsets
        )
        if raw is None:
            return Captured(batch_id, 0, 0)
        rows = decoded_rows(raw, self.decoders)
        threshold = self.checkpoint.late_watermark_ms(batch_id)
        want_late = flags is None or flags.dropped > 0
        want_bad = flags is None or flags.undecodable > 0
        late = (
            late_rows(rows.where(sf.col("ok")), threshold, entry.timestamp_ms, self.window)
            if want_late and threshold > 0
            else None
        )
        bad = rows.where(~sf.col("ok")).select(*UNDECODABLE_COLUMNS) if want_bad else None
        late = None if late is None else late.persist()
        bad = None if bad is None else bad.persist()
        try:
            n_late = 0 if late is None else late.count()
            n_bad = 0 if bad is None else bad.count()
            groups = late_groups(late) if late is not None and n_late else 0
            self.sink(batch_id, late if n_late else None, bad if n_bad else None)
        finally:
            for frame in (late, bad):
                if frame is not None:
                    frame.unpersist()
        metrics.AGGREGATE_LATE_RECORDS.inc(n_late)
        metrics.AGGREGATE_UNDECODABLE_RECORDS.inc(n_bad)
        log.info(
            "late capture batch=%s watermark_ms=%s late=%s undecodable=%s dropped=%s seconds=%.2f",
            batch_id,
            threshold,
            n_late,
            n_bad,
            "?" if flags is None else flags.dropped,
            time.perf_counter() - started,
        )
        done = Captured(batch_id, n_late, n_bad, groups, None if flags is None else flags.dropped)
        if n_late or n_bad or flags is not None:
            self.checkpoint.write_text(f"{LATE_AUDIT}/{batch_id}", done.as_json() + "\n")
        return done


LATE_AUDIT = "kappa-late"
"""Per batch with drops (or scanned after a crash), under the checkpoint: the rows
captured beside Spark's own drop count (``Captured.as_json``)."""


def late_groups(late: DataFrame) -> int:
    """The (window, table, key) groups of ``late`` rows: a caller group and a tower
    group per missed window, as Spark's stateful operator sees them."""
    row = late.agg(
        sf.count_distinct("missed_window_start", "caller_num").alias("callers"),
        sf.count_distinct("missed_window_start", "tower_id").alias("towers"),
    ).collect()[0]
    return int(row["callers"]) + int(row["towers"])


@dataclass(frozen=True)
class BatchFlags:
    """What one batch's progress report says the capture must look at."""

    batch_id: int
    dropped: int  # rows dropped by the watermark
    undecodable: int  # values that are not a record


def progress_flags(progress: Any) -> BatchFlags | None:
    """The ``BatchFlags`` of one progress report (a ``StreamingQueryProgress`` or its
    JSON dict); None for a report of a trigger that ran no batch (an idle query
    reports the *next* batch id)."""
    text = getattr(progress, "json", None)
    data = json.loads(text) if isinstance(text, str) else progress
    if "addBatch" not in (data.get("durationMs") or {}):
        return None
    dropped = sum(
        int(op.get("numRowsDroppedByWatermark") or 0) for op in data.get("stateOperators") or []
    )
    observed = (data.get("observedMetrics") or {}).get(OBSERVED) or {}
    return BatchFlags(int(data["batchId"]), dropped, int(observed.get("undecodable") or 0))


OBSERVED = "kappa_input"
"""The query's observed metrics: ``undecodable``, values that are not a record."""
