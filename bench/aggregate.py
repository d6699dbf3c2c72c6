"""Benchmark of the aggregation job: drain a pre-loaded cdr.valid, records/s and batch latency.

    .venv/bin/python -m bench.aggregate [--records N] [--batch N] [--large-batch N]

Loads N valid CDRs (default 5,000,000; KAPPA_BENCH_AGGREGATE_RECORDS) into a fresh
topic, then drains it twice with the same Spark session, each time from a fresh
checkpoint with ``availableNow`` and ``maxOffsetsPerTrigger``:

- ``aggregate``: the job's query (one Kafka scan, decode, billing + tower
  windows in one aggregation merged with the open windows, late capture,
  Parquet + Kafka sinks, window state under the checkpoint);
- ``baseline``: the same query without the windowed aggregation (one Kafka scan,
  decode, the watermark and the late/undecodable split, counted per kind; no
  windows, no state, nothing to write).

The ratio aggregate/baseline isolates what the windowed state costs. Both then
run again with a larger ``maxOffsetsPerTrigger`` (``--large-batch``, 1M) and
with none (``--whole-backlog``: the job's default, the whole backlog in one
micro-batch, what ``kappa aggregate`` does when started behind a full topic): the
aggregation pays a fixed cost per micro-batch (merging with the open windows,
the sink writes), so the rate depends on the batch size chosen. Uses the
stack at KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL when set, else starts
a local one on free ports. Writes bench/results/aggregate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import CdrLoader
from kappa.settings import AggregateSettings, StackSettings, TopicSettings
from kappa.stack.testing import running_stack
from kappa.stack.topics import delete_topics, ensure_topics
from streams.aggregate import job
from streams.spark import session

RESULTS = Path(__file__).parent / "results" / "aggregate.json"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WARMUP_RECORDS = 200_000


def load(kafka: Any, registry: Any, topic: str, n: int, seed: int = 7) -> float:
    """Produce ``n`` valid CDRs, 2 ms of event time apart; returns seconds."""
    loader = CdrLoader(kafka, registry, topic)
    rnd = random.Random(seed)
    types = ("VOICE",) * 6 + ("SMS",) * 3 + ("DATA",)
    began = time.perf_counter()
    for i in range(n):
        t = T0 + timedelta(milliseconds=2 * i)
        call_type = types[rnd.randrange(10)]
        rec = {
            "call_id": f"{i:012d}",
            "caller_num": f"+9477{rnd.randrange(5000):07d}",
            "callee_num": f"+9477{rnd.randrange(5000):07d}",
            "call_type": call_type,
            "duration_sec": 0 if call_type == "SMS" else rnd.randrange(1, 600),
            "event_time": t,
            "tower_id": f"TWR-{rnd.randrange(50):04d}",
            "signal_strength": rnd.randrange(1, 6),
            "data_volume_kb": rnd.randrange(1, 50_000) if call_type == "DATA" else 0,
        }
        loader.send(rec, int(t.timestamp() * 1000))
    loader.flush()
    return time.perf_counter() - began


def drain(
    spark: Any,
    settings: AggregateSettings,
    stack: Any,
    topics: TopicSettings,
    work: Path,
    records: int,
    *,
    aggregate: bool,
) -> dict[str, Any]:
    name = "aggregate" if aggregate else "baseline"
    s = settings.model_copy(
        update={"output": str(work / name / "out"), "checkpoint_dir": work / name / "ckpt"}
    )
    began = time.perf_counter()
    handle = job.start(
        spark,
        s,
        kafka=stack.kafka,
        registry=stack.registry,
        topics=topics,
        stack=StackSettings(),
        available_now=True,
        aggregate=aggregate,
    )
    handle.query.awaitTermination()
    seconds = time.perf_counter() - began
    progress = [p for p in handle.query.recentProgress if p.get("numInputRows")]
    # numInputRows counts each scan of the source (a batch with late or undecodable
    # rows reads its range twice); the records drained are the topic's.
    scanned = sum(int(p["numInputRows"]) for p in handle.query.recentProgress)
    rows = records
    batch_s = sorted(p["durationMs"]["triggerExecution"] / 1000 for p in progress)
    return {
        "query": name,
        "records": rows,
        "rows_scanned": scanned,
        "seconds": round(seconds, 2),
        "records_per_s": round(rows / seconds, 1) if seconds else None,
        "batches_with_data": len(progress),
        "batch_seconds_median": batch_s[len(batch_s) // 2] if batch_s else None,
        "batch_seconds_max": batch_s[-1] if batch_s else None,
        "processed_rows_per_s_median": sorted(
            p.get("processedRowsPerSecond") or 0 for p in progress
        )[len(progress) // 2]
        if progress
        else None,
        "billing_rows": sum(h.billing_rows for h in handle.history),
        "network_rows": sum(h.network_rows for h in handle.history),
        "late_rows": sum(h.late_rows for h in handle.history),
    }


def drain_both(
    spark: Any,
    settings: AggregateSettings,
    stack: Any,
    topics: TopicSettings,
    work: Path,
    records: int,
) -> list[dict[str, Any]]:
    """``drain`` the baseline, then the aggregate, with the same settings."""
    runs = []
    for aggregate in (False, True):
        r = drain(spark, settings, stack, topics, work, records, aggregate=aggregate)
        print(json.dumps(r), flush=True)
        runs.append(r)
    return runs


def compared(max_offsets: int | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    baseline, agg = runs
    return {
        "max_offsets_per_trigger": max_offsets,
        "baseline": baseline,
        "aggregate": agg,
        "ratio_aggregate_to_baseline_records_per_s": round(
            agg["records_per_s"] / baseline["records_per_s"], 3
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--records",
        type=int,
        default=int(os.environ.get("KAPPA_BENCH_AGGREGATE_RECORDS", "5000000")),
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=500_000,
        help="maxOffsetsPerTrigger of the main figures (latency-oriented)",
    )
    ap.add_argument(
        "--large-batch",
        type=int,
        default=1_000_000,
        help="a second, larger maxOffsetsPerTrigger run for both queries (0: skip): "
        "how the fixed cost per micro-batch amortizes",
    )
    ap.add_argument(
        "--whole-backlog",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also drain both queries without maxOffsetsPerTrigger (the job's default)",
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    ap.add_argument(
        "--shuffle-partitions", type=int, default=2, help="spark.sql.shuffle.partitions"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kappa-bench-aggregate-"))
    with ExitStack() as stack_ctx:
        stack = stack_ctx.enter_context(running_stack(work / "stack", environ=os.environ))
        base = TopicSettings()
        suffix = uuid.uuid4().hex[:8]
        topics = TopicSettings(
            valid=f"bench.valid.{suffix}",
            billing=f"bench.billing.{suffix}",
            network=f"bench.network.{suffix}",
            late=f"bench.late.{suffix}",
        )
        warm = topics.model_copy(update={"valid": f"bench.warmup.{suffix}"})
        every = [topics.valid, warm.valid, topics.billing, topics.network, topics.late]
        ensure_topics(stack.kafka, every, partitions=base.partitions, retention_ms=-1)
        try:
            warmup = min(WARMUP_RECORDS, args.records)
            load(stack.kafka, stack.registry, warm.valid, warmup)
            print(f"loading {args.records:,} CDRs into {topics.valid} ...", flush=True)
            load_s = load(stack.kafka, stack.registry, topics.valid, args.records)
            print(f"loaded in {load_s:.1f} s ({args.records / load_s:,.0f}/s)", flush=True)
            settings = AggregateSettings(
                max_offsets_per_trigger=args.batch,
                shuffle_partitions=args.shuffle_partitions,
                driver_memory="4g",
            )
            load_before = os.getloadavg()
            t = time.perf_counter()
            spark = session(settings, StackSettings(), app_name="kappa-bench-aggregate")
            startup_s = time.perf_counter() - t
            # Both queries once over a small topic first: the JVM's just-in-time compiler
            # would otherwise slow whichever query runs first.
            for aggregate in (False, True):
                drain(spark, settings, stack, warm, work / "warmup", warmup, aggregate=aggregate)
            runs = drain_both(spark, settings, stack, topics, work, args.records)
            large = []
            if args.large_batch:
                big = settings.model_copy(update={"max_offsets_per_trigger": args.large_batch})
                large = drain_both(spark, big, stack, topics, work / "large", args.records)
            whole = []
            if args.whole_backlog:
                backlog = settings.model_copy(update={"max_offsets_per_trigger": None})
                whole = drain_both(spark, backlog, stack, topics, work / "whole", args.records)
            load_after = os.getloadavg()
            spark.stop()
        finally:
            delete_topics(stack.kafka, every)
    baseline, agg = runs
    result = {
        "bench": "aggregate",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "records": args.records,
        "max_offsets_per_trigger": args.batch,
        "shuffle_partitions": args.shuffle_partitions,
        "load_average_1m": {
            "before_drains": round(load_before[0], 2),
            "after_drains": round(load_after[0], 2),
        },
        "load_seconds": round(load_s, 1),
        "spark_startup_seconds": round(startup_s, 1),
        "baseline": baseline,
        "aggregate": agg,
        "ratio_aggregate_to_baseline_records_per_s": round(
            agg["records_per_s"] / baseline["records_per_s"], 3
        )
        if agg["records_per_s"] and baseline["records_per_s"]
        else None,
    }
    if large:
        result["large_batch"] = compared(args.large_batch, large)
    if whole:
        result["whole_backlog"] = compared(None, whole)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
