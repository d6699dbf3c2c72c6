"""Creating the pipeline's topics (and test topics) through the admin API."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kappa.settings import KafkaSettings
from kappa.stack.exceptions import TopicCreationError

log = logging.getLogger(__name__)

_RETRIABLE = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
}


def admin_client(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(
        {**kafka.client_config(), "logger": logging.getLogger(f"{__name__}.librdkafka")}
    )


def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int,
    retention_ms: int,
    config: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> list[str]:
    """Create the topics that do not exist yet; the names created.

    Replication is the broker's default (1 on the local stack). Topics already
    present are left as they are.
    """
    admin = admin_client(kafka)
    wanted = list(dict.fromkeys(names))
    topic_config = {"retention.ms": str(retention_ms), **(config or {})}
    created: list[str] = []
    deadline = time.monotonic() + timeout_s
    while wanted:
        new = [
            NewTopic(n, num_partitions=partitions, replication_factor=-1, config=topic_config)
            for n in wanted
        ]
        futures = admin.create_topics(new, operation_timeout=30, request_timeout=30)
        retry: list[str] = []
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                if err.code() in _RETRIABLE and time.monotonic() < deadline:
                    retry.append(name)
                    continue
                msg = f"could not create topic {name}: {err.str()}"
                raise TopicCreationError(msg) from exc
            created.append(name)
            log.info(
                "created topic=%s partitions=%d retention_ms=%d", name, partitions, retention_ms
            )
        wanted = retry
        if retry:
            time.sleep(0.5)
    return created


def delete_topics(kafka: KafkaSettings, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics, ignoring the ones already gone."""
    wanted = list(names)
    if not wanted:
        return
    admin = admin_client(kafka)  # keep it referenced until every future is resolved
    futures = admin.delete_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s + 5)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.warning("could not delete topic=%s error=%s", name, err.str())
        except TimeoutError:
            log.warning("topic deletion not confirmed in time topic=%s", name)
