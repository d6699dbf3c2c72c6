"""Factories for Kafka and Schema Registry clients, built from settings.

Nothing here runs at import time; each job asks for the clients it needs.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from kappa.settings import KafkaSettings, RegistrySettings


def producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    """An idempotent, acks=all producer; ``overrides`` are librdkafka properties."""
    conf: dict[str, Any] = {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        # Java-compatible key hashing, so that any client co-partitions by key.
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "lz4",
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(kafka: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that commits nothing by itself and reads committed data only."""
    conf: dict[str, Any] = {
        **kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return Consumer(conf)


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(kafka.client_config())


def registry(settings: RegistrySettings) -> SchemaRegistryClient:
    return SchemaRegistryClient(settings.client_config())
