"""The plain documented Spark query that ``bench.aggregate`` sets beside the job.

    .venv/bin/python -m bench.plain_aggregate --topic T --output O --checkpoint C

What Spark's guide shows for windowed aggregation over Kafka, nothing more: per
table one query, ``spark.readStream.format("kafka")`` on the topic, the project's
own decoding (``streams.aggregate.decode``: the comparison isolates the stateful
part), ``withWatermark("event_time", <watermark>)``, then
``groupBy(window(event_time), key).agg(...)`` (``Table.compute``: the same
measures as the job) written with ``writeStream.format("parquet")`` in append
mode to ``<output>/<table folder>`` with its own checkpoint. Two queries:
billing per caller and network health per tower, each reading the topic itself.

The session, the read options and the state store are the job's
(``streams.spark.session``, ``job.configure_state_store``, the settings from
``KAPPA_AGGREGATE_*``). The trigger is a processing time of one second; both
queries stop once each has committed the no-data batch that emits the windows
the last watermark closed and nothing has moved for a few seconds (Spark's
``availableNow`` would stop before that batch; ``job.drain`` does the same).
Prints one JSON line with what the queries reported; the Parquet files are the
figures (``bench.aggregate`` reads their times and rows).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.streaming.query import StreamingQuery

from kappa import clients
from kappa.settings import AggregateSettings, KafkaSettings, RegistrySettings, StackSettings
from streams.aggregate.decode import Decoders, decode
from streams.aggregate.job import configure_state_store, kafka_source
from streams.aggregate.tables import BILLING, NETWORK, Params, Table
from streams.spark import session

POLL_S = 0.25


def start(
    spark: SparkSession,
    table: Table,
    cdrs: DataFrame,
    params: Params,
    *,
    output: str,
    checkpoint: str,
    trigger: str,
) -> StreamingQuery:
    """``table``'s windows over watermarked ``cdrs``, appended to Parquet."""
    return (
        table.compute(cdrs, params)
        .writeStream.queryName(f"plain-{table.name}")
        .format("parquet")
        .outputMode("append")
        .option("checkpointLocation", f"{checkpoint}/{table.folder}")
        .trigger(processingTime=trigger)
        .start(f"{output}/{table.folder}")
    )


def _newest_batch(query: StreamingQuery) -> int:
    progress = query.lastProgress
    return int(progress["batchId"]) if progress else -1


def drain(queries: list[StreamingQuery], stable_s: float) -> None:
    """Return once every query has read all offsets, committed its newest batch (the
    no-data batch that closes windows) and nothing moved for ``stable_s``."""
    while True:
        for query in queries:
            query.processAllAvailable()
        newest = [_newest_batch(q) for q in queries]
        waited = 0.0
        while waited < stable_s:
            time.sleep(POLL_S)
            waited += POLL_S
            if any(q.status["isTriggerActive"] for q in queries):
                break
            if [_newest_batch(q) for q in queries] != newest:
                break
        else:
            return


def summary(query: StreamingQuery) -> dict[str, Any]:
    progress = query.recentProgress
    return {
        "batches": len(progress),
        "batches_with_data": sum(1 for p in progress if p["numInputRows"]),
        "input_rows": sum(int(p["numInputRows"]) for p in progress),
        "rows_dropped_by_watermark": sum(
            int(op.get("numRowsDroppedByWatermark", 0))
            for p in progress
            for op in p["stateOperators"]
        ),
        "batch_seconds": [round(p["durationMs"]["triggerExecution"] / 1000, 2) for p in progress],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topic", required=True, help="the cdr.valid-like topic to read")
    ap.add_argument("--output", required=True, help="root of the Parquet tables")
    ap.add_argument("--checkpoint", required=True, help="root of the two checkpoints")
    ap.add_argument("--trigger", default="1 second", help="processing-time trigger")
    ap.add_argument("--stable-seconds", type=float, default=3.0, help="quiet time before stopping")
    args = ap.parse_args()
    began = time.perf_counter()
    settings = AggregateSettings()
    spark = session(settings, StackSettings(), app_name="bench-plain-aggregate")
    configure_state_store(spark, settings)
    decoders = Decoders.fetch(clients.registry(RegistrySettings()), args.topic)
    params = Params.from_settings(settings)
    queries: list[StreamingQuery] = []
    try:
        for table in (BILLING, NETWORK):
            framed = decode(kafka_source(spark, KafkaSettings(), args.topic, settings), decoders)
            cdrs = (
                framed.where(sf.col("decoded").isNotNull())
                .select("decoded.*")
                .withColumn("call_type", sf.col("call_type").cast("string"))
                .withWatermark("event_time", settings.watermark)
            )
            queries.append(
                start(
                    spark,
                    table,
                    cdrs,
                    params,
                    output=args.output,
                    checkpoint=args.checkpoint,
                    trigger=args.trigger,
                )
            )
        drain(queries, args.stable_seconds)
    finally:
        for query in queries:
            query.stop()
    figures = {q.name: summary(q) for q in queries}
    spark.stop()
    print(json.dumps({"queries": figures, "seconds_inside": time.perf_counter() - began}))


if __name__ == "__main__":
    main()
