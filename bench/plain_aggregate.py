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
(``streams.spark.session``, ``query.configure_state_store``, the settings from
``KAPPA_AGGREGATE_*``). The trigger is Spark's ``availableNow``, as the job's
``--available-now``: each query reads what the topic holds, runs the no-data batch
that emits the windows the last watermark closed, and stops. Prints one JSON line
with what the queries reported; the Parquet files are the figures
(``bench.aggregate`` reads their times and rows).

``--read-only`` is the floor under both: one query that reads the topic and
decodes every value (same session, read options and decoding) into Spark's
``noop`` sink, nothing else; its JSON line has ``query_ended`` (``time.time()``
when the query stopped), which the bench subtracts from the process start.

``--bare`` is the guide's example at its smallest, a reference for what this
machine can do at all: one ``from_avro`` of the payload with the reader schema,
no explode, billing's sums per caller and per tower only the event count, average
and low-signal count (no set of callers: not the job's rows, the same windows and
keys). Two queries, Parquet sinks, same session, read options and state store.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.avro.functions import from_avro
from pyspark.sql.streaming.query import StreamingQuery

from kappa import clients
from kappa.settings import AggregateSettings, KafkaSettings, RegistrySettings, StackSettings
from schemas.contract import SchemaName, schema_text
from streams.aggregate.decode import Decoders, decode
from streams.aggregate.query import configure_state_store, kafka_source
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


def _when_type(call_type: str, value: Column) -> Column:
    return sf.when(sf.col("call_type") == sf.lit(call_type), value).otherwise(sf.lit(0))


def bare_tables(cdrs: DataFrame, params: Params) -> dict[Table, DataFrame]:
    """The ``--bare`` queries' plans over watermarked ``cdrs``, by the table whose
    folder they write."""
    window = sf.window("event_time", params.window).alias("window")
    billing = cdrs.groupBy(window, "caller_num").agg(
        sf.sum(_when_type("VOICE", sf.lit(1))).alias("calls"),
        sf.sum(_when_type("VOICE", sf.col("duration_sec"))).alias("voice_seconds"),
        sf.sum(_when_type("VOICE", sf.expr("(duration_sec + 59) div 60"))).alias(
            "billable_minutes"
        ),
        sf.sum(_when_type("SMS", sf.lit(1))).alias("sms_count"),
        sf.sum("data_volume_kb").alias("data_volume_kb"),
    )
    network = cdrs.groupBy(window, "tower_id").agg(
        sf.count(sf.lit(1)).alias("events"),
        sf.avg("signal_strength").alias("avg_signal"),
        sf.sum(
            sf.when(sf.col("signal_strength") <= sf.lit(params.low_signal_threshold), 1).otherwise(
                0
            )
        ).alias("low"),
    )
    return {BILLING: billing, NETWORK: network}


def start_bare(table: Table, plan: DataFrame, *, output: str, checkpoint: str) -> StreamingQuery:
    return (
        plan.select(sf.col("window.start").alias("window_start"), "*")
        .drop("window")
        .writeStream.queryName(f"bare-{table.name}")
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
    ap.add_argument(
        "--bare",
        action="store_true",
        help="the guide's example at its smallest (one from_avro, no caller set)",
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
        if args.bare:
            payload = sf.expr("substring(value, 6)")
            cdrs = (
                kafka_source(spark, KafkaSettings(), args.topic, settings)
                .select(from_avro(payload, schema_text(SchemaName.CDR)).alias("c"))
                .select("c.*")
                .withWatermark("event_time", settings.watermark)
            )
            for table, plan in bare_tables(cdrs, params).items():
                queries.append(
                    start_bare(table, plan, output=args.output, checkpoint=args.checkpoint)
                )
        for table in () if args.read_only or args.bare else (BILLING, NETWORK):
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
