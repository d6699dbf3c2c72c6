"""Business gauges of the last closed window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitoring import metrics
from monitoring.business import epoch_seconds, publish_gauges
from monitoring.last_window import LastClosedWindow

W1 = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
W2 = W1 + timedelta(minutes=5)


def billing(end: datetime, caller: str, revenue: float, minutes: int = 1) -> dict[str, object]:
    return {
        "window_start": end - timedelta(minutes=5),
        "window_end": end,
        "caller_num": caller,
        "calls": 1,
        "voice_seconds": 60 * minutes,
        "billable_minutes": minutes,
        "sms_count": 0,
        "data_volume_kb": 0,
        "revenue": revenue,
    }


def tower(end: datetime, tower_id: str, events: int, low: float, avg: float) -> dict[str, object]:
    return {
        "window_start": end - timedelta(minutes=5),
        "window_end": end,
        "tower_id": tower_id,
        "events": events,
        "voice_count": events - 2,
        "sms_count": 1,
        "data_count": 1,
        "avg_signal": avg,
        "low_signal_share": low,
        "distinct_callers": events,
    }


@pytest.fixture
def gauges() -> tuple[LastClosedWindow, CollectorRegistry]:
    registry = CollectorRegistry()
    return LastClosedWindow(registry), registry


def samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_nothing_is_exported_before_a_window_closes(gauges) -> None:
    _, registry = gauges
    assert samples(registry) == {}


def _gauges(spark: Any, table: str, rows: list[dict[str, object]]) -> list[Any]:
    """The job's own gauge aggregation (in Spark) over window rows of one table."""
    import json

    from streams.aggregate.tables import Params, by_name, gauge_frame
    from streams.aggregate.transforms import RateCard

    t = by_name(table)
    frame = spark.createDataFrame(rows, t.columns)
    got = gauge_frame(frame, t, Params(RateCard(2.0, 1.0, 0.5))).collect()
    return [{"window_end_ms": r["window_end_ms"], **json.loads(r["gauges"])} for r in got]


@pytest.mark.spark
def test_the_newest_window_of_a_batch_is_published(gauges, spark: Any) -> None:
    into, registry = gauges
    now = W2.timestamp() + 630.0
    bill = _gauges(
        spark,
        "billing",
        [
            billing(W1, "+94770000001", 99.0),
            billing(W2, "+94770000001", 2.5, 2),
            billing(W2, "+94770000002", 1.25, 1),
            billing(W2, "+94770000003", 0.0, 0),
        ],
    )
    assert len(bill) == 2  # one small row per window, whatever the number of callers
    publish_gauges("billing", bill, now=now, into=into)
    towers = [
        tower(W2, "TOWER_001", 10, 0.4, 2.5),
        tower(W2, "TOWER_002", 30, 0.1, 4.0),
        tower(W2, "TOWER_003", 20, 0.3, 3.0),
    ]
    publish_gauges("network", _gauges(spark, "network", towers), now=now, into=into)
    got = samples(registry)
    assert got["kappa_business_window_revenue"] == 3.75
    assert got["kappa_business_window_active_callers"] == 3
    assert got["kappa_business_window_billable_minutes"] == 3
    assert got["kappa_business_window_towers"] == 3
    assert got["kappa_business_window_low_signal_towers"] == 2  # 0.4 and 0.3 (at the threshold)
    assert got["kappa_business_window_low_signal_ratio"] == pytest.approx((4 + 3 + 6) / 60)
    assert got["kappa_business_window_average_signal_bars"] == pytest.approx((25 + 120 + 60) / 60)
    assert got["kappa_business_window_events{call_type=VOICE}"] == 54
    assert got["kappa_business_window_events{call_type=SMS}"] == 3
    assert got["kappa_business_window_end_timestamp_seconds{table=billing}"] == W2.timestamp()
    assert got["kappa_business_window_emit_delay_seconds{table=network}"] == 630.0
    assert got["kappa_business_windows_closed_total{table=billing}"] == 2
    assert got["kappa_business_windows_closed_total{table=network}"] == 1


def _row(end: datetime, **figures: float) -> dict[str, float]:
    return {"window_end_ms": int(end.timestamp() * 1000), **figures}


def test_billing_and_network_close_apart_and_empty_batches_change_nothing(gauges) -> None:
    into, registry = gauges
    bill = {"revenue": 1.0, "active_callers": 1, "billable_minutes": 1}
    publish_gauges("billing", [_row(W1, **bill)], into=into)
    got = samples(registry)
    assert got["kappa_business_window_revenue"] == 1.0
    assert "kappa_business_window_towers" not in got
    tower_row = _row(
        W1,
        towers=1,
        low_signal_towers=0,
        events=5,
        low_events=0.0,
        signal_sum=25.0,
        voice_count=3,
        sms_count=1,
        data_count=1,
    )
    publish_gauges("network", [tower_row], into=into)
    publish_gauges("network", [], into=into)
    got = samples(registry)
    assert got["kappa_business_window_revenue"] == 1.0
    assert got["kappa_business_window_towers"] == 1
    assert got["kappa_business_window_low_signal_towers"] == 0
    assert got["kappa_business_window_average_signal_bars"] == 5.0


def test_an_older_window_does_not_replace_a_newer_one(gauges) -> None:
    into, registry = gauges
    bill = {"active_callers": 1, "billable_minutes": 1}
    publish_gauges("billing", [_row(W2, revenue=2.0, **bill)], into=into)
    publish_gauges("billing", [_row(W1, revenue=1.0, **bill)], into=into)
    got = samples(registry)
    assert got["kappa_business_window_revenue"] == 2.0
    assert got["kappa_business_windows_closed_total{table=billing}"] == 2


def test_pyspark_style_rows_and_bounds() -> None:
    naive_local = datetime.fromtimestamp(W1.timestamp())  # noqa: DTZ006 -- what collect() gives
    assert epoch_seconds(naive_local) == W1.timestamp()
    assert epoch_seconds(int(W1.timestamp() * 1000)) == W1.timestamp()
    with pytest.raises(TypeError, match="window_end"):
        epoch_seconds("2026-03-01")


def test_the_default_collector_is_registered() -> None:
    names = {f.name for f in metrics.REGISTRY.collect()}
    assert "kappa_business_window_revenue" in names
    assert "kappa_business_windows_closed" in names
