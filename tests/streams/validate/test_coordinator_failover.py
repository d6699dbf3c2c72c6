"""The validator through the loss of its coordinators' broker, on the local cluster.

The validator's group id and transactional id are chosen so that one broker
coordinates both its consumer group and its transactions (the leader of their
partitions of ``__consumer_offsets`` and ``__transaction_state``). The validator idles
a while, records start to stream, and that broker is killed with SIGKILL during the
first transactions, stays down long enough for the controller to fence it (it drops
out of the metadata), and comes back. librdkafka (up to 2.14 at
least, its issues #5456 and #5511) can leave ``send_offsets_to_transaction`` blocked for
good past its timeout in just this case; the validator then replaces its producer
(``streams.validate.transaction``). Whatever happened inside, the validator catches up
by itself and the outcome is exact: the ledger balances, read_committed cdr.valid
holds no call_id twice, the DLQ holds each faulty record once, under its rule.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kappa.settings import TopicSettings, ValidatorSettings
from producers.generator import FaultRates
from tests.fixtures.cluster import ClusterHandle
from tests.stack.chaos_tools import elect_preferred_leaders
from tests.streams.validate.processes import (
    Producing,
    assert_exact_outcome,
    ledger_report,
    start_validator,
    validator_env,
    wait_assigned,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]

COUNT = 12_000
RATE = 1000.0
SEED = 4242
FAULTS = FaultRates(bad=0.03, duplicate=0.01)
IDLE_S = 20.0  # before the first record: its connections idle, as in a quiet hour
KILL_AFTER_S = 3.0
DOWN_FOR_S = 15.0  # past the controller's broker session timeout (9 s): fenced


def java_hash(text: str) -> int:
    """Kafka's ``Utils.abs(text.hashCode())``: how it maps an id to a coordinator partition."""
    h = 0
    for ch in text.encode("utf-16-be").decode("utf-16-be"):
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


def shared_coordinator(cluster: ClusterHandle) -> tuple[str, int]:
    """An id that, as group id and as transactional id, has one broker coordinate both;
    the id and that broker's node id."""
    meta = AdminClient(cluster.kafka.client_config()).list_topics(timeout=30)
    offsets = meta.topics["__consumer_offsets"].partitions
    txns = meta.topics["__transaction_state"].partitions
    for _ in range(1000):
        name = f"failover-validator-{uuid.uuid4().hex[:8]}"
        group = offsets[java_hash(name) % len(offsets)].leader
        txn = txns[java_hash(name) % len(txns)].leader
        if group == txn >= 0:
            return name, group
    msg = "no id found whose group and transaction coordinators share a broker"
    raise AssertionError(msg)


def balanced(cluster: ClusterHandle, topics: TopicSettings) -> tuple[bool, dict[str, object]]:
    """Whether the ledger balances over all COUNT records (asked again while leaders move)."""
    try:
        report = ledger_report(cluster, topics)
    except KafkaException as exc:
        return False, {"error": str(exc)}
    return report.balanced and report.raw == COUNT, report.as_dict()


@pytest.mark.timeout(900)
def test_validator_goes_on_when_its_group_coordinator_dies(
    cluster: ClusterHandle, tmp_path: Path
) -> None:
    name, coordinator = shared_coordinator(cluster)
    topics = TopicSettings(
        raw=cluster.create_topic(prefix="failover.raw"),
        valid=cluster.create_topic(prefix="failover.valid"),
        dlq=cluster.create_topic(prefix="failover.dlq"),
    )
    settings = ValidatorSettings(group_id=name, transactional_id=name)
    log = tmp_path / "validate.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = start_validator(validator_env(cluster, topics, settings), log)
        wait_assigned(proc, log, 1, 120)
        time.sleep(IDLE_S)
        producer = Producing(cluster, topics, COUNT, RATE, SEED, FAULTS).start()
        time.sleep(KILL_AFTER_S)
        cluster.kill_broker(coordinator)
        time.sleep(DOWN_FOR_S)
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        cluster.revive()
        elect_preferred_leaders(cluster.kafka.client_config())
        assert producer.join(300).delivered == COUNT

        deadline = time.monotonic() + 300
        done, report = balanced(cluster, topics)
        while not done:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGUSR1)  # its threads' stacks, into the log
                time.sleep(1)
                tail = log.read_text(errors="replace")[-8000:]
                msg = f"the validator did not catch up: {report}\n{tail}"
                raise AssertionError(msg)
            time.sleep(2)
            done, report = balanced(cluster, topics)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if cluster.killed:  # the session's cluster serves later tests
            cluster.revive()
    assert_exact_outcome(cluster, topics, COUNT, SEED, FAULTS)
    text = log.read_text(errors="replace")
    print(f"coordinator kafka-{coordinator}; replaced producers: {text.count('wedged')}")
