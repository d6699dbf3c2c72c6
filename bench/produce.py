"""Avro CDR throughput of `kappa produce --rate 0` at full speed, against Kafka's own
ProducerPerformance on the same broker, same partitions, same record size and the
same producer settings, in one run.

    .venv/bin/python -m bench.produce [--count N] [--workers 1,2]

What a user sees leads: the command as a user runs it (``kappa produce --rate 0
--count N --workers W --json``, a cold process: imports, schema registration, the
workers' start), timed from its start to its exit, once per worker count. Its own
figure (the send loop to the last delivery) follows, labelled. ProducerPerformance
is timed the same way (a cold JVM). The CPU seconds of each command (its process
and its children, from the kernel's accounting) per record say what limits the
rate on this machine: the broker shares the same cores.

Also measured apart: the generator alone (no Kafka), which bounds what one
Python process can hand to librdkafka.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import bench_stack, write_results
from kappa.settings import StackSettings, TopicSettings
from producers.clock import WallClock
from producers.generator import CdrGenerator
from schemas import SchemaName, WireEncoder, load_schema
from stack.layout import repo_root

PRODUCER_PROPS = {
    "acks": "all",
    "enable.idempotence": "true",
    "linger.ms": "20",
    "batch.size": "1000000",
    "compression.type": "lz4",
}


def generator_only(count: int) -> tuple[float, float]:
    raw = WireEncoder(load_schema(SchemaName.CDR_RAW), 1)
    legacy = WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), 2)
    gen = CdrGenerator(
        seed=1,
        clock=WallClock(),
        encode=raw.encode,
        encode_legacy=legacy.encode,
        fast_header=raw.header,
    )
    size = 0
    started = time.perf_counter()
    for _ in range(count):
        g = gen.next()
        size += len(g.value) + len(g.key or b"")
    seconds = time.perf_counter() - started
    return count / seconds, size / count


class Timed:
    """Wall seconds and CPU seconds (user + system, of the finished children) of a command."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def run(self, cmd: list[str], env: dict[str, str] | None = None) -> str:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=900, env=env
        ).stdout
        self.wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out


def kappa_produce(stack: Any, topic: str, count: int, workers: int) -> dict[str, Any]:
    """``kappa produce --rate 0`` as a user runs it; its figures."""
    kappa = str(Path(sys.executable).with_name("kappa"))
    env = {
        **os.environ,
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
        "KAPPA_PRODUCER_METRICS_PORT": "0",
    }
    cmd = [kappa, "produce", "--rate", "0", "--count", str(count), "--seed", "1"]
    timed = Timed()
    out = timed.run([*cmd, "--workers", str(workers), "--topic", topic, "--json"], env)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["delivered"] == count, summary
    return {
        "workers": workers,
        "command_records_per_s": round(count / timed.wall),
        "command_seconds": round(timed.wall, 2),
        "send_loop_records_per_s": round(summary["rate"]),
        "cpu_us_per_record": round(timed.cpu / count * 1e6, 2),
    }


def java_producer_performance(
    bootstrap: str, topic: str, count: int, record_size: int
) -> dict[str, Any]:
    deps = StackSettings().deps_dir
    jars = (deps if deps.is_absolute() else repo_root() / deps) / "jvm" / "kafka"
    props = [f"bootstrap.servers={bootstrap}", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items())]
    cmd = [
        "java",
        "-Xmx1g",
        "-cp",
        f"{jars}/*",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(count),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        *props,
    ]
    timed = Timed()
    out = timed.run(cmd)
    last = [line for line in out.splitlines() if "records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec", last)
    if match is None:
        msg = f"unexpected ProducerPerformance output: {last}"
        raise RuntimeError(msg)
    return {
        "command_records_per_s": round(count / timed.wall),
        "command_seconds": round(timed.wall, 2),
        "send_loop_records_per_s": round(float(match.group(1))),
        "cpu_us_per_record": round(timed.cpu / count * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument(
        "--workers", default="1,2", help="worker counts of kappa produce, comma-separated"
    )
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    gen_rate, record_bytes = generator_only(min(args.count, 500_000))
    with bench_stack() as stack:
        suffix = secrets.token_hex(4)
        topics = TopicSettings()
        from stack.topics import ensure_topics

        names = [f"bench.produce.{suffix}.{w}" for w in worker_counts]
        java_topic = f"bench.java.{suffix}"
        ensure_topics(
            stack.kafka,
            [*names, java_topic],
            partitions=topics.partitions,
            retention_ms=topics.retention_ms,
        )
        java = java_producer_performance(
            stack.kafka.bootstrap, java_topic, args.count, round(record_bytes)
        )
        runs = [
            kappa_produce(stack, name, args.count, w)
            for name, w in zip(names, worker_counts, strict=True)
        ]
    best = max(runs, key=lambda r: r["command_records_per_s"])
    write_results(
        "produce",
        {
            "records": args.count,
            "record_bytes": round(record_bytes, 1),
            "producer_settings": PRODUCER_PROPS,
            "kappa_produce": runs,
            "java_producer_performance": java,
            "best_workers": best["workers"],
            "ratio_kappa_to_java_command": round(
                best["command_records_per_s"] / java["command_records_per_s"], 3
            ),
            "ratio_kappa_to_java_send_loop": round(
                best["send_loop_records_per_s"] / java["send_loop_records_per_s"], 3
            ),
            "ratio_cpu_per_record_kappa_to_java": round(
                best["cpu_us_per_record"] / java["cpu_us_per_record"], 2
            ),
            "generator_only_records_per_s": round(gen_rate),
            "note": "command_*: the command from its start to its exit, cold (what a user "
            "sees); send_loop_*: the command's own figure; cpu_us_per_record: the command's "
            "processes only (the broker's CPU is not in it). ProducerPerformance sends random "
            "payloads of the mean key+value size of the CDRs; kappa produce sends real Avro "
            "CDRs keyed by call_id.",
        },
    )


if __name__ == "__main__":
    main()
