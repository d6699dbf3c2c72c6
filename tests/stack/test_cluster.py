"""The local multi-node cluster: real nodes up, a Spark job across both workers, a broker killed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from cli.stack import stack as stack_cli
from kappa.settings import TopicSettings
from stack.layout import repo_root
from stack.process import alive
from stack.topics import compacted_topics
from tests.fixtures.cluster import ClusterHandle

NODES = {
    "kafka-1",
    "kafka-2",
    "kafka-3",
    "registry",
    "spark-master",
    "spark-worker-1",
    "spark-worker-2",
    "hdfs-namenode",
    "hdfs-datanode-1",
    "hdfs-datanode-2",
}


def _env(cluster: ClusterHandle) -> dict[str, str]:
    """What `kappa stack` needs to find the cluster: the state folder (it holds the record)."""
    return {
        "KAPPA_STATE_DIR": str(cluster.stack_settings.state_dir),
        "KAPPA_DEPS_DIR": str(cluster.stack_settings.deps_dir),
        # the single-node stack of that folder, never started, on ports nobody uses
        "KAPPA_KAFKA_PORT": str(cluster.stack_settings.kafka_port),
        "KAPPA_REGISTRY_PORT": str(cluster.stack_settings.registry_port),
    }


def _cli_status(cluster: ClusterHandle) -> tuple[int, dict[str, dict[str, Any]]]:
    result = CliRunner().invoke(stack_cli, ["status", "--json"], env=_env(cluster))
    payload = json.loads(result.output)
    return result.exit_code, {s["name"]: s for s in payload["cluster"]["services"]}


def _configs(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {key: entry.value for key, entry in entries.items()}


def _produce(cluster: ClusterHandle, topic: str, count: int, keys: int) -> None:
    producer = Producer(
        {**cluster.kafka.client_config(), "acks": "all", "enable.idempotence": True}
    )
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    for i in range(count):
        producer.produce(topic, key=f"k{i % keys}", value=f"v{i}", on_delivery=delivered)
    assert producer.flush(120) == 0
    assert not failed, failed[:3]


def test_compose_creates_the_same_compacted_topics() -> None:
    """compose/kafka/setup.py compacts exactly the topics the local stacks compact."""
    spec = importlib.util.spec_from_file_location(
        "compose_kafka_setup", repo_root() / "compose" / "kafka" / "setup.py"
    )
    assert spec is not None
    assert spec.loader is not None
    setup = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = setup  # dataclasses look their module up
    spec.loader.exec_module(setup)
    assert set(setup.Topics.from_env({}).compacted()) == set(compacted_topics(TopicSettings()))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.cluster
def test_every_node_is_up_and_topics_are_replicated(cluster: ClusterHandle) -> None:
    code, nodes = _cli_status(cluster)
    assert code == 0
    assert set(nodes) == NODES
    assert {n: s["health"] for n, s in nodes.items()} == dict.fromkeys(NODES, "up")
    assert all(s["pid"] for s in nodes.values())
    assert len(cluster.kafka.bootstrap.split(",")) == 3
    assert cluster.spark_master.startswith("spark://127.0.0.1:")

    admin = AdminClient(cluster.kafka.client_config())
    meta = admin.list_topics(timeout=30)
    assert sorted(meta.brokers) == [1, 2, 3]
    name = cluster.create_topic()
    meta = admin.list_topics(timeout=30)
    for topic in [name, *TopicSettings().all(), "__consumer_offsets", "__transaction_state"]:
        partitions = meta.topics[topic].partitions.values()
        assert {len(p.replicas) for p in partitions} == {3}, topic
    assert _configs(admin, name)["min.insync.replicas"] == "2"

    compacted = set(compacted_topics(TopicSettings()))
    assert compacted == {"cdr.billing.5m", "cdr.network.5m", "cdr.late"}
    for topic in TopicSettings().all():
        config = _configs(admin, topic)
        assert config["cleanup.policy"] == ("compact" if topic in compacted else "delete"), topic
        assert config["min.insync.replicas"] == "2", topic


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.cluster
def test_a_spark_job_reads_kafka_and_writes_hdfs_on_both_workers(
    cluster: ClusterHandle, tmp_path: Path
) -> None:
    topic = cluster.create_topic()
    _produce(cluster, topic, count=1000, keys=100)
    args = {
        "master": cluster.spark_master,
        "bootstrap": cluster.kafka.bootstrap,
        "topic": topic,
        "output": cluster.path("tests", topic),
        "deps_dir": str(cluster.stack_settings.deps_dir),
        "conf": cluster.spark_conf(),
        "executors": 2,
    }
    # The session's JVM holds the shared local-mode SparkContext: the driver runs apart.
    out = subprocess.run(
        [sys.executable, "-m", "tests.stack.cluster_job", json.dumps(args)],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (tmp_path / "driver.log").write_text(out.stderr)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["rows"] == 1000
    assert seen["keys"] == 100
    assert seen["executors"] == 2
    workers = {w for d in seen["dirs"] for w in ("spark-worker-1", "spark-worker-2") if w in d}
    assert workers == {"spark-worker-1", "spark-worker-2"}, seen["dirs"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.cluster
def test_a_killed_broker_loses_no_write_and_comes_back(cluster: ClusterHandle) -> None:
    topic = cluster.create_topic()
    killed = cluster.kill_broker(2)
    assert "kafka-2" not in cluster.pids()
    code, nodes = _cli_status(cluster)
    assert code == 1
    assert nodes["kafka-2"]["health"] == "down"
    assert nodes["kafka-1"]["health"] == "up"

    # two of three replicas are in sync: acks=all writes go on
    _produce(cluster, topic, count=300, keys=30)
    consumer = Consumer(
        {
            **cluster.kafka.client_config(),
            "group.id": f"{topic}.reader",
            "auto.offset.reset": "earliest",
        }
    )
    expected = {f"v{i}".encode() for i in range(300)}
    values: set[bytes] = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 120
        while values != expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.add(msg.value())
        consumer.commit(asynchronous=False)  # the offsets topic takes writes too
    finally:
        consumer.close()
    assert values == expected

    assert cluster.revive() == ["kafka-2"]
    assert cluster.pids()["kafka-2"] != killed
    code, nodes = _cli_status(cluster)
    assert code == 0
    assert nodes["kafka-2"]["health"] == "up"

    # `kappa stack down` leaves no process of the cluster, executors included
    pids = set(cluster.pids().values())
    down = subprocess.run(
        [str(Path(sys.executable).with_name("kappa")), "stack", "down"],
        env={**os.environ, **_env(cluster)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert down.returncode == 0, down.stderr[-2000:]
    assert "stopped (cluster): kafka-1, kafka-2, kafka-3" in down.stdout
    assert not cluster.leftover_processes()
    assert not any(alive(pid) for pid in pids)
    assert not cluster.local.recorded()
    # the session's cluster serves later tests: up again, on its data
    cluster.revive()
    assert {row.health for row in cluster.status().values()} == {"up"}
