"""The late-row selection and the watermark read from the query's offset log."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as sf

from streams.aggregate.late import LATE_COLUMNS, batch_timestamp_ms, late_rows
from streams.aggregate.transforms import CDR_SCHEMA
from tests.streams.aggregate.dataset import T0, cdr


def test_batch_timestamp_comes_from_the_offset_log(tmp_path: Path) -> None:
    (tmp_path / "offsets").mkdir()
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 3000, "conf": {}}
    (tmp_path / "offsets" / "2").write_text("v1\n" + json.dumps(meta) + '\n{"t":{"0":5}}\n')
    assert batch_timestamp_ms(tmp_path, 2) == 3000


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
