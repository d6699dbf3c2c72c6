"""The progress line and the closing summary, as text."""

from __future__ import annotations

from replay.manifest import Manifest
from replay.progress import render, summary_text


def test_progress_line_shows_each_active_stage() -> None:
    line = render([(3, "parquet at NativeMethodAccessorImpl.java:0", 40, 10, 2)], width=10)
    assert line == "replay stage 3 (parquet) [##--------] 10/40 tasks, 2 running"
    assert render([]) == ""


def test_summary_names_records_callers_towers_revenue_and_seconds() -> None:
    manifest = Manifest.from_dict(
        {
            "run_id": "r1",
            "topic": "cdr.valid",
            "range": {
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-01T06:00:00Z",
                "from_ms": 1767225600000,
                "to_ms": 1767247200000,
                "lateness_margin_s": 900,
            },
            "counts": {"read": 1200, "before_range": 100, "records": 1000, "after_range": 100},
            "summary": {
                "records": 1000,
                "callers": 420,
                "towers": 50,
                "revenue": 12345.678,
                "seconds": 42.0,
            },
            "schema_ids": {"1": 990, "2": 10},
            "aggregation": {
                "window": "5 minutes",
                "low_signal_threshold": -100,
                "rates": {
                    "voice_per_minute": 1.0,
                    "sms_each": 0.5,
                    "data_per_mb": 0.1,
                    "currency": "LKR",
                },
            },
            "path": "hdfs://127.0.0.1:9000/kappa/replay/20260101T000000Z_20260101T060000Z",
        }
    )
    text = summary_text(manifest)
    assert "replayed [2026-01-01T00:00:00Z, 2026-01-01T06:00:00Z) in 42.0 s" in text
    assert "records          1,000   (read 1,200: 100 before, 100 after the range)" in text
    assert "callers            420" in text
    assert "towers              50" in text
    assert "revenue      12,345.68 LKR" in text
    assert "schema ids 1, 2" in text
    assert "hdfs://127.0.0.1:9000/kappa/replay/" in text
