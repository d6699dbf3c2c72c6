"""Late CDRs: captured, with the window they missed and how late, never silently dropped.

Spark's windowed aggregation drops a row whose window the watermark has already
closed and only counts it (``numRowsDroppedByWatermark``). This job folds each
micro-batch into its windows itself (``state``), so the ``foreachBatch`` of batch
``N`` sees every row the batch read and splits them by one rule:

    a row is late in batch N  <=>  window_end(event_time) <= W(N-1)

where ``W(N-1)`` is the watermark after batch ``N-1`` (max event time seen so far
minus the delay, 0 before any record), kept in the checkpoint with the open
windows. Windows ending at or before it were already emitted, so a row is late
exactly when its window was closed; late rows go to ``late/`` and ``cdr.late``,
the others into the windows. A batch redone after a crash reads the same state
and captures the same rows (``captured_at`` is the batch's own timestamp from
the offset log, so even that field repeats).
"""

from __future__ import annotations

import json
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


def batch_timestamp_ms(checkpoint: Path, batch_id: int) -> int:
    """The time Spark gave micro-batch ``batch_id`` (its offset log), the same on a re-run."""
    path = checkpoint / "offsets" / str(batch_id)
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("{") and "batchTimestampMs" in line:
            return int(json.loads(line)["batchTimestampMs"])
    msg = f"no batch metadata in {path}"
    raise ValueError(msg)


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
