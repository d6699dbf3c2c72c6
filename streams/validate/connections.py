"""The validator's Kafka clients: its group consumer, its transactional producer, and
the check that the topics it reads and writes exist."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer

from kappa import clients
from kappa.settings import KafkaSettings, TopicSettings, ValidatorSettings
from kappa.topics import require_topics
from streams.validate.suite import SuiteConfig


def suite_config(settings: ValidatorSettings) -> SuiteConfig:
    return SuiteConfig(
        version=settings.suite_version,
        future_tolerance_ms=int(settings.future_tolerance_s * 1000),
        disabled=frozenset(settings.disabled_rules),
    )


INIT_TIMEOUT_S = 60.0


def transactional_producer(
    kafka: KafkaSettings, settings: ValidatorSettings, transactional_id: str
) -> Producer:
    producer = clients.producer(
        kafka,
        **{
            "transactional.id": transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        },
    )
    producer.init_transactions(INIT_TIMEOUT_S)
    return producer


def consumer_tuning(settings: ValidatorSettings) -> dict[str, Any]:
    """librdkafka properties that keep a whole micro-batch prefetched: by default the
    consumer queue holds ~100k records per partition fetched 1 MB at a time, so a
    ``consume`` of a large batch would wait out ``batch_seconds`` for the rest."""
    return {
        "queued.min.messages": min(10_000_000, max(100_000, 2 * settings.batch_size)),
        "queued.max.messages.kbytes": 262_144,
        "max.partition.fetch.bytes": 8 * 1_048_576,
    }


def group_consumer(kafka: KafkaSettings, settings: ValidatorSettings) -> Consumer:
    """The validator's consumer of its group.

    Dynamic group membership: a static member (group.instance.id) is fenced fatally
    by librdkafka when its session times out during a group coordinator failover
    (a broker killed), which stopped the validator; a restarted instance now waits
    for the old member's session to expire (session.timeout.ms) instead.
    """
    return clients.consumer(
        kafka,
        settings.group_id,
        **{
            "session.timeout.ms": settings.session_timeout_ms,
            "enable.partition.eof": True,
            "max.poll.interval.ms": 600_000,
            **consumer_tuning(settings),
        },
    )


def valid_partitions(consumer: Consumer, kafka: KafkaSettings, topics: TopicSettings) -> int:
    """Check that the raw, valid and dead-letter topics exist (``TopicMissingError``
    naming every missing one); the partition count of the valid topic."""
    found = require_topics(consumer, [topics.raw, topics.valid, topics.dlq], kafka.bootstrap)
    return len(found[topics.valid])
