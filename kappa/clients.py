"""Factories for Kafka and Schema Registry clients, built from settings.

Nothing here runs at import time; each job asks for the clients it needs.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from kappa.exceptions import ServiceUnreachableError
from kappa.settings import KafkaSettings, RegistrySettings

RETRIED = frozenset({"FAIL", "GETPID", "REQTMOUT", "DISCONNECT"})
"""librdkafka log facilities of failures it retries by itself (a broker restarting,
a connection refused); a command that gives up says so in its own error."""


class _Retried(logging.Filter):
    """librdkafka's errors that it retries, logged as warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.levelno > logging.WARNING and args and str(args[0]) in RETRIED:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


LIBRDKAFKA = logging.getLogger("kappa.librdkafka")
"""Where every Kafka client's own log lines go: this project's log format, not
librdkafka's raw ``%3|...|FAIL|`` lines on stderr."""
LIBRDKAFKA.addFilter(_Retried())


def log_config() -> dict[str, Any]:
    """The librdkafka property that routes a client's log lines to ``LIBRDKAFKA``."""
    return {"logger": LIBRDKAFKA}


def producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    """An idempotent, acks=all producer; ``overrides`` are librdkafka properties."""
    conf: dict[str, Any] = {
        **kafka.client_config(),
        **log_config(),
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
        **log_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return Consumer(conf)


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient({**kafka.client_config(), **log_config()})


def registry(settings: RegistrySettings) -> SchemaRegistryClient:
    return SchemaRegistryClient(settings.client_config())


def registry_address(client: SchemaRegistryClient) -> str:
    """The URL(s) ``client`` talks to, for messages."""
    urls = getattr(getattr(client, "_rest_client", None), "base_urls", None)
    return ", ".join(urls) if urls else "the configured URL"


def kafka_unreachable(bootstrap: str, exc: BaseException) -> ServiceUnreachableError:
    """The error for a broker that does not answer."""
    return ServiceUnreachableError(
        "Kafka",
        bootstrap,
        _first_line(exc),
        "start the local stack with `kappa stack up` or set KAPPA_KAFKA_BOOTSTRAP",
    )


def registry_unreachable(url: str, exc: BaseException) -> ServiceUnreachableError:
    """The error for a Schema Registry that does not answer."""
    return ServiceUnreachableError(
        "the Schema Registry",
        url,
        _first_line(exc),
        "start the local stack with `kappa stack up` or set KAPPA_SCHEMA_REGISTRY_URL",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
