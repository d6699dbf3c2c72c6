"""kappa produce against the real broker and registry."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from kappa import clients
from kappa.settings import TopicSettings
from producers.clock import SimulatedClock
from producers.generator import FaultRates
from producers.run import ProduceRequest, produce
from tests.harness.stack import StackHandle, TopicFactory

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def read_all(stack: StackHandle, topic: str, expected: int) -> list:
    consumer: Consumer = clients.consumer(stack.kafka, group_id=f"t-{topic}")
    md = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    out = []
    idle = 0
    while len(out) < expected and idle < 20:
        batch = consumer.consume(10_000, timeout=0.5)
        idle = 0 if batch else idle + 1
        out.extend(m for m in batch if m.error() is None)
    consumer.close()
    return out


def test_every_record_decodes_with_the_registry_deserializer(
    stack: StackHandle, topic: TopicFactory
) -> None:
    raw = topic(partitions=3)
    topics = TopicSettings(raw=raw)
    req = ProduceRequest(
        rate=0,
        count=3000,
        duration_s=None,
        seed=11,
        faults=FaultRates(late=0.05, duplicate=0.02),
        clock=SimulatedClock(start=START, speed=60, rate=100),
    )
    stats = produce(stack.kafka, stack.registry, topics, req)
    assert stats.delivered == 3000
    assert stats.errors == 0

    messages = read_all(stack, raw, 3000)
    assert len(messages) == 3000
    deserializer = AvroDeserializer(clients.registry(stack.registry))
    partitions_by_key: dict[bytes, set[int]] = {}
    for m in messages:
        record = deserializer(m.value(), SerializationContext(raw, MessageField.VALUE))
        assert record is not None
        assert record["call_id"].encode() == m.key()
        # The message timestamp is the event time.
        assert m.timestamp()[1] == int(record["event_time"].timestamp() * 1000)
        partitions_by_key.setdefault(m.key(), set()).add(m.partition())
    # A call_id (duplicates included) always lands on one partition.
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert len({m.partition() for m in messages}) == 3


def test_faulty_records_reach_the_topic_too(stack: StackHandle, topic: TopicFactory) -> None:
    raw = topic(partitions=1)
    req = ProduceRequest(
        rate=0,
        count=2000,
        duration_s=None,
        seed=5,
        faults=FaultRates(bad=0.5),
        clock=SimulatedClock(start=START, speed=60, rate=100),
    )
    stats = produce(stack.kafka, stack.registry, TopicSettings(raw=raw), req)
    assert stats.delivered == 2000
    kinds = Counter(k.split(":")[0] for k in stats.by_kind)
    assert kinds["undecodable"] == 4
    assert len(read_all(stack, raw, 2000)) == 2000


def cli_env(stack: StackHandle) -> dict[str, str]:
    """The environment of ``kappa produce`` run as a subprocess against ``stack``."""
    return {
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
        "KAPPA_PRODUCER_METRICS_PORT": "0",
        "PATH": "/usr/bin:/bin",
    }


def test_cli_rate_and_summary(stack: StackHandle, topic: TopicFactory) -> None:
    raw = topic(partitions=1)
    env = cli_env(stack)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "produce",
            "--topic",
            raw,
            "--duration",
            "2",
            "--seed",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    import json

    summary = json.loads(out.stdout.strip().splitlines()[-1])
    # The default rate is 10/s: about 20 records in two seconds.
    assert 15 <= summary["sent"] <= 22
    assert summary["delivered"] == summary["sent"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "5", "--rate", "-1"], "--rate must be 0 or more"),
        (["--count", "5", "--clock", "simulated"], "--clock simulated needs --start"),
        (["--count", "5", "--bad-rate", "0.6", "--late-rate", "0.6"], "must not exceed 1"),
        (["--rate", "5"], "give --count N or --duration SECONDS"),
        (["--count", "5", "--start", "yesterday", "--clock", "simulated"], "not an ISO-8601 time"),
    ],
)
def test_bad_flags_get_a_message_not_a_traceback(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "produce", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"KAPPA_PRODUCER_METRICS_PORT": "0", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_workers_share_the_work_and_a_seed_gives_the_same_records(
    stack: StackHandle, topic: TopicFactory
) -> None:
    """Two runs of ``produce --workers 2`` with one seed (simulated clock): the same
    records, keys and timestamps; as many as asked, none twice."""
    import json

    env = cli_env(stack)
    runs = []
    for _ in range(2):
        raw = topic(partitions=3)
        out = subprocess.run(
            [
                *(sys.executable, "-m", "cli", "produce", "--topic", raw, "--count", "3001"),
                *("--rate", "3000", "--workers", "2", "--seed", "21", "--bad-rate", "0.05"),
                *("--clock", "simulated", "--start", "2026-01-05T06:00:00Z", "--json"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=True,
        )
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert summary["workers"] == 2
        assert summary["delivered"] == summary["sent"] == 3001
        runs.append(
            Counter((m.key(), m.value(), m.timestamp()[1]) for m in read_all(stack, raw, 3001))
        )
    assert runs[0] == runs[1]
    assert sum(runs[0].values()) == 3001
    assert len({k for k, _, _ in runs[0]}) > 2900  # call_ids: duplicates only where injected


def test_a_missing_topic_is_named_before_anything_is_sent(stack: StackHandle) -> None:
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "cli", "produce", "--topic", missing, "--count", "5"],
        capture_output=True,
        text=True,
        env=cli_env(stack),
        timeout=120,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert f"topic(s) {missing} does not exist on {stack.kafka.bootstrap}" in out.stderr
    assert "Traceback" not in out.stderr
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap})
    assert missing not in admin.list_topics(timeout=30).topics  # nothing auto-created
