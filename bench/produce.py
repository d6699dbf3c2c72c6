"""Avro CDR throughput of `kappa produce` at full speed, against Kafka's own
ProducerPerformance on the same broker, same partitions, same record size and the
same producer settings, in one run.

    .venv/bin/python -m bench.produce [--count N]

Also measured apart: the generator alone (no Kafka), which bounds what one
Python process can hand to librdkafka.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import time

from bench.common import bench_stack, write_results
from kappa.settings import StackSettings, TopicSettings
from producers.clock import WallClock
from producers.generator import CdrGenerator, FaultRates
from producers.run import ProduceRequest, produce
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


def java_producer_performance(bootstrap: str, topic: str, count: int, record_size: int) -> float:
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
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900).stdout
    last = [line for line in out.splitlines() if "records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec", last)
    if match is None:
        msg = f"unexpected ProducerPerformance output: {last}"
        raise RuntimeError(msg)
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    gen_rate, record_bytes = generator_only(min(args.count, 500_000))
    with bench_stack() as stack:
        suffix = secrets.token_hex(4)
        topics = TopicSettings(raw=f"bench.produce.{suffix}")
        from stack.topics import ensure_topics

        java_topic = f"bench.java.{suffix}"
        ensure_topics(
            stack.kafka,
            [topics.raw, java_topic],
            partitions=topics.partitions,
            retention_ms=topics.retention_ms,
        )
        req = ProduceRequest(
            rate=0,
            count=args.count,
            duration_s=None,
            seed=1,
            faults=FaultRates(),
            clock=WallClock(),
        )
        stats = produce(stack.kafka, stack.registry, topics, req)
        java_rate = java_producer_performance(
            stack.kafka.bootstrap, java_topic, args.count, round(record_bytes)
        )
    write_results(
        "produce",
        {
            "records": args.count,
            "record_bytes": round(record_bytes, 1),
            "producer_settings": PRODUCER_PROPS,
            "kappa_produce_records_per_s": round(stats.rate),
            "java_producer_performance_records_per_s": round(java_rate),
            "ratio_kappa_to_java": round(stats.rate / java_rate, 3),
            "generator_only_records_per_s": round(gen_rate),
            "ratio_kappa_to_generator_only": round(stats.rate / gen_rate, 3),
            "note": "ProducerPerformance sends random payloads of the mean key+value size of the "
            "CDRs; kappa produce sends real Avro CDRs keyed by call_id.",
        },
    )


if __name__ == "__main__":
    main()
