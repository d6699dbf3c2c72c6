"""The streaming job on the real broker, registry and Spark: exact values, late rows, restarts."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka.schema_registry import Schema
from prometheus_client import REGISTRY
from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession

from kappa import clients
from kappa.settings import AggregateSettings, TopicSettings
from schemas.contract import SchemaName, schema_text, subject
from schemas.wire import WireDecoder, WireEncoder
from streams.aggregate.decode import Decoders
from streams.aggregate.listener import MetricsListener
from tests.streams.aggregate import expected
from tests.streams.aggregate.dataset import (
    STEPS,
    TOWER_1,
    A,
    Row,
    at,
    cdr,
    drain,
    encoder,
    produce_step,
    settle,
    single_partition_topics,
    start_query,
    watermark_after,
)

pytestmark = [pytest.mark.integration, pytest.mark.spark]

SETTINGS = AggregateSettings(shuffle_partitions=2, trigger="200 milliseconds")


@pytest.fixture
def topics(stack: Any, topic: Any) -> TopicSettings:
    return single_partition_topics(topic)


def _settings(tmp_path: Path) -> AggregateSettings:
    return SETTINGS.model_copy(
        update={"output": str(tmp_path / "out"), "checkpoint_dir": str(tmp_path / "ckpt")}
    )


def _read(root: Path, table: str) -> pd.DataFrame:
    path = root / table
    if not path.exists():
        return pd.DataFrame()
    return pd.read_parquet(path)


def _assert_outputs(root: Path, steps: list[list[Row]]) -> None:
    on_time = [r.record for s in steps for r in s if not r.late]
    wm = watermark_after(steps)
    want_billing = expected.closed(expected.billing(on_time), wm)
    want_network = expected.closed(expected.network(on_time), wm)
    got_billing = expected.frame_to_table(_read(root, "billing_realtime"), "caller_num")
    got_network = expected.frame_to_table(_read(root, "network_realtime"), "tower_id")
    assert got_billing == want_billing
    assert got_network == want_network

    late = _read(root, "late")
    want_late = {r.record["call_id"]: r.record for s in steps for r in s if r.late}
    assert sorted(late["call_id"]) == sorted(want_late)
    for rec in late.to_dict("records"):
        src = want_late[rec["call_id"]]
        start = expected.window_start(src["event_time"])
        assert int(rec["missed_window_start"].timestamp() * 1000) == start
        assert int(rec["missed_window_end"].timestamp() * 1000) == start + expected.WINDOW_MS
        watermark = int(rec["watermark"].timestamp() * 1000)
        assert watermark >= start + expected.WINDOW_MS
        assert rec["lateness_ms"] == watermark - expected.ms(src["event_time"])
        assert rec["caller_num"] == src["caller_num"]


def _consume_all(stack: Any, topic: str) -> list[tuple[str, dict[str, Any]]]:
    consumer = clients.consumer(stack.kafka, group_id=f"t-{topic}")
    decoder = WireDecoder(clients.registry(stack.registry))
    consumer.subscribe([topic])
    out: list[tuple[str, dict[str, Any]]] = []
    idle = 0
    while idle < 5:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            continue
        if msg.error():
            continue
        idle = 0
        decoded = decoder.decode(msg.value())
        assert hasattr(decoded, "record"), decoded
        out.append((msg.key().decode(), decoded.record))  # type: ignore[union-attr]
    consumer.close()
    return out


def _metric(name: str, **labels: str) -> float:
    return float(REGISTRY.get_sample_value(name, labels or None) or 0.0)


def _captured_groups(root: Path, batch_id: int) -> int:
    """(window, table, key) groups of the late CDRs captured for ``batch_id``: what
    Spark's ``numRowsDroppedByWatermark`` counts (rows reaching its stateful operator
    after the partial aggregation)."""
    files = sorted((root / "late").glob(f"batch-{batch_id}-*.parquet"))
    if not files:
        return 0
    late = pd.concat([pd.read_parquet(f) for f in files])
    window = late["missed_window_start"]
    callers = set(zip(window, late["caller_num"], strict=True))
    towers = set(zip(window, late["tower_id"], strict=True))
    return len(callers) + len(towers)


def test_windows_equal_independent_aggregates_and_late_rows_are_captured(
    spark: SparkSession, stack: Any, topics: TopicSettings, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    root = Path(settings.output or "")
    enc = encoder(stack, topics)
    listener = MetricsListener()
    spark.streams.addListener(listener)
    dropped_before = _metric("kappa_aggregate_rows_dropped_by_watermark_total")
    batches_before = _metric("kappa_aggregate_batch_duration_seconds_count")
    handle = start_query(spark, stack, topics, settings)
    try:
        for i, step in enumerate(STEPS):
            produce_step(stack.kafka, topics.valid, step, [enc])
            settle(handle, watermark_after(STEPS[: i + 1]))
        progress = [json.loads(p.json) for p in handle.query.recentProgress]
    finally:
        handle.stop()
        time.sleep(1.0)  # the listener bus delivers the last reports
        spark.streams.removeListener(listener)
    _assert_outputs(root, STEPS)
    # Batch by batch, the captured CDRs are exactly the rows Spark's watermark dropped.
    ran = [p for p in progress if "addBatch" in p["durationMs"]]
    dropped = {p["batchId"]: p["stateOperators"][0]["numRowsDroppedByWatermark"] for p in ran}
    assert sum(dropped.values()) == 6  # s3a, s3b: 2 callers + 2 towers; s4a: 1 + 1
    for batch_id, n in dropped.items():
        assert _captured_groups(root, batch_id) == n, batch_id
    # The checkpoint keeps the same comparison for each batch with drops (for audits).
    audit = [
        json.loads(f.read_text())
        for f in Path(settings.checkpoint_dir or "").glob("kappa-late/[0-9]*")
    ]
    assert {a["batch"]: a["dropped_by_watermark"] for a in audit} == {
        b: n for b, n in dropped.items() if n
    }
    assert all(a["late_groups"] == a["dropped_by_watermark"] for a in audit)
    # The listener reports Spark's own figures for the running query.
    newest = ran[-1]
    assert _metric("kappa_aggregate_rows_dropped_by_watermark_total") - dropped_before == 6
    assert _metric("kappa_aggregate_batch_duration_seconds_count") - batches_before >= len(ran)
    watermark = datetime.fromisoformat(newest["eventTime"]["watermark"].replace("Z", "+00:00"))
    assert _metric("kappa_aggregate_watermark_timestamp_seconds") == watermark.timestamp()
    assert watermark.timestamp() * 1000 == watermark_after(STEPS)
    assert (
        _metric("kappa_aggregate_state_rows", operator="stateStoreSave")
        == (newest["stateOperators"][0]["numRowsTotal"])
    )
    assert newest["stateOperators"][0]["numRowsTotal"] > 0  # windows still open at 11:00
    # The same rows reached the Kafka topics, keyed by window and caller / tower.
    billed = _consume_all(stack, topics.billing)
    keys = {k for k, _ in billed}
    assert len(keys) == len(_read(Path(settings.output or ""), "billing_realtime"))
    assert all(k.startswith("2026-03-01T") and "|+9477" in k for k in keys)
    late = _consume_all(stack, topics.late)
    assert sorted(k for k, _ in late) == ["s3a", "s3b", "s4a"]


def test_crash_after_parquet_then_restart_from_checkpoint_no_row_missing_or_doubled(
    spark: SparkSession, stack: Any, topics: TopicSettings, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    out = Path(settings.output or "")
    enc = encoder(stack, topics)
    crashed: list[int] = []

    def crash_once(batch_id: int) -> None:
        wrote = list((out / "billing_realtime").glob(f"batch-{batch_id}-*.parquet"))
        if wrote and not crashed:
            crashed.append(batch_id)
            raise RuntimeError("simulated crash after the Parquet write, before the commit")

    handle = start_query(spark, stack, topics, settings, after_parquet=crash_once)
    try:
        produce_step(stack.kafka, topics.valid, STEPS[0], [enc])
        settle(handle, watermark_after(STEPS[:1]))
        produce_step(stack.kafka, topics.valid, STEPS[1], [enc])
        with pytest.raises(StreamingQueryException):
            settle(handle, watermark_after(STEPS[:2]))
    finally:
        handle.stop()
    assert crashed, "the crash hook never fired"
    assert list((out / "billing_realtime").glob(f"batch-{crashed[0]}-*"))  # half-done batch

    handle = start_query(spark, stack, topics, settings)  # same checkpoint, same output
    try:
        settle(handle, watermark_after(STEPS[:2]))
        for i in range(2, len(STEPS)):
            produce_step(stack.kafka, topics.valid, STEPS[i], [enc])
            settle(handle, watermark_after(STEPS[: i + 1]))
    finally:
        handle.stop()
    _assert_outputs(out, STEPS)  # frame_to_table fails on any doubled window row
    # Kafka is at-least-once: the replayed batch may repeat rows, never with other values.
    by_key: dict[str, dict[str, Any]] = {}
    for key, value in _consume_all(stack, topics.billing):
        assert by_key.setdefault(key, value) == value
    assert len(by_key) == len(_read(out, "billing_realtime"))


def test_two_schema_versions_are_both_aggregated_even_one_registered_after_start(
    spark: SparkSession, stack: Any, topics: TopicSettings, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    reg = clients.registry(stack.registry)
    v1 = encoder(stack, topics)
    decoders_at_start = Decoders.fetch(reg, topics.valid)  # v1 only
    v2_schema = json.loads(schema_text(SchemaName.CDR))
    v2_schema["fields"].append(
        {
            "name": "roaming",
            "type": "boolean",
            "default": False,
            "doc": "v2: whether the caller was roaming",
        }
    )
    v2_id = int(reg.register_schema(subject(topics.valid), Schema(json.dumps(v2_schema), "AVRO")))
    assert v2_id != v1.schema_id

    class V2(WireEncoder):
        def encode(self, record: dict[str, Any]) -> bytes:
            return super().encode({**record, "roaming": True})

    v2 = V2(v2_schema, v2_id)
    first = STEPS[0] + STEPS[1]  # nothing late whatever the watermark, up to 10:10
    produce_step(stack.kafka, topics.valid, first, [v1, v2])
    # The job fetched v1 only: the batch fails on v2's id, the job fetches the versions
    # again and redoes the batch from its checkpoint.
    history = drain(spark, stack, settings, topics, decoders=decoders_at_start)
    assert sum(h.undecodable_rows for h in history) == 0
    # A later record moves the watermark past every window of the first records.
    flush = Row(cdr("flush", A, "SMS", 0, at(120), TOWER_1, 3))
    produce_step(stack.kafka, topics.valid, [flush], [v2])
    drain(spark, stack, settings, topics)
    out = Path(settings.output or "")
    everything = [r.record for r in [*first, flush]]
    wm = watermark_after([[*first, flush]])
    got = expected.frame_to_table(_read(out, "billing_realtime"), "caller_num")
    assert got == expected.closed(expected.billing(everything), wm)
    assert _read(out, "late").empty


def test_a_drain_after_a_stop_writes_the_windows_the_last_batch_closed(
    spark: SparkSession, stack: Any, topics: TopicSettings, tmp_path: Path
) -> None:
    """Stopped after a data batch and before the no-data batch its watermark asks for (the
    next trigger is an hour away), a query started again would not run that batch
    without new data. The start logs it in the checkpoint, so the drain writes those
    windows."""
    settings = _settings(tmp_path)
    out = Path(settings.output or "")
    rows = STEPS[0] + STEPS[1]  # one batch, nothing late
    produce_step(stack.kafka, topics.valid, rows, [encoder(stack, topics)])
    handle = start_query(spark, stack, topics, settings, trigger="1 hour")
    ckpt = handle.capture.checkpoint
    try:
        deadline = time.monotonic() + 300
        while ckpt.committed() < 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        handle.stop()
    assert ckpt.newest("offsets") == ckpt.committed() == 0  # no closing batch ran
    assert _read(out, "billing_realtime").empty

    history = drain(spark, stack, settings, topics)
    assert [h.batch_id for h in history if h.billing_rows] == [1]
    records = [r.record for r in rows]
    wm = watermark_after([rows])
    for table, key, compute in (
        ("billing_realtime", "caller_num", expected.billing),
        ("network_realtime", "tower_id", expected.network),
    ):
        want = expected.closed(compute(records), wm)
        assert want
        assert expected.frame_to_table(_read(out, table), key) == want, table
