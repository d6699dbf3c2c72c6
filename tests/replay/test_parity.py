"""``kappa parity`` after a streamed run with late records: every difference is explained."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as sf

from cli import main
from kappa.settings import AggregateSettings, ReplaySettings, TopicSettings
from replay import parity, runner
from streams.aggregate.tables import BILLING
from tests.harness.stack import StackHandle, TopicFactory
from tests.streams.aggregate.dataset import (
    STEPS,
    T0,
    TOWER_1,
    TOWER_2,
    A,
    B,
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

START, END = T0, at(60)  # [10:00, 11:00)


def replay_settings(
    stack: StackHandle, topics: TopicSettings, settings: AggregateSettings, tmp_path: Path
) -> runner.Settings:
    """What parity reads: the test stack, these topics, the aggregation's settings."""
    return runner.Settings(
        kafka=stack.kafka,
        registry=stack.registry,
        topics=topics,
        stack=stack.stack_settings,
        aggregate=settings,
        replay=ReplaySettings(output=str(tmp_path / "replay"), progress=False),
    )


@pytest.fixture(scope="module")
def streamed(
    spark: SparkSession, stack: StackHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[runner.Settings, TopicSettings]]:
    """The aggregation's fixed dataset streamed once through ``kappa aggregate``'s query,
    transactions, out-of-order and late records included."""
    tmp_path = tmp_path_factory.mktemp("parity")
    topic = TopicFactory(stack.kafka, stack.topics)
    topics = single_partition_topics(topic)
    settings = AggregateSettings(
        shuffle_partitions=2,
        trigger="200 milliseconds",
        output=str(tmp_path / "aggregate"),
        checkpoint_dir=tmp_path / "ckpt",
    )
    enc = encoder(stack, topics)
    handle = start_query(spark, stack, topics, settings)
    try:
        for i, step in enumerate(STEPS):
            produce_step(stack.kafka, topics.valid, step, [enc])
            settle(handle, watermark_after(STEPS[: i + 1]))
    finally:
        handle.stop()
    s = replay_settings(stack, topics, settings, tmp_path)
    yield s, topics
    topic.cleanup()


def test_parity_explains_every_difference_by_late_records(
    streamed: tuple[runner.Settings, TopicSettings],
    spark: SparkSession,
    stack: StackHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s, topics = streamed
    report = parity.compare(spark, s, START, END, topic=topics.valid)
    assert report.unexplained == []
    late = {(r.record["call_id"]) for step in STEPS for r in step if r.late}
    assert report.late_records == len(late)
    # Each late record left its caller's and its tower's window short in the stream.
    got = {(d.table, d.window_start, d.key) for d in report.explained}
    want = set()
    for step in STEPS:
        for r in step:
            if r.late:
                t = r.record["event_time"]
                ws = t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)
                w = ws.strftime("%Y-%m-%dT%H:%M:%SZ")
                want |= {
                    ("billing", w, r.record["caller_num"]),
                    ("network", w, r.record["tower_id"]),
                }
    assert got == want
    assert report.matching["billing"] > 0
    assert report.matching["network"] > 0

    # The command: exit status 0, says so.
    for name, value in {
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
    }.items():
        monkeypatch.setenv(name, value)
    code: Any = 0
    try:
        main(
            [
                "parity",
                "--from",
                "2026-03-01T10:00:00Z",
                "--to",
                "2026-03-01T11:00:00Z",
                "--aggregate-output",
                str(s.aggregate.output),
                "--topic",
                topics.valid,
            ]
        )
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr().out
    assert code in (0, None), out
    assert "no unexplained difference" in out


def test_parity_flags_a_difference_late_records_do_not_explain(
    streamed: tuple[runner.Settings, TopicSettings], spark: SparkSession, tmp_path: Path
) -> None:
    s, topics = streamed
    copy = tmp_path / "aggregate"
    shutil.copytree(str(s.aggregate.output), copy)
    s = dataclasses.replace(s, aggregate=s.aggregate.model_copy(update={"output": str(copy)}))
    billing = f"{copy}/{BILLING.folder}"
    # A window row written twice by the stream (the latest window: no late record in it).
    row: Any = spark.read.parquet(billing).orderBy(sf.desc("window_start"), "caller_num").limit(1)
    row.write.mode("append").parquet(billing)
    report = parity.compare(spark, s, START, END, topic=topics.valid)
    assert len(report.unexplained) == 1
    assert report.unexplained[0].table == "billing"
    assert "2 rows in the stream output" in report.unexplained[0].reason
    assert len(report.explained) == 6  # the late records' windows, as before


def test_parity_explains_records_past_the_margin_the_stream_had_on_time(
    spark: SparkSession, stack: StackHandle, tmp_path: Path
) -> None:
    """A stream rebuilt from the topic reads its backlog in one batch: a record produced
    after the replay's lateness margin is on time for it, but past the replay's offsets."""
    topic = TopicFactory(stack.kafka, stack.topics)
    topics = single_partition_topics(topic)
    try:
        enc = encoder(stack, topics)
        rows = [
            Row(cdr("m1", A, "VOICE", 61, at(1), TOWER_1, 2)),
            Row(cdr("m2", B, "SMS", 0, at(7), TOWER_2, 4)),
            Row(cdr("m3", A, "VOICE", 30, at(90), TOWER_1, 3)),  # past 11:00 + 15 min
            Row(cdr("m4", B, "VOICE", 45, at(8), TOWER_2, 1)),  # arrives after m3
        ]
        produce_step(stack.kafka, topics.valid, rows, [enc])
        settings = AggregateSettings(
            shuffle_partitions=2,
            output=str(tmp_path / "aggregate"),
            checkpoint_dir=tmp_path / "ckpt",
        )
        drain(spark, stack, settings, topics)
        s = replay_settings(stack, topics, settings, tmp_path)
        report = parity.compare(spark, s, START, END, topic=topics.valid)
    finally:
        topic.cleanup()
    assert report.unexplained == []
    got = {(d.table, d.window_start, d.key, d.beyond_margin_records) for d in report.explained}
    assert got == {
        ("billing", "2026-03-01T10:05:00Z", B, 1),
        ("network", "2026-03-01T10:05:00Z", TOWER_2, 1),
    }
    assert all("after the replay's lateness margin" in d.reason for d in report.explained)
