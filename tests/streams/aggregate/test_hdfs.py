"""The streaming job writes its tables to an hdfs:// output; they read back exact,
and bytes that are not a record land in ``undecodable/``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from kappa import clients
from kappa.settings import AggregateSettings, TopicSettings
from kappa.stack.testing import HdfsHandle
from schemas.contract import SchemaName, parsed_schema, register, schema_text, subject
from schemas.wire import WireEncoder
from tests.streams.aggregate import expected
from tests.streams.aggregate.dataset import STEPS, drain, produce_step, watermark_after

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def test_stream_job_writes_the_window_tables_to_hdfs(
    spark: SparkSession, stack: Any, topic: Any, hdfs: HdfsHandle, tmp_path: Path
) -> None:
    topics = TopicSettings(
        valid=topic(partitions=1), billing=topic(partitions=1), network=topic(partitions=1)
    )
    sid = register(
        clients.registry(stack.registry), subject(topics.valid), schema_text(SchemaName.CDR)
    )
    rows = STEPS[0] + STEPS[1]  # one batch: nothing late, windows up to 10:10 close
    produce_step(stack.kafka, topics.valid, rows, [WireEncoder(parsed_schema(SchemaName.CDR), sid)])
    garbage = Producer(stack.kafka.client_config())
    garbage.produce(topics.valid, key=b"junk", value=b"\x00" + sid.to_bytes(4, "big") + b"not avro")
    garbage.flush(30)
    root = hdfs.path("aggregate", uuid.uuid4().hex[:8])
    settings = AggregateSettings(
        shuffle_partitions=2, checkpoint_dir=tmp_path / "ckpt", output=root
    )
    history = drain(spark, stack, settings, topics)
    records = [r.record for r in rows]
    wm = watermark_after([rows])
    want_billing = expected.closed(expected.billing(records), wm)
    assert sum(h.billing_rows for h in history) == len(want_billing) > 0
    assert sum(h.undecodable_rows for h in history) == 1
    assert spark.read.parquet(f"{root}/undecodable").count() == 1
    for table, key, want in (
        ("billing_realtime", "caller_num", want_billing),
        ("network_realtime", "tower_id", expected.closed(expected.network(records), wm)),
    ):
        got = spark.read.parquet(f"{root}/{table}").toPandas()
        assert expected.frame_to_table(got, key) == want, table
