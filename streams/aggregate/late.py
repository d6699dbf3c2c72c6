"""Late CDRs: captured, with the window they missed and how late, never silently dropped.

Spark's windowed aggregation drops a row whose window the watermark has already
closed and only counts it (``numRowsDroppedByWatermark``). This job keeps the
decoded rows as a third, stateless branch of the same query (see ``job``), so
the ``foreachBatch`` of micro-batch ``N`` sees every row that batch read, and
selects the late ones with **the same threshold Spark's aggregation used**:

    a row is late in batch N  <=>  window_end(event_time) <= W(N-1)

where ``W(N-1)`` is the watermark batch ``N-1`` ran with (``batchWatermarkMs`` of
the query's offset log, 0 for the first batch). Spark 4's stateful operators
drop late input with the previous batch's watermark and evict windows with the
current one, so a row whose window closes *in* batch N is still aggregated;
``tests/streams/aggregate`` pins this down. Reading the threshold from the same
checkpoint makes the capture exact across restarts: a replayed batch reads the
same offset-log entries and captures the same rows (``captured_at`` is the
batch's own timestamp from the log, so even that field repeats).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as sf

from streams.aggregate.transforms import DEFAULT_WINDOW, window_of

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


@dataclass(frozen=True, slots=True)
class BatchClock:
    """What the offset log says about one micro-batch."""

    batch_id: int
    late_threshold_ms: int
    """W(N-1): rows whose window ends at or before it were dropped by the aggregation."""
    watermark_ms: int
    """W(N): the watermark this batch evicts (closes) windows with."""
    batch_timestamp_ms: int


def _metadata(checkpoint: Path, batch_id: int) -> dict[str, int]:
    path = checkpoint / "offsets" / str(batch_id)
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("{") and "batchWatermarkMs" in line:
            meta: dict[str, int] = json.loads(line)
            return meta
    msg = f"no batch metadata in {path}"
    raise ValueError(msg)


def batch_clock(checkpoint: Path, batch_id: int) -> BatchClock:
    """The watermarks of batch ``batch_id`` of the query checkpointed at ``checkpoint``."""
    meta = _metadata(checkpoint, batch_id)
    previous = _metadata(checkpoint, batch_id - 1) if batch_id > 0 else {"batchWatermarkMs": 0}
    return BatchClock(
        batch_id=batch_id,
        late_threshold_ms=int(previous["batchWatermarkMs"]),
        watermark_ms=int(meta["batchWatermarkMs"]),
        batch_timestamp_ms=int(meta.get("batchTimestampMs", 0)),
    )


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
