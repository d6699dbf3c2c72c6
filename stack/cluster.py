"""The local multi-node cluster of ``kappa stack up --cluster``, without Docker.

On loopback: three KRaft nodes (broker and controller in each JVM, three
controller voters; replication 3, min.insync.replicas 2 for the pipeline's and
the internal topics), one Schema Registry, a Spark standalone master with two
workers (pyspark's own distribution), and an HDFS NameNode with two DataNodes
(replication 2). Ports come from :class:`~kappa.settings.ClusterSettings`.

How it lives next to the single-node stack: the cluster keeps everything (pids,
logs, data, configs) in its own sub-folder, ``<state_dir>/cluster/``, so its
processes carry markers of that folder and never mix with the single node's;
with the default ports both stacks can run at once. ``up`` records the
cluster's settings in ``<state_dir>/cluster/cluster.json``; from then until
``down`` that record is the cluster's truth (its ports), whatever the
environment says, which is how ``kappa stack status`` and ``down`` find every
node. ``down`` removes the record; the data stays.

``up`` starts only what is not running: after a node was killed, the same call
brings it back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kappa.settings import (
    ClusterSettings,
    KafkaSettings,
    RegistrySettings,
    StackSettings,
    TopicSettings,
)
from stack.exceptions import PortInUseError, ServiceStartError, StackError
from stack.hdfs import ClusterDataNodeService, NameNodeService
from stack.kafka import KafkaNodeService, cluster_bootstrap
from stack.layout import Layout
from stack.net import port_in_use
from stack.process import ServiceSpec, Supervisor
from stack.registry import RegistryService
from stack.service import Service
from stack.spark import SparkMasterService, SparkWorkerService
from stack.stack import ServiceStatus, service_status
from stack.topics import compacted_topics, ensure_topics

log = logging.getLogger(__name__)

CLUSTER_DIR = "cluster"
RECORD = "cluster.json"
REPLICATION = 3
MIN_INSYNC = 2
HDFS_REPLICATION = 2
_WARMUP_ID = "kappa-cluster-warmup"


def cluster_state_dir(settings: StackSettings) -> Path:
    """``<state_dir>/cluster``: everything of the cluster lives here."""
    return Layout.of(settings).state_dir / CLUSTER_DIR


def recorded_settings(settings: StackSettings) -> ClusterSettings | None:
    """The settings ``up --cluster`` recorded, or None when no cluster is recorded."""
    try:
        record = json.loads((cluster_state_dir(settings) / RECORD).read_text())
        return ClusterSettings(**record["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cluster_stack_settings(settings: StackSettings, cluster: ClusterSettings) -> StackSettings:
    """``settings`` moved to the cluster's folder and ports (registry, NameNode)."""
    layout = Layout.of(settings)
    return settings.model_copy(
        update={
            "state_dir": layout.state_dir / CLUSTER_DIR,
            "deps_dir": layout.deps_dir,
            "registry_port": cluster.registry_port,
            "hdfs_namenode_port": cluster.hdfs_namenode_port,
            "hdfs_http_port": cluster.hdfs_http_port,
        }
    )


class ClusterStack:
    """Starts, stops, kills and reports the nodes of the local cluster."""

    def __init__(
        self,
        settings: StackSettings,
        cluster: ClusterSettings,
        topics: TopicSettings | None = None,
        *,
        die_with_parent: bool = False,
    ) -> None:
        """``settings``: the single-node stack's (state and deps folders, JDKs, heaps of
        the registry and HDFS); ``die_with_parent``: the nodes stop when this Python
        process dies (tests)."""
        self.cluster = cluster
        self.topics = topics or TopicSettings()
        self.settings = cluster_stack_settings(settings, cluster)
        self.layout = Layout.of(self.settings)
        self.supervisor = Supervisor(self.layout.state_dir, die_with_parent=die_with_parent)
        s = self.settings
        self.brokers = [KafkaNodeService(s, self.topics, cluster, i) for i in (1, 2, 3)]
        self.registry = RegistryService(s)
        self.master = SparkMasterService(s, cluster)
        self.workers = [SparkWorkerService(s, cluster, i) for i in (1, 2)]
        self.namenode = NameNodeService(s, replication=HDFS_REPLICATION)
        self.datanodes = [ClusterDataNodeService(s, cluster, i) for i in (1, 2)]

    @classmethod
    def of(cls, settings: StackSettings, topics: TopicSettings | None = None) -> ClusterStack:
        """The recorded cluster of ``settings.state_dir``, else one on ``ClusterSettings()``."""
        return cls(settings, recorded_settings(settings) or ClusterSettings(), topics)

    # -- what clients need -------------------------------------------------
    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=cluster_bootstrap(self.cluster))

    def registry_settings(self) -> RegistrySettings:
        return self.registry.client_settings()

    def master_url(self) -> str:
        return self.master.master_url()

    def hdfs_url(self) -> str:
        return self.namenode.fs_url()

    def spark_conf(self) -> dict[str, str]:
        """Spark settings of a job on this cluster (``extra_conf`` of streams.spark.session;
        ``env`` passes them to the pipeline's commands as KAPPA_AGGREGATE_SPARK_CONF)."""
        return {
            "spark.executor.memory": self.cluster.executor_memory,
            "spark.hadoop.dfs.replication": str(HDFS_REPLICATION),
        }

    def env(self) -> dict[str, str]:
        """The KAPPA_* settings that point the pipeline's commands at this cluster."""
        return {
            "KAPPA_KAFKA_BOOTSTRAP": self.kafka_settings().bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": self.registry.url(),
            "KAPPA_AGGREGATE_MASTER": self.master_url(),
            # executor memory and HDFS replication for the aggregation and the replay
            "KAPPA_AGGREGATE_SPARK_CONF": json.dumps(self.spark_conf(), separators=(",", ":")),
            "KAPPA_AGGREGATE_OUTPUT": f"{self.hdfs_url()}/kappa/aggregate",
            "KAPPA_REPLAY_OUTPUT": f"{self.hdfs_url()}/kappa/replay",
        }

    def all_services(self) -> list[Service]:
        return [
            *self.brokers,
            self.registry,
            self.master,
            *self.workers,
            self.namenode,
            *self.datanodes,
        ]

    def service(self, name: str) -> Service:
        for service in self.all_services():
            if service.name == name:
                return service
        names = ", ".join(s.name for s in self.all_services())
        msg = f"the cluster has no node {name!r} (its nodes: {names})"
        raise StackError(msg)

    @property
    def record_file(self) -> Path:
        return self.layout.state_dir / RECORD

    def recorded(self) -> bool:
        return self.record_file.exists()

    # -- up ----------------------------------------------------------------
    def up(self, *, create_topics: bool = True) -> list[ServiceStatus]:
        """Start every node that is not running, wait until all answer, create the topics.

        The master, the NameNode, the three brokers and the registry start side by
        side; the workers as soon as the master answers, the DataNodes as soon as
        the NameNode does.
        """
        began = time.monotonic()
        with self._locked():
            pending = [s for s in self.all_services() if self.supervisor.pid(s.name) is None]
            for service in pending:
                service.check()
                self._check_ports(service)
            self._record()  # from here on, status and down know the cluster
            self.brokers[0].cluster_id()  # one id for the three, before they format
            specs = self._prepare(pending)
            started: list[Service] = []
            try:
                first = [self.master, self.namenode, *self.brokers, self.registry]
                self._start([s for s in first if s in pending], specs, started)
                self._wait([self.master])
                self._start([s for s in self.workers if s in pending], specs, started)
                self._wait([self.namenode])
                self._start([s for s in self.datanodes if s in pending], specs, started)
                self._wait(self.brokers)
                if create_topics:
                    self._ensure_topics()
                if any(b in pending for b in self.brokers):
                    warm_internal_topics(
                        self.kafka_settings(), self.topics.raw, self.settings.start_timeout_s
                    )
                self._wait([self.registry, *self.workers, *self.datanodes])
            except BaseException:
                names = [s.name for s in reversed(started)]
                with contextlib.suppress(StackError):
                    self.supervisor.stop_all(names)
                raise
        log.info(
            "cluster up in %.1f s state_dir=%s", time.monotonic() - began, self.layout.state_dir
        )
        return self.status()

    def _record(self) -> None:
        record = {
            "settings": self.cluster.model_dump(mode="json"),
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        self.record_file.write_text(json.dumps(record, indent=2) + "\n")

    def _prepare(self, services: Sequence[Service]) -> dict[str, ServiceSpec]:
        """Render, format (Kafka, HDFS) and build the command of each, side by side."""

        def one(service: Service) -> ServiceSpec:
            service.prepare()
            return service.spec()

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="cluster-prepare") as pool:
            futures = {s.name: pool.submit(one, s) for s in services}
        return {name: future.result() for name, future in futures.items()}

    def _start(
        self, services: Sequence[Service], specs: dict[str, ServiceSpec], started: list[Service]
    ) -> None:
        for service in services:
            self.supervisor.start(specs[service.name])
            started.append(service)

    def _wait(self, services: Sequence[Service]) -> None:
        for service in services:
            waited = self.supervisor.wait_healthy(
                service.name, service.healthy, self.settings.start_timeout_s
            )
            log.info("healthy node=%s after=%.1fs", service.name, waited)

    def _ensure_topics(self) -> None:
        ensure_topics(
            self.kafka_settings(),
            self.topics.all(),
            partitions=self.topics.partitions,
            retention_ms=self.topics.retention_ms,
            compacted=compacted_topics(self.topics),
            replication_factor=REPLICATION,
            min_insync_replicas=MIN_INSYNC,
            timeout_s=self.settings.start_timeout_s,
        )

    def _check_ports(self, service: Service) -> None:
        for purpose, port in service.ports.items():
            if port_in_use(port):
                msg = (
                    f"port {port} ({purpose}) is already in use by another process; stop it "
                    "or choose other ports with the KAPPA_CLUSTER_* settings (`kappa settings`)"
                )
                raise PortInUseError(msg)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up`` or ``down`` of the cluster at a time."""
        self.layout.ensure()
        with (self.layout.state_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- down, kill ----------------------------------------------------------
    def down(self) -> list[str]:
        """Stop every node side by side and forget the record; the names stopped."""
        with self._locked():
            stopped = self.supervisor.stop_all([s.name for s in self.all_services()])
            self.record_file.unlink(missing_ok=True)
        return stopped

    def kill(self, name: str) -> int | None:
        """SIGKILL one node (and its children: a worker's executors); the pid, or None."""
        return self.supervisor.kill(self.service(name).name)

    def pids(self) -> dict[str, int]:
        """The running nodes and their pids."""
        found = {s.name: self.supervisor.pid(s.name) for s in self.all_services()}
        return {name: pid for name, pid in found.items() if pid is not None}

    # -- status --------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        """One row per node, running or not."""
        return [
            service_status(self.supervisor, s, self.supervisor.pid(s.name))
            for s in self.all_services()
        ]


def warm_internal_topics(kafka: KafkaSettings, topic: str, timeout_s: float) -> None:
    """Have the brokers create ``__consumer_offsets`` and ``__transaction_state`` now.

    Kafka creates them on first use, with replication 3, which needs all three
    brokers: created while all run, a group or a transaction still works after
    one of them dies. (A committed-offsets lookup of a group, then a transactional
    producer's init, are what make the coordinators create them.)
    """
    deadline = time.monotonic() + timeout_s
    quiet = {"logger": logging.getLogger(f"{__name__}.librdkafka")}
    consumer = Consumer({**kafka.client_config(), **quiet, "group.id": _WARMUP_ID})
    try:
        while True:
            try:
                consumer.committed([TopicPartition(topic, 0)], timeout=10)
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    msg = f"the cluster did not create its consumer offsets topic: {exc}"
                    raise ServiceStartError(msg) from exc
                time.sleep(0.5)
    finally:
        consumer.close()
    producer = Producer({**kafka.client_config(), **quiet, "transactional.id": _WARMUP_ID})
    try:
        producer.init_transactions(max(1.0, deadline - time.monotonic()))
    except KafkaException as exc:
        msg = f"the cluster did not create its transaction state topic: {exc}"
        raise ServiceStartError(msg) from exc
