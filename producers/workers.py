"""``kappa produce --workers N``: N processes, each producing its own stream of records.

One Python process is bound by its CPU: a CDR generated, encoded and handed to
librdkafka costs about three times the CPU of a record of Kafka's own
ProducerPerformance (``bench/produce``), so more takes more cores. Worker ``w`` runs
``produce`` with record stream ``w`` of the seed
(the same subscribers and towers, its own sequence of records, as deterministic as
the seed's: see ``producers.generator``), 1/N of the rate and of the count, for the
same duration. Workers are spawned, not forked (librdkafka's threads do not survive a
fork). The parent registers the schemas first, so that an unreachable registry is
reported as it is without workers; then it sums the workers' figures for the progress
line, the summary and its Prometheus counters. The delivery-latency histogram stays
in the workers (unserved); the counters are the parent's.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kappa import clients
from kappa.logging import configure_logging
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings
from kappa.topics import require_topics
from monitoring import metrics
from producers.clock import SimulatedClock
from producers.exceptions import ProducerError
from producers.run import MetricSync, ProduceRequest, ProduceStats, build_generator, produce

log = logging.getLogger(__name__)

POLL_S = 0.5


@dataclass(frozen=True)
class Report:
    """One worker's figures so far; ``done`` once its run ended, ``error`` if it failed."""

    worker: int
    sent: int = 0
    delivered: int = 0
    errors: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    done: bool = False
    error: str | None = None

    @classmethod
    def of(cls, worker: int, stats: ProduceStats, *, done: bool = False) -> Report:
        return cls(
            worker,
            stats.sent,
            stats.delivered,
            stats.errors,
            stats.seconds,
            dict(stats.by_kind),
            dict(stats.by_type),
            done,
        )


@dataclass(frozen=True)
class Job:
    """What a worker process is given (pickled to it)."""

    worker: int
    kafka: KafkaSettings
    registry: RegistrySettings
    topics: TopicSettings
    req: ProduceRequest
    log_level: str


def split(req: ProduceRequest, workers: int) -> list[ProduceRequest]:
    """The request of each worker: its stream, its share of the rate and the count."""
    if workers < 1:
        msg = f"--workers must be 1 or more, got {workers}"
        raise ProducerError(msg)
    out = []
    for w in range(workers):
        count = None
        if req.count is not None:
            count = req.count // workers + (1 if w < req.count % workers else 0)
        clock = req.clock
        if isinstance(clock, SimulatedClock):  # each worker covers the same event time
            clock = dataclasses.replace(clock, rate=clock.rate / workers)
        out.append(
            dataclasses.replace(
                req, rate=req.rate / workers, count=count, clock=clock, stream=req.stream + w
            )
        )
    return [r for r in out if r.count is None or r.count > 0]


def total(reports: dict[int, Report]) -> ProduceStats:
    """The workers' figures summed (seconds: the longest worker's)."""
    stats = ProduceStats()
    for r in reports.values():
        stats.sent += r.sent
        stats.delivered += r.delivered
        stats.errors += r.errors
        stats.seconds = max(stats.seconds, r.seconds)
        stats.by_kind.update(r.kinds)
        stats.by_type.update(r.types)
    return stats


def produce_in_workers(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    req: ProduceRequest,
    workers: int,
    *,
    on_progress: Callable[[ProduceStats], None] | None = None,
) -> ProduceStats:
    """``produce`` in ``workers`` processes; their summed figures."""
    requests = split(req, workers)
    build_generator(registry, topics, req)  # the schemas registered once, errors said here
    require_topics(clients.admin(kafka), [req.topic or topics.raw], kafka.bootstrap)  # here too
    ctx = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[Report] = ctx.Queue()
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    procs = [
        ctx.Process(
            target=_work,
            args=(Job(w, kafka, registry, topics, r, level), reports),
            name=f"kappa-produce-{w}",
            daemon=True,
        )
        for w, r in enumerate(requests)
    ]
    for p in procs:
        p.start()
    try:
        return _gather(procs, reports, on_progress)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(10)


def _gather(
    procs: list[Any],
    reports: multiprocessing.Queue[Report],
    on_progress: Callable[[ProduceStats], None] | None,
) -> ProduceStats:
    latest: dict[int, Report] = {}
    sync = MetricSync()
    errors_seen = 0
    while not (len(latest) == len(procs) and all(r.done for r in latest.values())):
        try:
            rep = reports.get(timeout=POLL_S)
        except queue.Empty:
            for w, p in enumerate(procs):
                if not p.is_alive() and not (w in latest and latest[w].done):
                    msg = f"produce worker {w} ended without a result (exit code {p.exitcode})"
                    raise ProducerError(msg) from None
            continue
        if rep.error is not None:
            msg = f"produce worker {rep.worker} failed: {rep.error}"
            raise ProducerError(msg)
        latest[rep.worker] = rep
        stats = total(latest)
        sync.push(stats.by_kind, stats.by_type)
        if stats.errors > errors_seen:
            metrics.PRODUCER_SEND_ERRORS.inc(stats.errors - errors_seen)
            errors_seen = stats.errors
        if on_progress is not None:
            on_progress(stats)
    return total(latest)


def _work(job: Job, reports: multiprocessing.Queue[Report]) -> None:
    """One worker: ``produce`` with its request, its figures sent to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers
    configure_logging(job.log_level)
    worker = job.worker
    try:
        stats = produce(
            job.kafka,
            job.registry,
            job.topics,
            job.req,
            on_progress=lambda s: reports.put(Report.of(worker, s)),
        )
    except Exception as exc:
        reports.put(Report(worker, error=f"{type(exc).__name__}: {exc}"))
        return
    reports.put(Report.of(worker, stats, done=True))


__all__ = ["Report", "produce_in_workers", "split", "total"]
