"""Sustained throughput of `kappa validate` on a pre-loaded raw topic, against a baseline
that only consumes and re-produces the same records in Kafka transactions, in one run.

    .venv/bin/python -m bench.validate [--count 1000000] [--bad-rate 0.02] [--batch-size 200000]
        [--processes 3]

Both sides read the same pre-loaded topic (3 partitions, Avro CdrRaw, 2% faults of
every kind) from the beginning with read_committed, in micro-batches of the same
size, and commit output + offsets per batch in one transaction. The validator's
work includes its repartition by call_id (``streams/validate/repartition.py``):
each record is forwarded through the internal topic, so it is written, read and
decoded twice; the baseline copies each record once. "Sustained" is
measured from the end of the first batch to the end of the last one, so start-up
(GX import and context, group join, dedup rebuild) is reported apart. The
validator's time is split into decode, GX suite, transaction (produce + send
offsets + commit) and the rest (frame building, routing, Avro encoding). The machine
is shared, so the baseline runs before and after the validator (the ratio uses their
mean), and each side's process CPU time per record over the same window is reported
too: it depends far less on the machine's other load than wall time does.

``--processes N`` (N > 1) then also runs N validator processes in one consumer
group (static members, one transactional id each) over the same raw topic into
fresh valid/DLQ topics: the way to use more than one core. Its rate counts every
record over the time from the first process's first ``consume`` (after its GX
start-up) to the last commit of any process: group joins and rebalances included.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from bench.common import bench_stack, write_results
from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from producers.clock import WallClock
from producers.generator import FaultRates
from producers.run import ProduceRequest, produce
from stack.topics import delete_topics, ensure_topics
from streams.validate.connections import consumer_tuning, transactional_producer
from streams.validate.job import RunStats, run


class _Clock:
    """Wall and process CPU time (all threads) from the end of the first batch to the end
    of the last one."""

    def __init__(self) -> None:
        self.first: tuple[float, float, int] | None = None
        self.last: tuple[float, float, int] = (0.0, 0.0, 0)

    def tick(self, records: int) -> None:
        now = (time.perf_counter(), time.process_time(), records)
        if self.first is None:
            self.first = now
        self.last = now

    def rate(self) -> float:
        if self.first is None or self.last[0] <= self.first[0]:
            return 0.0
        return (self.last[2] - self.first[2]) / (self.last[0] - self.first[0])

    def cpu_us_per_record(self) -> float:
        if self.first is None or self.last[2] <= self.first[2]:
            return 0.0
        return (self.last[1] - self.first[1]) / (self.last[2] - self.first[2]) * 1e6


def baseline(
    kafka: KafkaSettings, raw: str, out: str, batch_size: int, settings: ValidatorSettings
) -> dict[str, Any]:
    """Consume raw and re-produce every record unchanged, one transaction per batch (the
    validator's consumer tuning too)."""
    tag = uuid.uuid4().hex[:8]
    producer = transactional_producer(kafka, settings, f"bench-baseline-{tag}")
    consumer = clients.consumer(
        kafka,
        f"bench-baseline-{tag}",
        **{"enable.partition.eof": True, **consumer_tuning(settings)},
    )
    consumer.subscribe([raw])
    clock = _Clock()
    eof: dict[int, bool] = {}
    records = 0
    txn_seconds = 0.0
    started = time.perf_counter()
    try:
        while True:
            msgs = consumer.consume(batch_size, settings.batch_seconds)
            batch = []
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof[m.partition() or 0] = True
                    continue
                eof[m.partition() or 0] = False
                batch.append(m)
            if not batch:
                if len(eof) == 3 and all(eof.values()):
                    break
                continue
            t0 = time.perf_counter()
            producer.begin_transaction()
            last: dict[int, int] = {}
            for m in batch:
                while True:
                    try:
                        producer.produce(
                            out, m.value(), m.key(), timestamp=m.timestamp()[1], headers=m.headers()
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                last[m.partition() or 0] = m.offset() or 0
            producer.send_offsets_to_transaction(
                [TopicPartition(raw, p, o + 1) for p, o in last.items()],
                consumer.consumer_group_metadata(),
                60,
            )
            producer.commit_transaction(120)
            txn_seconds += time.perf_counter() - t0
            records += len(batch)
            clock.tick(records)
    finally:
        consumer.close()
    return {
        "records": records,
        "seconds": round(time.perf_counter() - started, 2),
        "sustained_records_per_s": round(clock.rate()),
        "transaction_seconds": round(txn_seconds, 2),
        "cpu_us_per_record": round(clock.cpu_us_per_record(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--bad-rate", type=float, default=0.02)
    parser.add_argument("--batch-size", type=int, default=200_000)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    with bench_stack() as stack:
        tag = uuid.uuid4().hex[:8]
        topics = TopicSettings().model_copy(
            update={
                "raw": f"bench.raw.{tag}",
                "valid": f"bench.valid.{tag}",
                "dlq": f"bench.dlq.{tag}",
            }
        )
        copy_topic = f"bench.copy.{tag}"
        names = [topics.raw, topics.valid, topics.dlq, copy_topic]
        if args.processes > 1:
            names += [f"bench.valid-n.{tag}", f"bench.dlq-n.{tag}"]
        ensure_topics(stack.kafka, names, partitions=3, retention_ms=topics.retention_ms)
        try:
            figures = _run(stack, topics, copy_topic, args)
        finally:
            lister = clients.consumer(stack.kafka, "bench-list")
            try:  # the validators' repartition topics go too
                prefix = f"{topics.raw}.by-call-id."
                internal = [
                    n for n in lister.list_topics(timeout=10).topics if n.startswith(prefix)
                ]
            finally:
                lister.close()
            delete_topics(stack.kafka, names + internal)
    write_results("validate", figures)


def _run(
    stack: Any, topics: TopicSettings, copy_topic: str, args: argparse.Namespace
) -> dict[str, Any]:
    t0 = time.perf_counter()
    req = ProduceRequest(
        rate=0,
        count=args.count,
        duration_s=None,
        seed=2026,
        faults=FaultRates(bad=args.bad_rate),
        clock=WallClock(),
        topic=topics.raw,
    )
    pstats = produce(stack.kafka, stack.registry, topics, req)
    preload_s = time.perf_counter() - t0
    print(f"pre-loaded {pstats.delivered:,} records in {preload_s:.1f} s")

    tag = uuid.uuid4().hex[:8]
    settings = ValidatorSettings(  # type: ignore[call-arg]
        group_id=f"bench-validator-{tag}",
        transactional_id=f"bench-validator-{tag}",
        batch_size=args.batch_size,
        metrics_port=0,
    )
    clock = _Clock()

    def on_batch(stats: RunStats) -> None:
        clock.tick(stats.records_in)

    before = baseline(stack.kafka, topics.raw, copy_topic, args.batch_size, settings)
    print(f"baseline before: {before['sustained_records_per_s']:,}/s")
    stats = run(
        stack.kafka, stack.registry, topics, settings, until_caught_up=True, on_batch=on_batch
    )
    busy = stats.seconds - stats.startup_seconds
    print(f"validator: {stats.records_in:,} records, {clock.rate():,.0f}/s sustained")

    base = baseline(stack.kafka, topics.raw, copy_topic, args.batch_size, settings)
    print(f"baseline after: {base['sustained_records_per_s']:,}/s")
    parallel = None
    if args.processes > 1:
        tag = topics.raw.rsplit(".", 1)[-1]
        many = topics.model_copy(
            update={"valid": f"bench.valid-n.{tag}", "dlq": f"bench.dlq-n.{tag}"}
        )
        parallel = processes(stack.kafka, stack.registry, many, settings, args.processes)
        print(f"{args.processes} validators: {parallel['sustained_records_per_s']:,}/s")
    base_rate = (before["sustained_records_per_s"] + base["sustained_records_per_s"]) / 2
    base_cpu = (before["cpu_us_per_record"] + base["cpu_us_per_record"]) / 2
    n = max(stats.records_in, 1)
    cpu_us = clock.cpu_us_per_record()
    rest = max(0.0, busy - stats.gx_seconds - stats.txn_seconds - stats.decode_seconds)
    rate = clock.rate()
    return {
        "records": args.count,
        "bad_rate": args.bad_rate,
        "batch_size": args.batch_size,
        "partitions": 3,
        "preload": {"seconds": round(preload_s, 1), "records_per_s": round(pstats.rate)},
        "validator": {
            "records": stats.records_in,
            "forwarded_through_repartition": stats.forwarded,
            "valid": stats.valid,
            "dead_lettered": stats.dead,
            "by_rule": dict(sorted(stats.by_rule.items())),
            "batches": stats.batches,
            "startup_seconds": round(stats.startup_seconds, 2),
            "seconds_after_startup": round(busy, 2),
            "sustained_records_per_s": round(rate),
            "gx_seconds": round(stats.gx_seconds, 2),
            "decode_seconds": round(stats.decode_seconds, 2),
            "transaction_seconds": round(stats.txn_seconds, 2),
            "other_seconds": round(rest, 2),
            "us_per_record": {
                "gx": round(stats.gx_seconds / n * 1e6, 1),
                "decode": round(stats.decode_seconds / n * 1e6, 1),
                "transaction": round(stats.txn_seconds / n * 1e6, 1),
                "other": round(rest / n * 1e6, 1),
            },
            "cpu_us_per_record": round(cpu_us, 1),
        },
        "baseline_consume_reproduce_in_transactions": base,
        "baseline_before_validator": before,
        "ratio_validator_to_baseline": round(rate / base_rate, 3) if base_rate else None,
        "cpu_ratio_baseline_to_validator": round(base_cpu / cpu_us, 3) if cpu_us else None,
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "target_records_per_s": 50_000,
        **(
            {
                "validator_processes": parallel,
                "ratio_processes_to_baseline": round(
                    parallel["sustained_records_per_s"] / base_rate, 3
                )
                if base_rate
                else None,
            }
            if parallel is not None
            else {}
        ),
    }


def _one_validator(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    settings: ValidatorSettings,
) -> dict[str, Any]:
    """One validator process of ``processes``: its counts and (wall, cpu, records) per batch."""
    ticks: list[tuple[float, float, int]] = []

    def on_batch(stats: RunStats) -> None:
        ticks.append((time.time(), time.process_time(), stats.records_in))

    entered = time.time()
    cpu0 = time.process_time()

    stats = run(
        kafka, registry, topics, settings, until_caught_up=True, max_idle_s=30, on_batch=on_batch
    )
    return {
        "records": stats.records_in,
        "valid": stats.valid,
        "dead_lettered": stats.dead,
        "by_rule": dict(stats.by_rule),
        "startup_seconds": stats.startup_seconds,
        "consuming_from": entered + stats.startup_seconds,
        "cpu_seconds": time.process_time() - cpu0,
        "ticks": ticks,
    }


def processes(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    settings: ValidatorSettings,
    n: int,
) -> dict[str, Any]:
    """``n`` validator processes in one consumer group over the whole raw topic."""
    group = f"bench-validators-{uuid.uuid4().hex[:8]}"
    each = [
        settings.model_copy(update={"group_id": group, "transactional_id": f"{group}-{i}"})
        for i in range(n)
    ]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx) as pool:
        futures = [pool.submit(_one_validator, kafka, registry, topics, s) for s in each]
        results = [f.result() for f in futures]
    ticked = [r for r in results if r["ticks"]]
    start = min(r["consuming_from"] for r in results)
    end = max(r["ticks"][-1][0] for r in ticked)
    counted = sum(r["records"] for r in results)
    cpu = sum(r["cpu_seconds"] for r in results)
    # While every process runs: from the last first commit to the first last commit.
    t_a = max(r["ticks"][0][0] for r in ticked)
    t_b = min(r["ticks"][-1][0] for r in ticked)

    def committed_by(r: dict[str, Any], t: float) -> int:
        return max((k for w, _, k in r["ticks"] if w <= t), default=0)

    together = sum(committed_by(r, t_b) - committed_by(r, t_a) for r in ticked)
    by_rule: dict[str, int] = {}
    for r in results:
        for rule, k in r["by_rule"].items():
            by_rule[rule] = by_rule.get(rule, 0) + k
    return {
        "processes": n,
        "records": sum(r["records"] for r in results),
        "valid": sum(r["valid"] for r in results),
        "dead_lettered": sum(r["dead_lettered"] for r in results),
        "by_rule": dict(sorted(by_rule.items())),
        "records_per_process": [r["records"] for r in results],
        "seconds": round(end - start, 2),
        "sustained_records_per_s": round(counted / (end - start)) if end > start else 0,
        "cpu_us_per_record_with_startup": round(cpu / counted * 1e6, 1) if counted else None,
        "all_running": {
            "seconds": round(t_b - t_a, 2),
            "records": together,
            "records_per_s": round(together / (t_b - t_a)) if t_b > t_a else None,
        },
    }


if __name__ == "__main__":
    main()
