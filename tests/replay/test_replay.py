"""The replay job against the real broker and Spark: exact in event time, idempotent,
atomic, verified."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from replay import api, runner
from replay.exceptions import ReplayFailedError, ReplayVerificationError
from replay.manifest import Manifest
from replay.plan import range_id
from streams.aggregate import tables
from tests.harness.stack import StackHandle
from tests.replay.conftest import (
    DAY,
    CdrTopic,
    cdr,
    minutes,
    published_folder,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.spark]

T1 = DAY + minutes(60)  # 01:00
T2 = DAY + minutes(120)  # 02:00
MS = minutes(1 / 60_000)


def dataset() -> list[dict[str, Any]]:
    """Records in write order: every 30 s from 00:30 to 02:30, the range's edges to the
    millisecond, and out-of-order records (inside the lateness margin) around both ends."""
    types = ("VOICE", "SMS", "DATA", "VOICE")
    seq = [cdr(i, DAY + minutes(30 + i / 2), call_type=types[i % 4]) for i in range(240)]
    n = 1000

    def extra(t: datetime, call_type: str = "VOICE") -> dict[str, Any]:
        nonlocal n
        n += 1
        return cdr(n, t, call_type=call_type)

    def after(t: datetime) -> int:
        return next(i for i, r in enumerate(seq) if r["event_time"] > t)

    # The edges, in order.
    for t in (T1 - MS, T1, T2 - MS, T2):
        seq.insert(after(t), extra(t))
    # Out of order around the start: written once the stream is at 01:20.
    late_start = [
        extra(T1 - MS),
        extra(T1 + MS, "SMS"),
        extra(DAY + minutes(50)),
        extra(DAY + minutes(40), "DATA"),
    ]
    i = after(DAY + minutes(80))
    seq[i:i] = late_start
    # Out of order around the end: written once the stream is at 02:10 (within the margin).
    late_end = [extra(T2 - minutes(1)), extra(T2 - MS, "DATA"), extra(T2 + MS), extra(T2)]
    i = after(DAY + minutes(130))
    seq[i:i] = late_end
    return seq


def expected_in_range(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["call_id"]: r for r in records if T1 <= r["event_time"] < T2}


def expected_revenue(records: list[dict[str, Any]]) -> float:
    """Billing recomputed in plain Python: per caller per 5-minute window, summed."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        w = int(r["event_time"].timestamp()) // 300
        groups[(w, r["caller_num"])].append(r)
    total = 0.0
    for rs in groups.values():
        minutes_ = sum(math.ceil(r["duration_sec"] / 60) for r in rs if r["call_type"] == "VOICE")
        sms = sum(r["call_type"] == "SMS" for r in rs)
        kb = sum(r["data_volume_kb"] for r in rs)
        total += round(minutes_ * 2.0 + sms * 1.0 + kb / 1024.0 * 0.5, 4)
    return total


def read_rows(spark: SparkSession, path: str, sub: str) -> list[tuple[Any, ...]]:
    df = spark.read.parquet(f"{path}/{sub}")
    return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())


def folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.fixture
def replayed(
    cdr_topic: Callable[..., CdrTopic], stack: StackHandle, tmp_path: Path, spark: SparkSession
) -> tuple[CdrTopic, runner.Settings, list[dict[str, Any]]]:
    t = cdr_topic()
    records = dataset()
    t.write(records)
    return t, settings_for(stack, tmp_path / "replay"), records


def test_replay_is_exact_in_event_time_and_idempotent(
    replayed: tuple[CdrTopic, runner.Settings, list[dict[str, Any]]],
    spark: SparkSession,
    tmp_path: Path,
) -> None:
    t, s, records = replayed
    expected = expected_in_range(records)
    first = runner.replay_range(s, T1, T2, topic=t.name, spark=spark)

    assert first.path.endswith(f"/{range_id(T1, T2)}/run-{first.run_id}")
    assert published_folder(tmp_path / "replay", range_id(T1, T2)).resolve().as_uri() == first.path
    cdrs = spark.read.parquet(f"{first.path}/cdr")
    rows = cdrs.collect()
    assert sorted(r["call_id"] for r in rows) == sorted(expected)  # nothing more, nothing less
    for r in rows:
        src = expected[r["call_id"]]
        assert r["event_time"].replace(tzinfo=UTC) == src["event_time"]
        assert (
            r["event_date"].isoformat()
            if hasattr(r["event_date"], "isoformat")
            else r["event_date"]
        ) == src["event_time"].strftime("%Y-%m-%d")
        assert r["event_hour"] == src["event_time"].hour
        assert (r["duration_sec"], r["tower_id"]) == (src["duration_sec"], src["tower_id"])
    # Both edges and the out-of-order records inside the margin are where they belong.
    edge_ids = {r["call_id"] for r in records if r["event_time"] in (T1, T2 - MS)}
    assert edge_ids <= set(expected)
    assert not {r["call_id"] for r in records if r["event_time"] in (T1 - MS, T2)} & set(expected)

    assert first.counts.records == len(expected)
    assert first.counts.undecodable == 0
    assert first.schema_ids == {str(t.schema_id): len(expected)}
    assert sum(p.read for p in first.partitions) == first.counts.read
    c = first.counts
    assert c.read == c.before_range + len(expected) + c.after_range
    assert first.summary.callers == len({r["caller_num"] for r in expected.values()})
    assert first.summary.towers == len({r["tower_id"] for r in expected.values()})
    assert first.summary.revenue == pytest.approx(
        expected_revenue(list(expected.values())), abs=1e-3
    )
    billing = spark.read.parquet(f"{first.path}/billing_report")
    assert billing.agg({"calls": "sum"}).first()[0] == sum(
        r["call_type"] == "VOICE" for r in expected.values()
    )
    on_disk = (Path(first.path.removeprefix("file://")) / "manifest.json").read_text()
    manifest = json.loads(on_disk)
    assert manifest["run_id"] == first.run_id
    assert "path" not in manifest
    assert "seconds_with_startup" not in manifest["summary"]
    # The file reads back to what the run returned, and is written back byte for byte.
    assert Manifest.from_json(on_disk, path=first.path) == first.with_summary(
        seconds_with_startup=None
    )
    assert Manifest.from_json(on_disk).to_json() == on_disk

    cdr_before = read_rows(spark, first.path, "cdr")
    billing_before = read_rows(spark, first.path, "billing_report")
    health_before = read_rows(spark, first.path, "network_health")
    second = runner.replay_range(s, T1, T2, topic=t.name, spark=spark)
    assert second.run_id != first.run_id
    # The rerun is a new version; the pointer names it; the previous one stays for readers
    # that resolved the pointer before the swap.
    assert published_folder(tmp_path / "replay", range_id(T1, T2)).resolve().as_uri() == second.path
    assert folders(tmp_path / "replay" / range_id(T1, T2)) == [
        "CURRENT",
        f"run-{first.run_id}",
        f"run-{second.run_id}",
    ]
    assert read_rows(spark, second.path, "cdr") == cdr_before  # identical rows, one copy
    assert read_rows(spark, second.path, "billing_report") == billing_before
    assert read_rows(spark, second.path, "network_health") == health_before
    assert folders(tmp_path / "replay") == [range_id(T1, T2)]  # no staging, nothing replaced


def test_a_failed_run_leaves_the_previous_output(
    replayed: tuple[CdrTopic, runner.Settings, list[dict[str, Any]]],
    spark: SparkSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t, s, _ = replayed
    first = runner.replay_range(s, T1, T2, topic=t.name, spark=spark)
    before = read_rows(spark, first.path, "cdr")

    compute = tables.Table.compute

    def boom(table: tables.Table, *args: Any) -> Any:
        if table.name == "network":
            msg = "disk full"
            raise OSError(msg)
        return compute(table, *args)

    # Fails after cdr/ and billing_report/ are written into the staging folder.
    monkeypatch.setattr(tables.Table, "compute", boom)
    with pytest.raises(ReplayFailedError, match="previous output, if any, is untouched"):
        runner.replay_range(s, T1, T2, topic=t.name, spark=spark)
    monkeypatch.undo()

    assert folders(tmp_path / "replay") == [range_id(T1, T2)]
    root = published_folder(tmp_path / "replay", range_id(T1, T2))
    assert root.resolve().as_uri() == first.path
    assert json.loads((root / "manifest.json").read_text())["run_id"] == first.run_id
    assert (root / "_SUCCESS").exists()
    assert read_rows(spark, first.path, "cdr") == before


def test_api_replays_verifies_and_reports_an_interval(
    replayed: tuple[CdrTopic, runner.Settings, list[dict[str, Any]]],
    spark: SparkSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stack: StackHandle,
) -> None:
    t, _, records = replayed
    out = tmp_path / "api"
    for name, value in {
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
        "KAPPA_TOPIC_VALID": t.name,
        "KAPPA_REPLAY_PROGRESS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    manifest = api.replay_interval(T1, T2, str(out))
    expected = expected_in_range(records)
    assert manifest.counts.records == len(expected)

    report = api.verify_interval(T1, T2, str(out))
    assert report.verified
    assert report.records == report.expected == len(expected)

    got = api.interval_metrics(T1, T2, str(out))
    assert got.records == len(expected)
    assert got.customers == len({r["caller_num"] for r in expected.values()})
    assert got.towers == len({r["tower_id"] for r in expected.values()})
    assert got.revenue == manifest.summary.revenue

    folder = published_folder(out, range_id(T1, T2))
    tampered = json.loads((folder / "manifest.json").read_text())
    tampered["counts"]["records"] += 1
    (folder / "manifest.json").write_text(json.dumps(tampered))
    (folder / ".manifest.json.crc").unlink(missing_ok=True)
    with pytest.raises(ReplayVerificationError, match=r"the manifest counts \d+ records, the log"):
        api.verify_interval(T1, T2, str(out))
    (folder / "_SUCCESS").unlink()
    (folder / "._SUCCESS.crc").unlink(missing_ok=True)
    with pytest.raises(ReplayVerificationError, match="_SUCCESS is missing"):
        api.verify_interval(T1, T2, str(out))
