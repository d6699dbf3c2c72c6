"""``kappa produce``: the generator wired to an idempotent Kafka producer."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings
from kappa.topics import require_topics
from monitoring import metrics
from producers.clock import Clock
from producers.exceptions import ProducerError
from producers.generator import CdrGenerator, FaultRates, Generated
from schemas import SchemaName, WireEncoder, load_schema
from schemas.contract import register_legacy, register_topic_schemas

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.25
"""How often ``produce`` hands its figures to ``on_progress``."""


@dataclass
class ProduceStats:
    sent: int = 0
    delivered: int = 0
    errors: int = 0
    seconds: float = 0.0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)  # call types, "unknown" for none

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class ProduceRequest:
    rate: float
    count: int | None
    duration_s: float | None
    seed: int
    faults: FaultRates
    clock: Clock
    topic: str | None = None  # default: the raw topic
    stream: int = 0  # the generator's record stream (``--workers``: one per worker)


def build_generator(
    registry: RegistrySettings, topics: TopicSettings, req: ProduceRequest
) -> CdrGenerator:
    client = clients.registry(registry)
    ids = register_topic_schemas(client, topics)
    raw_topic = req.topic or topics.raw
    raw_id = ids.get(raw_topic)
    if raw_id is None:
        from schemas.contract import register, schema_text, subject

        raw_id = register(client, subject(raw_topic), schema_text(SchemaName.CDR_RAW))
    legacy_id = register_legacy(client, topics)
    encoder = WireEncoder(load_schema(SchemaName.CDR_RAW), raw_id)
    legacy = WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), legacy_id)
    return CdrGenerator(
        seed=req.seed,
        clock=req.clock,
        encode=encoder.encode,
        encode_legacy=legacy.encode,
        faults=req.faults,
        fast_header=encoder.header,
        stream=req.stream,
    )


def produce(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    req: ProduceRequest,
    *,
    on_progress: Callable[[ProduceStats], None] | None = None,
    producer_overrides: dict[str, Any] | None = None,
) -> ProduceStats:
    """Produce until ``count`` records or ``duration_s`` seconds, at ``rate`` per second."""
    if req.count is None and req.duration_s is None:
        msg = "give --count or --duration"
        raise ProducerError(msg)
    gen = build_generator(registry, topics, req)
    producer = clients.producer(kafka, **(producer_overrides or {}))
    topic = req.topic or topics.raw
    # A missing topic is one clear error, not every record counted as failed.
    require_topics(producer, [topic], kafka.bootstrap)
    stats = ProduceStats()
    sender = _Sender(producer, topic, stats, on_progress)
    sender.run(gen, req)
    remaining = producer.flush(60)
    stats.seconds = time.monotonic() - sender.started
    if remaining:
        msg = f"{remaining} records still undelivered after 60 s; is Kafka at {kafka.bootstrap} up?"
        raise ProducerError(msg)
    sender.synced.push(stats.by_kind, stats.by_type)
    return stats


class _Sender:
    """The send loop of ``produce``: pacing, back-pressure, delivery reports, metrics."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        stats: ProduceStats,
        on_progress: Callable[[ProduceStats], None] | None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.stats = stats
        self.on_progress = on_progress
        self.types = stats.by_type
        self.synced = MetricSync()
        self.started = time.monotonic()

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        stats = self.stats
        if err is not None:
            stats.errors += 1
            metrics.PRODUCER_SEND_ERRORS.inc()
            log.error("delivery failed topic=%s error=%s", msg.topic(), err)
            return
        stats.delivered += 1
        if not stats.delivered & 15:  # sample: a histogram observe per record costs too much
            latency = msg.latency()
            if latency is not None:
                metrics.PRODUCER_DELIVERY_SECONDS.observe(latency)

    def run(self, gen: CdrGenerator, req: ProduceRequest) -> None:
        """Send until ``req``'s count or duration (the hot path: locals, no calls per record
        beyond the generator and ``produce``)."""
        stats, started, topic, delivered = self.stats, self.started, self.topic, self.delivered
        count = req.count if req.count is not None else float("inf")
        deadline = started + req.duration_s if req.duration_s is not None else float("inf")
        interval = 1.0 / req.rate if req.rate > 0 else 0.0
        produce_msg, poll = self.producer.produce, self.producer.poll
        kinds, types = stats.by_kind, self.types
        next_report = next_sync = started
        while stats.sent < count:
            now = time.monotonic()
            if now >= deadline:
                break
            if interval:
                due = started + stats.sent * interval
                if due > now:
                    poll(min(due - now, 0.1))
                    continue
            g: Generated = gen.next()
            while True:
                try:
                    produce_msg(
                        topic, g.value, g.key, timestamp=g.timestamp_ms, on_delivery=delivered
                    )
                    break
                except BufferError:
                    poll(0.005)
            stats.sent += 1
            kinds[g.kind] += 1
            types[g.call_type or "unknown"] += 1
            if interval or not stats.sent & 1023:
                poll(0)
                if now >= next_sync:
                    self.synced.push(kinds, types)
                    next_sync = now + 1.0
                if self.on_progress is not None and now >= next_report:
                    stats.seconds = now - started
                    self.on_progress(stats)
                    next_report = now + PROGRESS_EVERY_S


class MetricSync:
    """Pushes counts to Prometheus in deltas, about once a second, off the hot path."""

    def __init__(self) -> None:
        self._kinds: Counter[str] = Counter()
        self._types: Counter[str] = Counter()

    def push(self, kinds: Counter[str], types: Counter[str]) -> None:
        for kind, n in kinds.items():
            delta = n - self._kinds[kind]
            if delta and kind not in ("valid", "late"):
                metrics.PRODUCER_FAULTS.labels(kind=kind.split(":", 1)[0]).inc(delta)
        for call_type, n in types.items():
            delta = n - self._types[call_type]
            if delta:
                label = call_type if call_type in ("VOICE", "SMS", "DATA") else "other"
                metrics.PRODUCER_RECORDS.labels(call_type=label).inc(delta)
        self._kinds = Counter(kinds)
        self._types = Counter(types)
