"""The manifest's JSON: the keys replays have always written, read back and written again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from replay.counts import tally
from replay.manifest import Manifest
from replay.plan import PartitionSpan, ReplayPlan

PUBLISHED: dict[str, Any] = {
    "version": 1,
    "run_id": "20260101T063000Z-abcdef12",
    "range": {
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-01-01T06:00:00Z",
        "from_ms": 1767225600000,
        "to_ms": 1767247200000,
        "lateness_margin_s": 900,
    },
    "topic": "cdr.valid",
    "planned_at": "2026-01-01T06:30:00Z",
    "finished_at": "2026-01-01T06:31:00Z",
    "partitions": [
        {
            "partition": 0,
            "start_offset": 10,
            "end_offset": 20,
            "read": 10,
            "in_range": 8,
            "first_offset_read": 10,
            "last_offset_read": 19,
        },
        {
            "partition": 1,
            "start_offset": 5,
            "end_offset": 5,
            "read": 0,
            "in_range": 0,
            "first_offset_read": None,
            "last_offset_read": None,
        },
    ],
    "counts": {"read": 10, "before_range": 1, "records": 8, "after_range": 1, "undecodable": 0},
    "schema_ids": {"1": 8},
    "summary": {
        "records": 8,
        "callers": 3,
        "towers": 2,
        "revenue": 1.25,
        "stage_seconds": {"read_decode_write": 1.5},
        "seconds": 4.2,
    },
    "outputs": {
        "cdr": "cdr",
        "billing_report": "billing_report",
        "network_health": "network_health",
        "partitioned_by": ["event_date", "event_hour"],
    },
    "aggregation": {
        "window": "5 minutes",
        "low_signal_threshold": -100,
        "rates": {"voice_per_minute": 1.5, "sms_each": 0.5, "data_per_mb": 0.1, "currency": "LKR"},
    },
}


def test_a_published_manifest_reads_back_and_writes_the_same_text() -> None:
    text = json.dumps(PUBLISHED, indent=2) + "\n"
    m = Manifest.from_json(text, path="file:///out/r")
    assert m.path == "file:///out/r"
    assert m.counts.records == 8
    assert m.range.to_ms == 1767247200000
    assert m.partitions[1].first_offset_read is None
    assert m.currency == "LKR"
    assert m.to_json() == text  # same keys, same order, no path
    assert m.to_dict() == PUBLISHED | {"path": "file:///out/r"}


def test_a_manifest_without_the_newer_keys_still_loads() -> None:
    older = {k: v for k, v in PUBLISHED.items() if k not in ("aggregation", "outputs")}
    older["summary"] = {k: v for k, v in PUBLISHED["summary"].items() if k != "stage_seconds"}
    m = Manifest.from_json(json.dumps(older))
    assert m.aggregation is None
    assert m.currency == ""
    assert m.summary.stage_seconds == {}
    again = json.loads(m.to_json())
    assert again["summary"] == older["summary"] | {"stage_seconds": {}}
    assert again | {"summary": older["summary"]} == older


def test_seconds_with_startup_follows_seconds_when_set() -> None:
    m = Manifest.from_dict(PUBLISHED)
    assert "seconds_with_startup" not in m.to_dict()["summary"]
    later = m.with_summary(seconds_with_startup=9.5)
    assert list(later.to_dict()["summary"])[-2:] == ["seconds", "seconds_with_startup"]
    assert later.summary.seconds_with_startup == 9.5


def test_counts_tally_by_partition_schema_and_place() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    plan = ReplayPlan(
        "cdr.valid",
        t0,
        t0 + timedelta(hours=6),
        timedelta(minutes=15),
        (PartitionSpan(0, 10, 20), PartitionSpan(1, 5, 5)),
    )
    rows = [
        {"kafka_partition": 0, "schema_id": 1, "where": "in", "n": 8, "lo": 11, "hi": 18},
        {"kafka_partition": 0, "schema_id": 1, "where": "before", "n": 1, "lo": 10, "hi": 10},
        {"kafka_partition": 0, "schema_id": 1, "where": "after", "n": 1, "lo": 19, "hi": 19},
    ]
    counts = tally(rows, plan)
    m = Manifest.from_dict(PUBLISHED)
    assert counts.totals == m.counts
    assert counts.partitions == m.partitions
    assert counts.schema_ids == m.schema_ids
