"""Benchmark of the replay: N records in range to Parquet, wall time including Spark start-up.

    .venv/bin/python -m bench.replay [--records N] [--partitions P] [--repeat R]

Loads N valid CDRs (default 10,000,000; KAPPA_BENCH_REPLAY_RECORDS) spread over a
six-hour event-time range into a fresh topic, plus 1% on either side of it, the
message timestamp being the event time. Then, each in a fresh process (so each
pays the JVM and Spark start-up):

- ``baseline``: Spark reads the same planned offsets and writes them to Parquet
  unaggregated (key, value, partition, offset, timestamp), nothing else;
- ``replay``: ``kappa replay --from --to``: plan, decode, exact event-time
  filter, cdr/ by date and hour, billing_report/, network_health/, manifest.

Both run R times (default 3), alternating, and the medians are compared: the
machine's speed drifts by a third between quiet spells and busy ones, and
alternating makes a slow spell weigh on both. The ratio replay/baseline is what
decoding, filtering, partitioning and the two aggregations cost on top of
reading and writing the same bytes. Uses the stack
at KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL when set, else starts one.
Writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import CdrLoader, bench_stack, write_results
from kappa.progress import ProgressLine
from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    ReplaySettings,
    StackSettings,
)
from replay.plan import ReplayPlan, iso, plan
from replay.read import read_kafka, read_tasks
from stack.topics import delete_topics, ensure_topics

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = T1 + timedelta(hours=6)
MARGIN = timedelta(minutes=15)
CALLERS = [f"+9477{i:07d}" for i in range(5000)]
TOWERS = [f"TOWER_{i:03d}" for i in range(1, 51)]
TYPES = ("VOICE",) * 6 + ("SMS",) * 3 + ("DATA",)
DRIVER_MEMORY = os.environ.get("KAPPA_AGGREGATE_DRIVER_MEMORY", "4g")


def load(kafka: KafkaSettings, registry: RegistrySettings, topic: str, n: int) -> tuple[int, float]:
    """``n`` records in [T1, T2) plus 1% before and 1% after; (records written, seconds)."""
    loader = CdrLoader(kafka, registry, topic)
    span_ms = int((T2 - T1).total_seconds() * 1000)
    edge = max(1, n // 100)
    t1_ms = int(T1.timestamp() * 1000)
    began = time.perf_counter()
    with ProgressLine("loaded", n + 2 * edge, unit="CDRs") as line:
        for i in range(-edge, n + edge):
            ms = t1_ms + (i * span_ms) // n if i >= 0 else t1_ms - (-i * 600_000) // edge
            if i >= n:
                ms = t1_ms + span_ms + ((i - n) * 600_000) // edge
            call_type = TYPES[i % 10]
            rec = {
                "call_id": f"b-{i}",
                "caller_num": CALLERS[(i * 7919) % 5000],
                "callee_num": CALLERS[(i * 104729 + 1) % 5000],
                "call_type": call_type,
                "duration_sec": 0 if call_type == "SMS" else (i * 31) % 1800,
                "event_time": ms,
                "tower_id": TOWERS[(i * 13) % 50],
                "signal_strength": 1 + (i * 17) % 5,
                "data_volume_kb": (i * 101) % 20_000 if call_type == "DATA" else 0,
            }
            loader.send(rec, ms)
            if not i & 4095:
                line.update(i + edge + 1)
    loader.flush()
    return loader.sent, time.perf_counter() - began


def baseline_child(spec: str) -> None:
    """In a fresh process: Spark reads the planned offsets and writes them unaggregated."""
    began = time.perf_counter()
    args = json.loads(spec)
    from streams.spark import session

    spark = session(AggregateSettings(), StackSettings(), app_name="bench-replay-baseline")
    kafka = KafkaSettings()
    df = read_kafka(
        spark, kafka, args["assign"], args["starting"], args["ending"], tasks=args["tasks"]
    ).select("key", "value", "partition", "offset", "timestamp")
    df.write.mode("overwrite").parquet(args["output"])
    rows = spark.read.parquet(args["output"]).count()
    spark.stop()
    print(json.dumps({"rows": rows, "seconds_inside": time.perf_counter() - began}))


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        msg = f"{cmd[:4]} failed with {done.returncode}"
        raise SystemExit(msg)
    return seconds, done.stdout


def _median(values: Iterable[float]) -> float:
    return round(statistics.median(values), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--records", type=int, default=int(os.environ.get("KAPPA_BENCH_REPLAY_RECORDS", "10000000"))
    )
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="baseline and replay run this many times, alternating; medians are reported",
    )
    ap.add_argument("--baseline-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_child:
        baseline_child(args.baseline_child)
        return
    with bench_stack() as stack, tempfile.TemporaryDirectory(prefix="kappa-bench-replay-") as tmp:
        topic = f"bench.replay.{int(time.time())}"
        ensure_topics(stack.kafka, [topic], partitions=args.partitions, retention_ms=-1)
        try:
            written, load_s = load(stack.kafka, stack.registry, topic, args.records)
            print(f"loaded {written:,} records in {load_s:.1f} s", flush=True)
            the_plan: ReplayPlan = plan(stack.kafka, topic, T1, T2, MARGIN)
            env = {
                **os.environ,
                "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
                "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
                "KAPPA_REPLAY_PROGRESS": "false",
                "KAPPA_REPLAY_METRICS_PORT": "0",
                "KAPPA_LOG_LEVEL": "WARNING",
                # local mode: the driver is all of Spark; the decoded range is cached once.
                "KAPPA_AGGREGATE_DRIVER_MEMORY": DRIVER_MEMORY,
            }
            spec = json.dumps(
                {
                    "assign": the_plan.assign_json(),
                    "starting": the_plan.starting_offsets_json(),
                    "ending": the_plan.ending_offsets_json(),
                    "tasks": read_tasks(the_plan, ReplaySettings().records_per_task),
                    "output": str(Path(tmp) / "baseline"),
                }
            )
            kappa = str(Path(sys.executable).parent / "kappa")
            replay_cmd = [
                kappa,
                "replay",
                "--from",
                iso(T1),
                "--to",
                iso(T2),
                "--topic",
                topic,
                "--json",
                "--output",
                str(Path(tmp) / "replay"),
            ]
            base_runs, replay_runs = [], []
            for i in range(args.repeat):
                # Alternating, so that a slow spell of the machine weighs on both.
                base_s, base_out = _run(
                    [sys.executable, "-m", "bench.replay", "--baseline-child", spec], env
                )
                base = json.loads(base_out.strip().splitlines()[-1])
                base_runs.append({"wall_seconds": round(base_s, 1), "rows": base["rows"]})
                print(f"[{i + 1}] baseline: {base['rows']:,} rows in {base_s:.1f} s", flush=True)
                replay_s, out = _run(replay_cmd, env)
                manifest = json.loads(out[out.index("{") :])
                records = manifest["counts"]["records"]
                replay_runs.append(
                    {
                        "wall_seconds": round(replay_s, 1),
                        "inside_job_seconds": manifest["summary"]["seconds"],
                        "stage_seconds": manifest["summary"].get("stage_seconds", {}),
                    }
                )
                print(f"[{i + 1}] replay: {records:,} records in {replay_s:.1f} s", flush=True)
        finally:
            delete_topics(stack.kafka, [topic])
    write_results(
        "replay",
        {
            "records_in_range": records,
            "records_loaded": written,
            "offsets_read": the_plan.offsets_to_read,
            "partitions": args.partitions,
            "spark": {
                "master": AggregateSettings().master,
                "driver_memory": DRIVER_MEMORY,
                "read_tasks": read_tasks(the_plan, ReplaySettings().records_per_task),
            },
            "load_seconds": round(load_s, 1),
            "runs": args.repeat,
            "replay": {
                "wall_seconds_median": _median(r["wall_seconds"] for r in replay_runs),
                "records_per_second_median": round(
                    records / _median(r["wall_seconds"] for r in replay_runs)
                ),
                "runs": replay_runs,
            },
            "baseline_read_write_unaggregated": {
                "wall_seconds_median": _median(r["wall_seconds"] for r in base_runs),
                "rows": base_runs[-1]["rows"],
                "runs": base_runs,
            },
            "ratio_replay_to_baseline": round(
                _median(r["wall_seconds"] for r in replay_runs)
                / _median(r["wall_seconds"] for r in base_runs),
                2,
            ),
            "ratio_per_run": [
                round(r["wall_seconds"] / b["wall_seconds"], 2)
                for r, b in zip(replay_runs, base_runs, strict=True)
            ],
            "note": (
                "wall times of fresh processes, Spark start-up included; local[2]; baseline "
                "and replay alternate, medians of the runs; the machine is shared, see "
                "load_average_1m"
            ),
        },
    )


if __name__ == "__main__":
    main()
