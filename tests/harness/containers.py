"""Kafka and the Schema Registry in Docker containers, for the test session.

Where a Docker engine answers, ``KAPPA_TEST_STACK=containers`` makes the test
session start the same images the compose deployment pins (``apache/kafka``,
``apicurio/apicurio-registry``) with testcontainers, instead of the embedded
local JVMs. ``KAPPA_TEST_STACK=local`` (the default) keeps the local stack.
Without an engine, the containers choice says why and falls back to the local
stack; the tests run the same either way, through the same KAPPA_* settings.

``tests/conftest.py`` uses :func:`running_test_stack` (or
:func:`start_container_stack` directly).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings
from stack.exceptions import StackError
from stack.net import LOOPBACK, free_ports
from stack.topics import ensure_topics
from tests.harness.stack import StackHandle, free_port_settings, running_stack

log = logging.getLogger(__name__)

TEST_STACK_ENV = "KAPPA_TEST_STACK"
StackKind = Literal["local", "containers"]

#: The images of compose/docker-compose.yml (a test keeps them equal).
KAFKA_IMAGE = "apache/kafka:4.1.1"
REGISTRY_IMAGE = "apicurio/apicurio-registry:3.3.3"

_KAFKA_PORT = 9092  # PLAINTEXT, advertised on the host's mapped port
_BROKER_PORT = 9094  # inter-broker (transaction markers), inside the container
_CONTROLLER_PORT = 9093
_REGISTRY_PORT = 8080
_LONG_MAX = "9223372036854775807"


class ContainerStackError(StackError):
    """The container stack was asked for but could not be started or chosen."""


@dataclass
class ContainerStack:
    """Kafka + registry containers and the settings that reach them from the host."""

    kafka: KafkaSettings
    registry: RegistrySettings
    topics: TopicSettings
    containers: list[Any] = field(default_factory=list, repr=False)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def registry_url(self) -> str:
        return self.registry.url

    def handle(self, state_dir: Path) -> StackHandle:
        """The same handle the ``stack`` fixture yields for the local stack."""
        return StackHandle(
            kafka=self.kafka,
            registry=self.registry,
            stack_settings=free_port_settings(state_dir),
            topics=self.topics,
        )

    def stop(self) -> None:
        """Remove the containers (every one, even when one fails)."""
        while self.containers:
            container = self.containers.pop()
            try:
                container.stop()
            except Exception as exc:
                log.warning("could not remove container: %s", exc)


def stack_kind(environ: Mapping[str, str]) -> StackKind:
    """``KAPPA_TEST_STACK``: ``local`` (default) or ``containers``."""
    value = (environ.get(TEST_STACK_ENV) or "local").strip().lower()
    if value == "local":
        return "local"
    if value == "containers":
        return "containers"
    msg = f"{TEST_STACK_ENV} must be 'local' or 'containers', got {value!r}"
    raise ContainerStackError(msg)


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers a ping; else why not, in one line."""
    try:
        import docker
    except ImportError:
        return "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no Docker engine answers ({first})"
    return None


def start_container_stack(
    environ: Mapping[str, str], topics: TopicSettings | None = None, timeout_s: float = 180.0
) -> ContainerStack | None:
    """Start Kafka and the registry in containers when ``KAPPA_TEST_STACK=containers``.

    None when the local stack is asked for, or when no Docker engine answers
    (then a warning says so and the caller uses the local stack).
    """
    if stack_kind(environ) != "containers":
        return None
    reason = docker_unavailable_reason()
    if reason is not None:
        text = f"{TEST_STACK_ENV}=containers, but {reason}: using the local stack instead"
        log.warning("%s", text)
        warnings.warn(text, stacklevel=2)
        return None
    topics = topics or TopicSettings()
    stack = ContainerStack(
        kafka=KafkaSettings(), registry=RegistrySettings(), topics=topics, containers=[]
    )
    try:
        stack.kafka = _start_kafka(stack, topics, timeout_s)
        stack.registry = _start_registry(stack, timeout_s)
        ensure_topics(
            stack.kafka,
            topics.all(),
            partitions=topics.partitions,
            retention_ms=topics.retention_ms,
        )
    except BaseException:
        stack.stop()
        raise
    log.info(
        "container stack up bootstrap=%s registry=%s", stack.kafka.bootstrap, stack.registry.url
    )
    return stack


@contextlib.contextmanager
def running_test_stack(
    state_dir: Path, environ: Mapping[str, str] | None = None
) -> Iterator[StackHandle]:
    """The test session's stack: containers when asked for and possible, else the local one.

    A stack that KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL point at wins
    over both, as in :func:`tests.harness.stack.running_stack`.
    """
    env = environ if environ is not None else {}
    external = any(env.get(name) for name in ("KAPPA_KAFKA_BOOTSTRAP", "KAPPA_SCHEMA_REGISTRY_URL"))
    containers = None if external else start_container_stack(env)
    if containers is None:
        with running_stack(state_dir, environ=environ) as handle:
            yield handle
        return
    try:
        yield containers.handle(state_dir)
    finally:
        containers.stop()


def _container(image: str) -> Any:
    from testcontainers.core.container import DockerContainer

    return DockerContainer(image)


def _start_kafka(stack: ContainerStack, topics: TopicSettings, timeout_s: float) -> KafkaSettings:
    (host_port,) = free_ports(1)
    kafka = (
        _container(KAFKA_IMAGE)
        .with_bind_ports(_KAFKA_PORT, host_port)
        .with_envs(
            CLUSTER_ID=_cluster_id(),
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_CONTROLLER_QUORUM_VOTERS=f"1@localhost:{_CONTROLLER_PORT}",
            KAFKA_LISTENERS=(
                f"PLAINTEXT://:{_KAFKA_PORT},BROKER://:{_BROKER_PORT},"
                f"CONTROLLER://:{_CONTROLLER_PORT}"
            ),
            KAFKA_ADVERTISED_LISTENERS=(
                f"PLAINTEXT://{LOOPBACK}:{host_port},BROKER://localhost:{_BROKER_PORT}"
            ),
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            # the local stack's broker settings (compose/local/kafka/server.properties)
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS="10",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS="10",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_DEFAULT_REPLICATION_FACTOR="1",
            KAFKA_MIN_INSYNC_REPLICAS="1",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_NUM_PARTITIONS=str(topics.partitions),
            KAFKA_LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS=_LONG_MAX,
            KAFKA_LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS=_LONG_MAX,
            KAFKA_LOG_RETENTION_MS=str(topics.retention_ms),
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_HEAP_OPTS="-Xms256m -Xmx512m",
        )
    )
    stack.containers.append(kafka)
    kafka.start()
    settings = KafkaSettings(bootstrap=f"{LOOPBACK}:{host_port}")
    _await("Kafka", lambda: _kafka_answers(settings), timeout_s, kafka)
    return settings


def _start_registry(stack: ContainerStack, timeout_s: float) -> RegistrySettings:
    registry = (
        _container(REGISTRY_IMAGE)
        .with_exposed_ports(_REGISTRY_PORT)
        .with_envs(
            # the local stack's registry settings (compose/local/registry/application.properties)
            APICURIO_REST_DELETION_ARTIFACT_ENABLED="true",
            APICURIO_REST_DELETION_ARTIFACT_VERSION_ENABLED="true",
            APICURIO_REST_DELETION_GROUP_ENABLED="true",
            APICURIO_CCOMPAT_MAX_SUBJECTS="10000",
            QUARKUS_HTTP_ACCESS_LOG_ENABLED="false",
        )
    )
    stack.containers.append(registry)
    registry.start()
    base = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(_REGISTRY_PORT)}"
    url = f"{base}/apis/ccompat/v7"
    _await("the Schema Registry", lambda: _http_ok(f"{url}/subjects"), timeout_s, registry)
    return RegistrySettings(url=url)


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _kafka_answers(settings: KafkaSettings) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(settings.client_config()).list_topics(timeout=2)
    except Exception:
        return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _await(what: str, ready: Callable[[], bool], timeout_s: float, container: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(1.0)
    logs = b""
    with contextlib.suppress(Exception):
        out, err = container.get_logs()
        logs = (out + err)[-2000:]
    tail = logs.decode(errors="replace")
    msg = f"{what} did not answer within {timeout_s:.0f} s; last log lines:\n{tail}"
    raise ContainerStackError(msg)
