"""A small Spark job on the local cluster, run in its own process by tests/stack/test_cluster.py.

The test session already has its one local-mode SparkSession (tests/fixtures/spark.py)
and a JVM holds one SparkContext, so the standalone-master driver runs here:

    python -m tests.stack.cluster_job '<json: master, bootstrap, topic, output, deps_dir, conf>'

It reads a Kafka topic of the cluster in batch, writes it to Parquet on HDFS, reads that
back, runs one task per slot on every executor, and prints one JSON line of what it saw.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pyspark.sql import functions as sf

from kappa.settings import AggregateSettings, KafkaSettings, StackSettings
from streams.spark import session


def _executors(spark: Any) -> int:
    """Executors registered with the driver (the driver itself not counted)."""
    return int(spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1


def main(raw: str) -> dict[str, Any]:
    args = json.loads(raw)
    spark = session(
        AggregateSettings(driver_memory="512m"),
        StackSettings(deps_dir=Path(args["deps_dir"])),
        app_name="kappa-cluster-test",
        master=args["master"],
        extra_conf=args["conf"],
    )
    try:
        began = time.monotonic()
        deadline = began + 120
        while _executors(spark) < args["executors"] and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"executors after {time.monotonic() - began:.1f} s", file=sys.stderr)
        kafka = KafkaSettings(bootstrap=args["bootstrap"])
        read = (
            spark.read.format("kafka")
            .options(**kafka.spark_options())
            .option("subscribe", args["topic"])
            .option("startingOffsets", "earliest")
            .option("endingOffsets", "latest")
            .load()
            .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value")
        )
        read.write.mode("overwrite").parquet(args["output"])
        back = spark.read.parquet(args["output"])
        counts = back.agg(sf.count("*").alias("rows"), sf.count_distinct("key").alias("keys"))
        rows, keys = counts.first() or (0, 0)

        def where(_: int) -> str:  # nested: pickled by value, executors need no tests package
            time.sleep(0.3)  # long enough that one executor cannot take every task
            return os.getcwd()  # <worker dir>/work/<app id>/<executor id>

        slots = 4 * max(1, _executors(spark))
        dirs = set(spark.sparkContext.parallelize(range(slots), slots).map(where).collect())
        return {"executors": _executors(spark), "rows": rows, "keys": keys, "dirs": sorted(dirs)}
    finally:
        spark.stop()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
