"""Replay to the local HDFS: what reads back equals the local-path replay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from replay import runner
from replay.fs import HadoopFs
from replay.plan import range_id
from replay.published import open_range
from tests.harness.stack import HdfsHandle, StackHandle
from tests.replay.conftest import DAY, CdrTopic, cdr, minutes, settings_for, unique

pytestmark = [pytest.mark.integration, pytest.mark.spark]

T1, T2 = DAY + minutes(10), DAY + minutes(50)


def rows(spark: SparkSession, path: str, sub: str) -> list[tuple[Any, ...]]:
    df = spark.read.parquet(f"{path}/{sub}")
    return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())


def test_replay_to_hdfs_reads_back_equal_to_the_local_replay(
    cdr_topic: Callable[..., CdrTopic],
    stack: StackHandle,
    hdfs: HdfsHandle,
    spark: SparkSession,
    tmp_path: Path,
) -> None:
    t = cdr_topic()
    types = ("VOICE", "SMS", "DATA")
    t.write(cdr(i, DAY + minutes(i / 3), call_type=types[i % 3]) for i in range(200))
    local_root = tmp_path / "local"
    hdfs_root = hdfs.path("replay", unique())

    local = runner.replay_range(settings_for(stack, local_root), T1, T2, topic=t.name, spark=spark)
    remote = runner.replay_range(settings_for(stack, hdfs_root), T1, T2, topic=t.name, spark=spark)
    assert remote.path == f"{hdfs_root}/{range_id(T1, T2)}/run-{remote.run_id}"
    assert remote.path.startswith("hdfs://")
    for sub in ("cdr", "billing_report", "network_health"):
        assert rows(spark, remote.path, sub) == rows(spark, local.path, sub), sub
    assert remote.counts == local.counts
    assert remote.counts.records == 120
    timings = {"seconds": 0, "seconds_with_startup": 0, "stage_seconds": {}}
    assert remote.summary.to_dict() | timings == local.summary.to_dict() | timings

    # A rerun on HDFS replaces the range: one folder, a new version the pointer names
    # (replaced through the NameNode's rename with overwrite), the previous one kept.
    again = runner.replay_range(settings_for(stack, hdfs_root), T1, T2, topic=t.name, spark=spark)
    fs = HadoopFs(spark, hdfs_root)
    assert fs.children(hdfs_root) == [range_id(T1, T2)]
    assert fs.current(range_id(T1, T2)) == again.path
    assert fs.children(f"{hdfs_root}/{range_id(T1, T2)}") == [
        "CURRENT",
        f"run-{remote.run_id}",
        f"run-{again.run_id}",
    ]
    pub = open_range(hdfs_root, range_id(T1, T2), lambda: spark)
    assert pub.url == again.path
    assert pub.parquet_rows("cdr") == 120
    assert fs.exists(f"{again.path}/_SUCCESS")
    assert again.run_id != remote.run_id
    assert rows(spark, again.path, "cdr") == rows(spark, local.path, "cdr")
