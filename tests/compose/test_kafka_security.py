"""The compose broker's security, on a real Kafka without Docker.

The ``kafka`` service's environment (compose/docker-compose.yml) is turned into
broker properties the way the apache/kafka image does it, a broker is started
from the local stack's Kafka jars with compose/kafka/kafka_server_jaas.conf,
compose/kafka/setup.py (the ``kafka-init`` service) creates the users, topics
and ACLs, and each service's user is checked: allowed what it needs, denied
the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from kappa.settings import StackSettings
from stack.layout import repo_root
from stack.net import LOOPBACK, free_ports

ROOT = Path(__file__).resolve().parents[2]
KAFKA_DIR = ROOT / "compose" / "kafka"
SETUP = KAFKA_DIR / "setup.py"
TOPICS = ("cdr.raw", "cdr.valid", "cdr.dlq", "cdr.billing.5m", "cdr.network.5m", "cdr.late")
PASSWORDS = {
    "KAFKA_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex[:16],
    "KAFKA_PRODUCER_PASSWORD": "producer-" + uuid.uuid4().hex[:16],
    "KAFKA_VALIDATOR_PASSWORD": "validator-" + uuid.uuid4().hex[:16],
    "KAFKA_AGGREGATE_PASSWORD": "aggregate-" + uuid.uuid4().hex[:16],
    "KAFKA_REPLAY_PASSWORD": "replay-" + uuid.uuid4().hex[:16],
    "KAFKA_UI_KAFKA_PASSWORD": "kafka-ui-" + uuid.uuid4().hex[:16],
}
USER_PASSWORD = {
    "producer": PASSWORDS["KAFKA_PRODUCER_PASSWORD"],
    "validator": PASSWORDS["KAFKA_VALIDATOR_PASSWORD"],
    "aggregate": PASSWORDS["KAFKA_AGGREGATE_PASSWORD"],
    "replay": PASSWORDS["KAFKA_REPLAY_PASSWORD"],
    "kafka-ui": PASSWORDS["KAFKA_UI_KAFKA_PASSWORD"],
}
# what the apache/kafka image leaves out of server.properties
_NOT_PROPERTIES = {
    "KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL",
    "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL",
}  # fmt: skip


def _kafka_service_env() -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    env = compose["services"]["kafka"]["environment"]
    values = {**PASSWORDS, "KAFKA_CLUSTER_ID": "2tP3WXmHRMSobgUNYNgB3g"}
    out = {}
    for key, value in env.items():
        text = str(value)
        for var, val in values.items():
            text = text.replace(f"${{{var}:?set it in compose/.env}}", val)
        assert "${" not in text or ":-" in text, f"{key}: {text}"
        out[key] = _defaults(text)
    return out


def _defaults(text: str) -> str:
    while "${" in text:
        start = text.index("${")
        end = text.index("}", start)
        text = text[:start] + text[start + 2 : end].split(":-", 1)[1] + text[end + 1 :]
    return text


def image_properties(env: dict[str, str]) -> dict[str, str]:
    """KAFKA_FOO_BAR -> foo.bar ('__' -> '_', '___' -> '-'), as the image renders them."""
    props = {}
    for key, value in env.items():
        if not key.startswith("KAFKA_") or key in _NOT_PROPERTIES:
            continue
        name = key[6:].lower().replace("___", "-").replace("__", "\0").replace("_", ".")
        props[name.replace("\0", "_")] = value
    return props


@dataclass(frozen=True)
class Broker:
    internal: str  # SCRAM listener of the services
    broker: str  # PLAIN admin listener

    def client(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.internal,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password or USER_PASSWORD[user],
        }


def _kafka_classpath() -> str | None:
    deps = StackSettings().deps_dir
    deps = deps if deps.is_absolute() else repo_root() / deps
    home = deps / "jvm" / "kafka"
    lib = home / "lib" if (home / "lib").is_dir() else home
    return f"{lib}/*" if any(lib.glob("kafka_2.13-*.jar")) else None


def _setup_env(broker: Broker) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "BROKER_ADMIN_BOOTSTRAP": broker.broker,
        "BROKER_ADMIN_PASSWORD": PASSWORDS["KAFKA_ADMIN_PASSWORD"],
        "PRODUCER_PASSWORD": USER_PASSWORD["producer"],
        "VALIDATOR_PASSWORD": USER_PASSWORD["validator"],
        "AGGREGATE_PASSWORD": USER_PASSWORD["aggregate"],
        "REPLAY_PASSWORD": USER_PASSWORD["replay"],
        "KAFKA_UI_PASSWORD": USER_PASSWORD["kafka-ui"],
        "BROKER_WAIT_S": "60",
    }


def _run_setup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SETUP)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    classpath = _kafka_classpath()
    java = shutil.which("java")
    if classpath is None or java is None:
        pytest.skip("the local stack's Kafka jars or java are missing (make install)")
    home = tmp_path_factory.mktemp("compose-kafka")
    controller, broker_port, internal, external = free_ports(4)
    env = _kafka_service_env()
    props = image_properties(env)
    names = {"CONTROLLER": controller, "BROKER": broker_port, "INTERNAL": internal}
    names["EXTERNAL"] = external
    props["listeners"] = ",".join(f"{n}://{LOOPBACK}:{p}" for n, p in names.items())
    props["advertised.listeners"] = ",".join(
        f"{n}://{LOOPBACK}:{p}" for n, p in names.items() if n != "CONTROLLER"
    )
    props["controller.quorum.voters"] = f"1@{LOOPBACK}:{controller}"
    props["log.dirs"] = str(home / "data")
    config = home / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in sorted(props.items())))
    jvm = [java, "-Xms128m", "-Xmx384m", "-cp", classpath]
    subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "-t", env["CLUSTER_ID"], "-c", str(config)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    jaas = f"-Djava.security.auth.login.config={KAFKA_DIR / 'kafka_server_jaas.conf'}"
    with (home / "broker.log").open("wb") as out:
        proc = subprocess.Popen(
            [*jvm, jaas, "kafka.Kafka", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    broker = Broker(internal=f"{LOOPBACK}:{internal}", broker=f"{LOOPBACK}:{broker_port}")
    try:
        result = _run_setup(_setup_env(broker))
        log = (home / "broker.log").read_text(errors="replace")[-3000:]
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\nbroker:\n{log}"
        yield broker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _produce(conf: dict[str, Any], topic: str, **extra: Any) -> None:
    settings = {"enable.idempotence": True, "acks": "all", "message.timeout.ms": 10_000}
    producer = Producer({**conf, **settings, **extra})
    errors: list[Any] = []
    producer.produce(topic, key=b"k", value=b"v", on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(15) == 0
    if errors[0] is not None:
        raise KafkaException(errors[0])


def _consumer(conf: dict[str, Any], group: str) -> Consumer:
    return Consumer(
        {
            **conf,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


def _first(conf: dict[str, Any], topic: str, group: str) -> Any:
    consumer = _consumer(conf, group)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            return msg
        pytest.fail(f"nothing read from {topic}")
    finally:
        consumer.close()


def _visible(conf: dict[str, Any]) -> set[str]:
    topics = AdminClient(conf).list_topics(timeout=10).topics
    return {t for t in topics if not t.startswith("__")}


@pytest.mark.integration
def test_setup_is_idempotent(secured_broker: Broker) -> None:
    again = _run_setup(_setup_env(secured_broker))
    assert again.returncode == 0, again.stderr
    assert "topic cdr.raw exists" in again.stdout


@pytest.mark.integration
def test_each_service_sees_only_its_topics(secured_broker: Broker) -> None:
    assert _visible(secured_broker.client("producer")) == {"cdr.raw"}
    assert _visible(secured_broker.client("aggregate")) == {
        "cdr.valid", "cdr.billing.5m", "cdr.network.5m", "cdr.late",
    }  # fmt: skip
    assert _visible(secured_broker.client("kafka-ui")) == set(TOPICS)


@pytest.mark.integration
def test_wrong_password_is_refused(secured_broker: Broker) -> None:
    admin = AdminClient(secured_broker.client("producer", password="not-the-password-1"))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


@pytest.mark.integration
def test_producer_writes_raw_only(secured_broker: Broker) -> None:
    conf = secured_broker.client("producer")
    _produce(conf, "cdr.raw")
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        _produce(conf, "cdr.valid")


@pytest.mark.integration
def test_validator_routes_in_one_transaction(secured_broker: Broker) -> None:
    _produce(secured_broker.client("producer"), "cdr.raw")
    conf = secured_broker.client("validator")
    consumer = _consumer(conf, "kappa-validator")
    producer = Producer({**conf, "transactional.id": "kappa-validator-0"})
    try:
        producer.init_transactions(30)
        consumer.subscribe(["cdr.raw"])
        msg = None
        deadline = time.monotonic() + 20
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
        assert msg is not None
        assert msg.error() is None
        producer.begin_transaction()
        producer.produce("cdr.valid", key=b"k", value=b"v")
        producer.produce("cdr.dlq", key=b"k", value=b"v")
        offsets = [TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
    finally:
        consumer.close()
    # what it wrote, its DLQ tools read back; the raw topic stays the producer's
    assert _first(conf, "cdr.dlq", "kappa-dlq-tail") is not None
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        _produce(conf, "cdr.raw")


@pytest.mark.integration
def test_foreign_groups_and_transactional_ids_are_denied(secured_broker: Broker) -> None:
    conf = secured_broker.client("validator")
    with pytest.raises(KafkaException, match="GROUP_AUTHORIZATION_FAILED"):
        _first(conf, "cdr.raw", "someone-else")
    producer = Producer({**conf, "transactional.id": "someone-else-0"})
    with pytest.raises(KafkaException, match="TRANSACTIONAL_ID_AUTHORIZATION_FAILED"):
        producer.init_transactions(15)


@pytest.mark.integration
def test_replay_reads_the_log_and_its_retention(secured_broker: Broker) -> None:
    _produce(secured_broker.client("producer"), "cdr.raw")
    conf = secured_broker.client("replay")
    assert _first(conf, "cdr.raw", "kappa-ledger") is not None
    resource = ConfigResource(ConfigResource.Type.TOPIC, "cdr.valid")
    admin = AdminClient(conf)  # keep the client alive while its future resolves
    configs = admin.describe_configs([resource], request_timeout=15)
    assert configs[resource].result()["retention.ms"].value == "315360000000"
