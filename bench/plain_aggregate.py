"""The plain documented Spark query that ``bench.aggregate`` sets beside the job.

    .venv/bin/python -m bench.plain_aggregate --topic T --output O --checkpoint C [--read-only]

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
``KAPPA_AGGREGATE_*``). The trigger is Spark's ``availableNow``, as the job's
``--available-now``: each query reads what the topic holds, runs the no-data batch
that emits the windows the last watermark closed, and stops. Prints one JSON line
with what the queries reported; the Parquet files are the figures
(``bench.aggregate`` reads their times and rows).

``--read-only`` is the floor under both: one query that reads the topic and
decodes every value (same session, read options and decoding) into Spark's
``noop`` sink, nothing else; its JSON line has ``query_ended`` (``time.time()``
when the query stopped), which the bench subtracts from the process start.
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


def start(
    spark: SparkSession,
    table: Table,
    cdrs: DataFrame,
    params: Params,
    *,
    output: str,
    checkpoint: str,
) -> StreamingQuery:
    """``table``'s windows over watermarked ``cdrs``, appended to Parquet."""
    return (
        table.compute(cdrs, params)
        .writeStream.queryName(f"plain-{table.name}")
        .format("parquet")
        .outputMode("append")
        .option("checkpointLocation", f"{checkpoint}/{table.folder}")
        .trigger(availableNow=True)
        .start(f"{output}/{table.folder}")
    )


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
    ap.add_argument(
        "--read-only", action="store_true", help="only read and decode the topic (the floor)"
    )
    args = ap.parse_args()
    began = time.perf_counter()
    settings = AggregateSettings()
    spark = session(settings, StackSettings(), app_name="bench-plain-aggregate")
    configure_state_store(spark, settings)
    decoders = Decoders.fetch(clients.registry(RegistrySettings()), args.topic)
    params = Params.from_settings(settings)
    queries: list[StreamingQuery] = []
    try:
        if args.read_only:
            framed = decode(kafka_source(spark, KafkaSettings(), args.topic, settings), decoders)
            queries.append(
                framed.select("decoded")
                .writeStream.queryName("read-decode")
                .format("noop")
                .option("checkpointLocation", f"{args.checkpoint}/read-decode")
                .trigger(availableNow=True)
                .start()
            )
        for table in () if args.read_only else (BILLING, NETWORK):
            cdrs = (
                decode(kafka_source(spark, KafkaSettings(), args.topic, settings), decoders)
                .where(sf.col("decoded").isNotNull())
                .select("decoded.*")
                .withColumn("call_type", sf.col("call_type").cast("string"))
                .withWatermark("event_time", settings.watermark)
            )
            queries.append(
                start(spark, table, cdrs, params, output=args.output, checkpoint=args.checkpoint)
            )
        for query in queries:
            query.awaitTermination()
        ended = time.time()
    finally:
        for query in queries:
            query.stop()
    figures = {q.name: summary(q) for q in queries}
    spark.stop()
    print(
        json.dumps(
            {
                "queries": figures,
                "query_ended": ended,
                "seconds_inside": time.perf_counter() - began,
            }
        )
    )


if __name__ == "__main__":
    main()
