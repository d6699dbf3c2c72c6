"""Spark progress reports become the kappa_aggregate_* metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from streams.aggregate.listener import record_progress


def _value(name: str, **labels: str) -> float:
    got = REGISTRY.get_sample_value(name, labels or None)
    return float(got or 0.0)


def test_progress_fields_feed_the_metrics() -> None:
    before_rows = _value("kappa_aggregate_input_rows_total")
    before_dropped = _value("kappa_aggregate_rows_dropped_by_watermark_total")
    record_progress(
        {
            "timestamp": "2026-03-01T10:30:00.000Z",
            "numInputRows": 1200,
            "inputRowsPerSecond": 40.0,
            "processedRowsPerSecond": 300.5,
            "durationMs": {"triggerExecution": 4000},
            "eventTime": {"watermark": "2026-03-01T10:20:00.000Z"},
            "stateOperators": [
                {
                    "operatorName": "stateStoreSave",
                    "numRowsTotal": 17,
                    "numRowsDroppedByWatermark": 3,
                },
            ],
        }
    )
    assert _value("kappa_aggregate_input_rows_total") - before_rows == 1200
    assert _value("kappa_aggregate_processed_rows_per_second") == 300.5
    assert _value("kappa_aggregate_watermark_delay_seconds") == 600.0
    assert _value("kappa_aggregate_state_rows", operator="stateStoreSave") == 17
    assert _value("kappa_aggregate_rows_dropped_by_watermark_total") - before_dropped == 3


def test_the_listener_reads_pyspark_progress_objects() -> None:
    """Spark hands the listener a pyspark StreamingQueryProgress, not a dict."""
    import uuid

    from pyspark.sql.streaming.listener import QueryProgressEvent

    from streams.aggregate.listener import MetricsListener

    progress: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "runId": str(uuid.uuid4()),
        "name": None,
        "timestamp": "2026-03-01T10:30:00.000Z",
        "batchId": 3,
        "batchDuration": 1000,
        "durationMs": {"triggerExecution": 1000},
        "eventTime": {},
        "stateOperators": [],
        "sources": [],
        "sink": {"description": "memory", "numOutputRows": 0},
        "numInputRows": 7,
        "inputRowsPerSecond": 1.0,
        "processedRowsPerSecond": 7.0,
        "observedMetrics": {},
    }
    event = QueryProgressEvent.fromJson({"progress": progress})
    before = _value("kappa_aggregate_input_rows_total")
    MetricsListener().onQueryProgress(event)
    assert _value("kappa_aggregate_input_rows_total") - before == 7
