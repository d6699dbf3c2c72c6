"""Crash safety: kill -9 the validator at random moments while records arrive.

50k records with 5% faults (4% bad across every fault kind, 1% duplicates) are
produced at about 2.5k/s while a `kappa validate` subprocess is killed with
SIGKILL five times, each at a random moment after it started judging, and
restarted. A last run with --until-caught-up finishes the topic. Then the ledger
balances, read_committed cdr.valid holds no call_id twice, and the DLQ holds each
faulty record exactly once, under its rule.
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader

from kappa import clients
from kappa.settings import TopicSettings, ValidatorSettings
from producers.clock import WallClock
from producers.generator import CdrGenerator, FaultRates, Generated
from producers.run import ProduceRequest, produce
from schemas import SchemaName, WireEncoder, load_schema, parsed_schema, rules
from schemas.wire import Decoded, WireDecoder
from streams.validate.ledger import ledger
from tests.fixtures.validate import read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 50_000
RATE = 2500.0
SEED = 4242
FAULTS = FaultRates(bad=0.04, duplicate=0.01)
KILLS = 5
PHONE = re.compile(rules.PHONE_PATTERN.strip("^$"))


def _env(stack: Any, topics: TopicSettings, settings: ValidatorSettings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
            "KAPPA_TOPIC_RAW": topics.raw,
            "KAPPA_TOPIC_VALID": topics.valid,
            "KAPPA_TOPIC_DLQ": topics.dlq,
            "KAPPA_VALIDATOR_GROUP_ID": settings.group_id,
            "KAPPA_VALIDATOR_TRANSACTIONAL_ID": settings.transactional_id,
            "KAPPA_VALIDATOR_METRICS_PORT": "0",
            "KAPPA_VALIDATOR_BATCH_SIZE": "2000",
            "KAPPA_VALIDATOR_BATCH_SECONDS": "0.2",
            "KAPPA_VALIDATOR_SESSION_TIMEOUT_MS": "6000",
        }
    )
    return env


def _start(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    kappa = Path(sys.executable).with_name("kappa")
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(kappa), "validate", *extra], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_started(proc: subprocess.Popen[bytes], log: Path, starts: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("assigned topic=") >= starts:
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.1)
    msg = f"validator did not start in {timeout} s"
    raise AssertionError(msg)


def _expected(raw_id: int) -> list[Generated]:
    gen = CdrGenerator(
        seed=SEED,
        clock=WallClock(),
        encode=WireEncoder(load_schema(SchemaName.CDR_RAW), raw_id).encode,
        encode_legacy=WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), raw_id).encode,
        faults=FAULTS,
    )
    return [gen.next() for _ in range(COUNT)]


def _really_faulty(g: Generated) -> bool:
    """The generator's phone_format faults include '+94712345678', which is a valid number."""
    if g.kind != rules.PHONE_FORMAT.name:
        return g.expected_rule is not None
    rec = schemaless_reader(io.BytesIO(g.value[5:]), parsed_schema(SchemaName.CDR_RAW), None)
    assert isinstance(rec, dict)
    return not all(PHONE.fullmatch(rec[c]) for c in ("caller_num", "callee_num"))


def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    stack: Any,
    validator_topics: TopicSettings,
    validator_settings: ValidatorSettings,
    tmp_path: Path,
) -> None:
    topics = validator_topics
    env = _env(stack, topics, validator_settings)
    log = tmp_path / "validator.log"
    rng = random.Random(7)
    req = ProduceRequest(
        rate=RATE,
        count=COUNT,
        duration_s=None,
        seed=SEED,
        faults=FAULTS,
        clock=WallClock(),
        topic=topics.raw,
    )
    produced: dict[str, Any] = {}
    producer = threading.Thread(
        target=lambda: produced.update(stats=produce(stack.kafka, stack.registry, topics, req)),
        daemon=True,
    )
    producer.start()
    started = time.monotonic()
    kills = 0
    proc = _start(env, log)
    try:
        while kills < KILLS:
            _wait_started(proc, log, kills + 1, 180)
            time.sleep(rng.uniform(0.2, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            kills += 1
            proc = _start(env, log)
        producer.join(300)
        assert not producer.is_alive()
        assert produced["stats"].delivered == COUNT
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        final = _start(env, log, "--until-caught-up")
        assert final.wait(240) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert kills == KILLS
    elapsed = time.monotonic() - started

    report = ledger(
        stack.kafka,
        stack.registry,
        topics,
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert report.balanced, report.as_dict()
    assert report.raw == COUNT

    valid = read_all(stack.kafka, topics.valid)
    keys = Counter(m.key() for m in valid)
    assert keys.most_common(1)[0][1] == 1

    decoder = WireDecoder(clients.registry(stack.registry))
    dead = []
    for m in read_all(stack.kafka, topics.dlq):
        got = decoder.decode(m.value())
        assert isinstance(got, Decoded)
        dead.append(got.record)
    expected = [g for g in _expected(1) if _really_faulty(g)]
    want = Counter((g.key, g.expected_rule) for g in expected)
    got_pairs: Counter[tuple[bytes | None, str | None]] = Counter()
    for d in dead:
        rule_names = [f["rule"] for f in d["failures"]]
        match = next(
            (
                (d["original_key"], r)
                for r in rule_names
                if want[(d["original_key"], r)] > got_pairs[(d["original_key"], r)]
            ),
            None,
        )
        assert match is not None, (d["original_key"], rule_names)
        got_pairs[match] += 1
    assert got_pairs == want
    assert len(dead) == len(expected)
    print(
        f"crash test: {kills} kills, {COUNT} records, {len(dead)} dead letters, "
        f"{len(valid)} valid, {elapsed:.0f} s"
    )
