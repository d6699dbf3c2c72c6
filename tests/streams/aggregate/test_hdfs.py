"""The streaming job keeps its checkpoint (and Spark's window state) on hdfs:// and
writes its tables there; they read back exact, bytes that are not a record land in
``undecodable/``, and a restart resumes from the HDFS checkpoint."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from kappa import clients
from kappa.settings import AggregateSettings, TopicSettings
from schemas.contract import SchemaName, parsed_schema, register, schema_text, subject
from schemas.wire import WireEncoder
from tests.harness.stack import HdfsHandle
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
        shuffle_partitions=2, checkpoint_dir=f"{root}/_checkpoint", output=root
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
    # Spark's state and offset log are on HDFS, not in a local folder named "hdfs:".
    jvm: Any = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{root}/_checkpoint/state/0")
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    assert path.getFileSystem(conf).exists(path)
    assert not Path("hdfs:").exists()
    # A restart resumes from the HDFS checkpoint: the next step's late rows are judged
    # against the watermark kept there, nothing is counted twice.
    produce_step(
        stack.kafka, topics.valid, STEPS[2], [WireEncoder(parsed_schema(SchemaName.CDR), sid)]
    )
    drain(spark, stack, settings, topics)
    everything = [r.record for r in rows + STEPS[2] if not r.late]
    wm = watermark_after([rows + STEPS[2]])
    got = spark.read.parquet(f"{root}/billing_realtime").toPandas()
    assert expected.frame_to_table(got, "caller_num") == expected.closed(
        expected.billing(everything), wm
    )
    late = {r.call_id for r in spark.read.parquet(f"{root}/late").collect()}
    assert late == {r.record["call_id"] for r in STEPS[2] if r.late}
