"""Test support: a local stack on free ports in a temporary folder, or the one the
environment points at, and uuid-named topics on it.

``tests/conftest.py`` wraps these in the ``stack``, ``hdfs`` and ``topic`` fixtures.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kappa.settings import KafkaSettings, RegistrySettings, StackSettings, TopicSettings
from stack.exceptions import PortInUseError
from stack.layout import repo_root
from stack.net import LOOPBACK, free_ports
from stack.stack import LocalStack
from stack.topics import delete_topics, ensure_topics

log = logging.getLogger(__name__)

EXTERNAL_ENV = ("KAPPA_KAFKA_BOOTSTRAP", "KAPPA_SCHEMA_REGISTRY_URL")
_ATTEMPTS = 3


@dataclass(frozen=True)
class StackHandle:
    """A running Kafka + Schema Registry, and the settings that reach them."""

    kafka: KafkaSettings
    registry: RegistrySettings
    stack_settings: StackSettings
    topics: TopicSettings
    local: LocalStack | None = None  # None: a stack we did not start

    @property
    def external(self) -> bool:
        return self.local is None

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def registry_url(self) -> str:
        return self.registry.url


@dataclass(frozen=True)
class HdfsHandle:
    """A running NameNode + DataNode on loopback."""

    url: str  # hdfs://127.0.0.1:<port>
    http_url: str  # http://127.0.0.1:<port> (web UI, WebHDFS under /webhdfs/v1)
    namenode_port: int
    http_port: int
    local: LocalStack

    def path(self, *parts: str) -> str:
        """An ``hdfs://`` URL under the root."""
        return "/".join([self.url, *(p.strip("/") for p in parts)])


def _deps_dir() -> Path:
    deps = StackSettings().deps_dir
    return deps if deps.is_absolute() else repo_root() / deps


def free_port_settings(state_dir: Path, **overrides: object) -> StackSettings:
    """StackSettings on free loopback ports in ``state_dir`` (never the default ports)."""
    ports = free_ports(6)
    values: dict[str, object] = {
        "state_dir": state_dir,
        "deps_dir": _deps_dir(),
        "kafka_port": ports[0],
        "controller_port": ports[1],
        "registry_port": ports[2],
        "hdfs_namenode_port": ports[3],
        "hdfs_http_port": ports[4],
        "prometheus_port": ports[5],
        "start_timeout_s": 180.0,
    }
    values.update(overrides)
    return StackSettings(**values)  # type: ignore[arg-type]


def external_stack(environ: Mapping[str, str], state_dir: Path) -> StackHandle | None:
    """The stack named by KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL, if either is set."""
    if not any(environ.get(name) for name in EXTERNAL_ENV):
        return None
    return StackHandle(
        kafka=KafkaSettings(),
        registry=RegistrySettings(),
        stack_settings=free_port_settings(state_dir),
        topics=TopicSettings(),
    )


@contextlib.contextmanager
def running_stack(
    state_dir: Path, environ: Mapping[str, str] | None = None
) -> Iterator[StackHandle]:
    """Yield a running stack; a stack started here is stopped on exit."""
    if environ is not None:
        outside = external_stack(environ, state_dir)
        if outside is not None:
            log.info("using the running stack bootstrap=%s", outside.kafka.bootstrap)
            yield outside
            return
    topics = TopicSettings()
    local: LocalStack | None = None
    for attempt in range(1, _ATTEMPTS + 1):
        local = LocalStack(free_port_settings(state_dir), topics, die_with_parent=True)
        try:
            local.up()
            break
        except PortInUseError:
            # Another run took a port between choosing and binding; choose again.
            local.down()
            if attempt == _ATTEMPTS:
                raise
        except BaseException:
            local.down()
            raise
    assert local is not None
    try:
        yield StackHandle(
            kafka=local.kafka_settings(),
            registry=local.registry_settings(),
            stack_settings=local.settings,
            topics=topics,
            local=local,
        )
    finally:
        local.down()


@contextlib.contextmanager
def running_hdfs(state_dir: Path) -> Iterator[HdfsHandle]:
    """Yield a NameNode + DataNode on free ports in ``state_dir``; stopped on exit."""
    local: LocalStack | None = None
    for attempt in range(1, _ATTEMPTS + 1):
        local = LocalStack(free_port_settings(state_dir), die_with_parent=True)
        try:
            local.up_hdfs()
            break
        except PortInUseError:
            local.down_hdfs()
            if attempt == _ATTEMPTS:
                raise
        except BaseException:
            local.down_hdfs()
            raise
    assert local is not None
    try:
        yield HdfsHandle(
            url=local.hdfs_url(),
            http_url=f"http://{LOOPBACK}:{local.settings.hdfs_http_port}",
            namenode_port=local.settings.hdfs_namenode_port,
            http_port=local.settings.hdfs_http_port,
            local=local,
        )
    finally:
        local.down_hdfs()


@dataclass
class TopicFactory:
    """Creates fresh uuid-named topics; ``cleanup()`` deletes them."""

    kafka: KafkaSettings
    topics: TopicSettings
    created: list[str] = field(default_factory=list)

    def __call__(
        self, partitions: int = 3, *, prefix: str = "test", config: dict[str, str] | None = None
    ) -> str:
        name = f"{prefix}.{uuid.uuid4().hex}"
        ensure_topics(
            self.kafka,
            [name],
            partitions=partitions,
            retention_ms=self.topics.retention_ms,
            config=config,
        )
        self.created.append(name)
        return name

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            delete_topics(self.kafka, self.created)
        self.created.clear()
