"""The late-row selection, the offset log it is driven by, and progress reports."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as sf

from streams.aggregate.checkpoint import Checkpoint
from streams.aggregate.late import LATE_COLUMNS, BatchFlags, late_rows, progress_flags
from streams.aggregate.transforms import CDR_SCHEMA
from tests.streams.aggregate.dataset import T0, cdr


@pytest.mark.spark
def test_the_offset_log_gives_each_batch_its_range_and_late_watermark(
    spark: SparkSession, tmp_path: Path
) -> None:
    (tmp_path / "offsets").mkdir()
    (tmp_path / "sources" / "0").mkdir(parents=True)
    # What Spark's Kafka source writes: a zero byte, a version line, the offsets.
    (tmp_path / "sources" / "0" / "0").write_bytes(b'\x00v1\n{"t":{"0":2,"1":0}}')
    for batch, wm, ts, offsets in ((0, 0, 1000, 5), (1, 7000, 2000, 9)):
        meta = {"batchWatermarkMs": wm, "batchTimestampMs": ts, "conf": {}}
        text = "v1\n" + json.dumps(meta) + "\n" + json.dumps({"t": {"0": offsets, "1": 3}})
        (tmp_path / "offsets" / str(batch)).write_text(text + "\n")
    ckpt = Checkpoint(spark, str(tmp_path))
    assert ckpt.newest("offsets") == 1
    assert ckpt.committed() == -1
    entry = ckpt.entry(1)
    assert entry is not None
    assert (entry.watermark_ms, entry.timestamp_ms) == (7000, 2000)
    assert ckpt.start_offsets(0) == {"t": {"0": 2, "1": 0}}
    assert ckpt.start_offsets(1) == {"t": {"0": 5, "1": 3}}
    # Batch N's rows are judged against batch N-1's watermark.
    assert ckpt.late_watermark_ms(0) == 0
    assert ckpt.late_watermark_ms(1) == 0
    assert ckpt.late_watermark_ms(2) == 7000
    assert ckpt.captured_through() == -1
    ckpt.mark_captured(1)
    assert Checkpoint(spark, f"file://{tmp_path}").captured_through() == 1


def test_progress_flags_skip_triggers_that_ran_no_batch() -> None:
    ran = {
        "batchId": 4,
        "durationMs": {"addBatch": 10, "triggerExecution": 20},
        "stateOperators": [{"numRowsDroppedByWatermark": 3}],
        "observedMetrics": {"kappa_input": {"undecodable": 2}},
    }
    assert progress_flags(ran) == BatchFlags(4, 3, 2)
    idle = {"batchId": 5, "durationMs": {"triggerExecution": 1}, "stateOperators": []}
    assert progress_flags(idle) is None


@pytest.mark.spark
def test_late_rows_are_those_whose_window_ended_at_or_before_the_threshold(
    spark: SparkSession,
) -> None:
    threshold = T0 + timedelta(minutes=10)
    recs = [
        cdr(
            "late-end-equal",
            "+94770000001",
            "VOICE",
            5,
            threshold - timedelta(milliseconds=1),
            "T",
            3,
        ),
        cdr("late-old", "+94770000001", "SMS", 0, T0, "T", 3),
        cdr("open-window", "+94770000002", "VOICE", 5, threshold, "T", 3),
    ]
    cols = [f.name for f in CDR_SCHEMA.fields]
    df = spark.createDataFrame([tuple(r[c] for c in cols) for r in recs], CDR_SCHEMA)
    df = df.withColumn("source_partition", sf.lit(0)).withColumn(
        "source_offset", sf.monotonically_increasing_id()
    )
    threshold_ms = int(threshold.timestamp() * 1000)
    rows = {r.call_id: r for r in late_rows(df, threshold_ms, captured_at_ms=42).collect()}
    assert set(rows) == {"late-end-equal", "late-old"}
    assert tuple(late_rows(df, threshold_ms, 42).columns) == LATE_COLUMNS
    assert rows["late-end-equal"].lateness_ms == 1
    assert rows["late-old"].lateness_ms == 10 * 60_000
    assert rows["late-old"].missed_window_end.minute == 5
