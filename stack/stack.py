"""The embedded local stack: Kafka and the Schema Registry, optionally HDFS and Prometheus."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from kappa.settings import KafkaSettings, RegistrySettings, StackSettings, TopicSettings
from stack.exceptions import PortInUseError, StackError
from stack.hdfs import DataNodeService, NameNodeService
from stack.kafka import KafkaService
from stack.layout import Layout
from stack.monitoring import PrometheusService
from stack.net import port_in_use
from stack.process import Supervisor
from stack.registry import RegistryService
from stack.service import Service
from stack.topics import compacted_topics, ensure_topics

log = logging.getLogger(__name__)

WANTED_FILE = "wanted.json"
Health = Literal["up", "starting", "down", "port-taken"]

_PORT_SETTING = {
    "kafka": "KAPPA_KAFKA_PORT",
    "kafka controller": "KAPPA_CONTROLLER_PORT",
    "schema registry": "KAPPA_REGISTRY_PORT",
    "HDFS NameNode": "KAPPA_HDFS_NAMENODE_PORT",
    "HDFS NameNode web": "KAPPA_HDFS_HTTP_PORT",
    "Prometheus": "KAPPA_PROMETHEUS_PORT",
}


@dataclass(frozen=True)
class ServiceStatus:
    """What ``kappa stack status`` shows for one service."""

    name: str
    port: int | None
    pid: int | None
    health: Health
    url: str | None
    log: Path

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["log"] = str(self.log)
        return out


class LocalStack:
    """Starts, stops and reports the local stack of one state directory."""

    def __init__(
        self,
        settings: StackSettings,
        topics: TopicSettings | None = None,
        *,
        die_with_parent: bool = False,
    ) -> None:
        """``die_with_parent``: the services stop when this Python process dies (tests)."""
        self.settings = settings
        self.topics = topics or TopicSettings()
        self.layout = Layout.of(settings)
        self.supervisor = Supervisor(self.layout.state_dir, die_with_parent=die_with_parent)
        self.kafka = KafkaService(settings, self.topics)
        self.registry = RegistryService(settings)
        self.namenode = NameNodeService(settings)
        self.datanode = DataNodeService(settings)
        self.prometheus = PrometheusService(settings)

    # -- what clients need -------------------------------------------------
    def kafka_settings(self) -> KafkaSettings:
        return self.kafka.client_settings()

    def registry_settings(self) -> RegistrySettings:
        return self.registry.client_settings()

    def hdfs_url(self) -> str:
        return self.namenode.fs_url()

    def all_services(self) -> list[Service]:
        return [self.kafka, self.registry, self.namenode, self.datanode, self.prometheus]

    # -- which optional services were asked for --------------------------------
    @property
    def _wanted_file(self) -> Path:
        return self.layout.state_dir / WANTED_FILE

    def wanted(self) -> set[str]:
        """The optional services an ``up`` asked for since the last ``down``: ``status``
        lists them even when they are not running (a killed DataNode shows as down)."""
        try:
            names = json.loads(self._wanted_file.read_text())
        except (OSError, ValueError):
            return set()
        return {str(n) for n in names} if isinstance(names, list) else set()

    def _want(self, *services: Service) -> None:
        names = sorted(self.wanted() | {s.name for s in services})
        self._wanted_file.write_text(json.dumps(names) + "\n")

    # -- up ----------------------------------------------------------------
    def up(
        self, *, with_hdfs: bool = False, with_monitoring: bool = False, create_topics: bool = True
    ) -> list[ServiceStatus]:
        """Start what is not running yet, wait until all answer, create the topics."""
        began = time.monotonic()
        with self._locked():
            if with_monitoring:
                self.prometheus.check()  # before starting anything else
            self._want(
                *((self.namenode, self.datanode) if with_hdfs else ()),
                *((self.prometheus,) if with_monitoring else ()),
            )
            first: list[Service] = [self.kafka, self.registry]
            if with_hdfs:
                first.append(self.namenode)  # independent of Kafka: start side by side
            self._start_group(first)
            if create_topics:
                ensure_topics(
                    self.kafka_settings(),
                    self.topics.all(),
                    partitions=self.topics.partitions,
                    retention_ms=self.topics.retention_ms,
                    compacted=compacted_topics(self.topics),
                )
            if with_hdfs:
                self._start_group([self.datanode])
            if with_monitoring:
                self._start_group([self.prometheus])
        log.info("stack up in %.1f s state_dir=%s", time.monotonic() - began, self.layout.state_dir)
        return self.status()

    def up_monitoring(self) -> None:
        """Start Prometheus alone (it scrapes the jobs, whichever stack they run on)."""
        with self._locked():
            self.prometheus.check()
            self._want(self.prometheus)
            self._start_group([self.prometheus])

    def up_hdfs(self) -> None:
        """Start the NameNode, then the DataNode; wait until HDFS takes writes."""
        with self._locked():
            self._want(self.namenode, self.datanode)
            self._start_group([self.namenode])
            self._start_group([self.datanode])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time per state folder."""
        self.layout.ensure()
        with (self.layout.state_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _start_group(self, services: Sequence[Service]) -> None:
        """Start ``services`` side by side; on failure stop those this call started."""
        pending = [s for s in services if self.supervisor.pid(s.name) is None]
        for service in pending:
            service.check()
            self._check_ports(service)
        started: list[Service] = []
        try:
            for service in pending:
                service.prepare()
                self.supervisor.start(service.spec())
                started.append(service)
            for service in services:
                waited = self.supervisor.wait_healthy(
                    service.name, service.healthy, self.settings.start_timeout_s
                )
                log.info("healthy service=%s after=%.1fs", service.name, waited)
        except BaseException:
            for service in reversed(started):
                self.supervisor.stop(service.name)
            raise

    def _check_ports(self, service: Service) -> None:
        for purpose, port in service.ports.items():
            if port_in_use(port):
                setting = _PORT_SETTING.get(purpose, "its KAPPA_*_PORT setting")
                msg = (
                    f"port {port} ({purpose}) is already in use by another process; "
                    f"stop it or choose another port with {setting}"
                )
                raise PortInUseError(msg)

    # -- down ----------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop every running service, dependants first; the names stopped."""
        stopped: list[str] = []
        order: list[Service] = [
            self.prometheus,
            self.datanode,
            self.namenode,
            self.registry,
            self.kafka,
        ]
        errors: list[str] = []
        with self._locked():
            for service in order:
                try:
                    if self.supervisor.stop(service.name) is not None:
                        stopped.append(service.name)
                except StackError as exc:
                    errors.append(str(exc))
            if not errors:
                self._wanted_file.unlink(missing_ok=True)
        if errors:
            raise StackError("; ".join(errors))
        return stopped

    def down_hdfs(self) -> None:
        with self._locked():
            self.supervisor.stop(self.datanode.name)
            self.supervisor.stop(self.namenode.name)
            left = self.wanted() - {self.namenode.name, self.datanode.name}
            self._wanted_file.write_text(json.dumps(sorted(left)) + "\n")

    # -- status --------------------------------------------------------------
    def status(self, *, everything: bool = False) -> list[ServiceStatus]:
        """One row per service; HDFS and Prometheus only when running or asked for by an
        ``up`` since the last ``down`` (or ``everything``)."""
        rows = []
        optional = {self.namenode.name, self.datanode.name, self.prometheus.name}
        wanted = self.wanted()
        for service in self.all_services():
            pid = self.supervisor.pid(service.name)
            if pid is None and service.name in optional - wanted and not everything:
                continue
            rows.append(self._status(service, pid))
        return rows

    def _status(self, service: Service, pid: int | None) -> ServiceStatus:
        return service_status(self.supervisor, service, pid)


def service_status(supervisor: Supervisor, service: Service, pid: int | None) -> ServiceStatus:
    """The status row of ``service``, whose pid ``supervisor`` found (None: not running)."""
    health: Health
    if pid is not None:
        health = "up" if service.healthy() else "starting"
    elif any(port_in_use(p) for p in service.ports.values()):
        health = "port-taken"
    else:
        health = "down"
    return ServiceStatus(
        name=service.name,
        port=service.port,
        pid=pid,
        health=health,
        url=service.url(),
        log=supervisor.log_file(service.name),
    )
