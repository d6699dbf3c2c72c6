"""Creating the pipeline's topics (and test topics) through the admin API."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from kappa.settings import KafkaSettings, TopicSettings
from stack.exceptions import TopicCreationError

log = logging.getLogger(__name__)

_RETRIABLE = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
}


#: cleanup.policy of the topics a reader folds to the latest value per key.
COMPACT = {"cleanup.policy": "compact"}


def compacted_topics(topics: TopicSettings) -> tuple[str, ...]:
    """The pipeline topics created with ``cleanup.policy=compact``.

    The windowed aggregates are keyed ``<window start>|<key>`` and the late CDRs by
    ``call_id``; a reader keeps the latest value per key, so older values of a key
    may go. compose/kafka/setup.py creates the same three compacted (a test checks).
    """
    return (topics.billing, topics.network, topics.late)


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
    compacted: Collection[str] = (),
    replication_factor: int = -1,
    min_insync_replicas: int | None = None,
    timeout_s: float = 60.0,
) -> list[str]:
    """Create the topics that do not exist yet; the names created.

    ``replication_factor`` -1 takes the broker's default (1 on the single-node
    stack); ``min_insync_replicas`` None takes the broker's too. The topics named
    in ``compacted`` get ``cleanup.policy=compact``; one that exists already
    without it is switched to it, every other setting of an existing topic is left
    as it is.
    """
    admin = admin_client(kafka)
    wanted = list(dict.fromkeys(names))
    creation = _Creation(
        admin,
        partitions=partitions,
        replication_factor=replication_factor,
        retention_ms=retention_ms,
        config=_topic_config(retention_ms, config, min_insync_replicas),
        compact=set(compacted),
        deadline=time.monotonic() + timeout_s,
    )
    while wanted:
        wanted = creation.attempt(wanted)
        if wanted:
            time.sleep(0.5)
    _compact_existing(admin, [n for n in creation.existing if n in creation.compact], timeout_s)
    return creation.created


def _topic_config(
    retention_ms: int, config: dict[str, str] | None, min_insync_replicas: int | None
) -> dict[str, str]:
    """Every new topic's config: the retention, the caller's extra settings over it, and
    ``min.insync.replicas`` only when asked for (else the broker's default holds)."""
    topic_config = {"retention.ms": str(retention_ms), **(config or {})}
    if min_insync_replicas is not None:
        topic_config["min.insync.replicas"] = str(min_insync_replicas)
    return topic_config


@dataclass
class _Creation:
    """One ``ensure_topics`` call across its rounds of ``create_topics``.

    A broker that is still starting (no controller yet, a transport timeout) fails a
    creation with a retriable error: that name is asked for again in the next round,
    until the deadline. The names created and the ones that existed already are
    collected over the rounds (the latter may need switching to compaction).
    """

    admin: AdminClient
    partitions: int
    replication_factor: int
    retention_ms: int
    config: dict[str, str]
    compact: set[str]
    deadline: float
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def attempt(self, wanted: list[str]) -> list[str]:
        """Ask for ``wanted`` once; the names to ask for again."""
        new = [self._new_topic(n) for n in wanted]
        futures = self.admin.create_topics(new, operation_timeout=30, request_timeout=30)
        return [name for name, future in futures.items() if self._settle(name, future)]

    def _new_topic(self, name: str) -> NewTopic:
        return NewTopic(
            name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            config={**self.config, **(COMPACT if name in self.compact else {})},
        )

    def _settle(self, name: str, future: Future[None]) -> bool:
        """Wait for one topic's creation and record its outcome; True to retry it.

        Raises TopicCreationError on an error that is not retriable, or once the
        deadline has passed."""
        try:
            future.result()
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                self.existing.append(name)
                return False
            if err.code() in _RETRIABLE and time.monotonic() < self.deadline:
                return True
            msg = f"could not create topic {name}: {err.str()}"
            raise TopicCreationError(msg) from exc
        self.created.append(name)
        log.info(
            "created topic=%s partitions=%d replication=%d retention_ms=%d compacted=%s",
            name,
            self.partitions,
            self.replication_factor,
            self.retention_ms,
            name in self.compact,
        )
        return False


def _compact_existing(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Switch topics created before they were meant to be compacted (idempotent)."""
    if not names:
        return
    resources = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in COMPACT.items()
            ],
        )
        for name in names
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=timeout_s)
    for resource, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            msg = f"could not make topic {resource.name} compacted: {exc.args[0].str()}"
            raise TopicCreationError(msg) from exc


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
