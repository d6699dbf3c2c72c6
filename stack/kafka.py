"""KRaft brokers (broker and controller in one JVM): the single node, or one node of
the three of the local cluster."""

from __future__ import annotations

import base64
import contextlib
import logging
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from kappa.settings import ClusterSettings, KafkaSettings, StackSettings, TopicSettings
from stack import cds
from stack.exceptions import ServiceStartError
from stack.java import Jdk, find_java
from stack.layout import Layout, copy_template, render
from stack.net import LOOPBACK, port_open
from stack.process import ServiceSpec, jvm_marker

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
JAVA_MIN = 17


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid()``, never one starting with a dash, which
    command lines would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaService:
    name = "kafka"

    def __init__(self, settings: StackSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.topics = topics
        self.layout = Layout.of(settings)

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def ports(self) -> dict[str, int]:
        return {
            "kafka": self.settings.kafka_port,
            "kafka controller": self.settings.controller_port,
        }

    @property
    def home(self) -> Path:
        return self.layout.home("kafka")

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def logs_dir(self) -> Path:
        return self.layout.state_dir / "logs" / self.name

    @property
    def heap(self) -> str:
        return self.settings.kafka_heap

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def url(self) -> str:
        return self.bootstrap()

    def client_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=self.bootstrap())

    def _jdk(self) -> Jdk:
        return find_java(JAVA_MIN, self.settings.java_home)

    def _classpath(self) -> str:
        return str(self.layout.require("kafka", "kafka_2.13-*.jar") / "*")

    def check(self) -> None:
        self._classpath()
        self._jdk()

    def _jvm_args(self, heap: str, name: str, extra: list[str] | None = None) -> list[str]:
        logs = self.logs_dir
        logs.mkdir(parents=True, exist_ok=True)
        return [
            str(self._jdk().java),
            *(extra or []),
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            jvm_marker(name, self.layout.state_dir),
            "-cp",
            self._classpath(),
        ]

    def cluster_id(self) -> str:
        """The KRaft cluster id, made on first use and kept next to the data."""
        id_file = self.cluster_id_file
        if not id_file.exists():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(new_cluster_id() + "\n")
        return id_file.read_text().strip()

    def render_config(self) -> None:
        render(
            "kafka/server.properties",
            self.config_file,
            kafka_port=self.settings.kafka_port,
            controller_port=self.settings.controller_port,
            data_dir=self.data_dir,
            partitions=self.topics.partitions,
            retention_ms=self.topics.retention_ms,
        )

    def prepare(self) -> None:
        self.render_config()
        copy_template("kafka/log4j2.properties", self.home / "log4j2.properties")
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = self.cluster_id()
        log.info("formatting kafka storage cluster_id=%s dir=%s", cluster_id, self.data_dir)
        argv = [
            *self._jvm_args("256m", f"{self.name}-format"),
            STORAGE_TOOL,
            "format",
            f"--cluster-id={cluster_id}",
            f"--config={self.config_file}",
            "--ignore-formatted",
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            msg = f"formatting Kafka storage in {self.data_dir} failed: {detail[0]}"
            raise ServiceStartError(msg)

    def spec(self) -> ServiceSpec:
        # every node of the cluster shares the single node's archive (same classpath)
        archive = cds.plan(self._jdk(), self.layout.jvm("kafka"), "kafka")
        return ServiceSpec(
            name=self.name,
            cds=archive,
            argv=[
                *self._jvm_args(self.heap, self.name, archive.args),
                MAIN_CLASS,
                str(self.config_file),
            ],
            marker=jvm_marker(self.name, self.layout.state_dir),
            cwd=self.home,
        )

    def _metadata_brokers(self) -> set[int]:
        """The broker ids this node's metadata names (empty when it does not answer)."""
        if not port_open(self.port):
            return set()
        admin = AdminClient(
            {
                **KafkaSettings(bootstrap=self.bootstrap()).client_config(),
                "socket.connection.setup.timeout.ms": 2000,
                "logger": logging.getLogger("stack.kafka.librdkafka"),
            }
        )
        with contextlib.suppress(Exception):
            return set(admin.list_topics(timeout=3).brokers)
        return set()

    def healthy(self) -> bool:
        return bool(self._metadata_brokers())


class KafkaNodeService(KafkaService):
    """Node ``node_id`` (1, 2, 3) of the local cluster: broker and one of the three voters.

    Its state is ``<cluster state>/kafka-<n>/``; the three nodes share one KRaft
    cluster id (``<cluster state>/kafka.cluster.id``), each formats its own log dir.
    """

    def __init__(
        self,
        settings: StackSettings,
        topics: TopicSettings,
        cluster: ClusterSettings,
        node_id: int,
    ) -> None:
        super().__init__(settings, topics)
        self.cluster = cluster
        self.node_id = node_id
        self.name = f"kafka-{node_id}"

    @property
    def port(self) -> int:
        return self.cluster.kafka_ports[self.node_id - 1]

    @property
    def controller_port(self) -> int:
        return self.cluster.controller_ports[self.node_id - 1]

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port, f"{self.name} controller": self.controller_port}

    @property
    def home(self) -> Path:
        return self.layout.home(self.name)

    @property
    def heap(self) -> str:
        return self.cluster.kafka_heap

    @property
    def cluster_id_file(self) -> Path:
        return self.layout.state_dir / "kafka.cluster.id"

    def client_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=cluster_bootstrap(self.cluster))

    def render_config(self) -> None:
        voters = ",".join(
            f"{i}@{LOOPBACK}:{port}" for i, port in enumerate(self.cluster.controller_ports, 1)
        )
        render(
            "kafka/cluster.properties",
            self.config_file,
            node_id=self.node_id,
            voters=voters,
            kafka_port=self.port,
            controller_port=self.controller_port,
            data_dir=self.data_dir,
            partitions=self.topics.partitions,
            retention_ms=self.topics.retention_ms,
        )

    def healthy(self) -> bool:
        """It answers on its own port and its metadata names it: registered as a broker."""
        return self.node_id in self._metadata_brokers()


def cluster_bootstrap(cluster: ClusterSettings) -> str:
    """The bootstrap servers of the local cluster: its three brokers."""
    return ",".join(f"{LOOPBACK}:{port}" for port in cluster.kafka_ports)
