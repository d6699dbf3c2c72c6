"""``kappa validate`` as users run it, in subprocesses, and the exact outcome every
run must leave: used by the crash and scale-out tests."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader

from kappa import clients
from kappa.settings import TopicSettings, ValidatorSettings
from producers.clock import WallClock
from producers.generator import CdrGenerator, FaultRates, Generated
from producers.run import ProduceRequest, ProduceStats, produce
from schemas import SchemaName, WireEncoder, load_schema, parsed_schema, rules
from schemas.wire import Decoded, WireDecoder
from streams.validate.ledger import ledger
from tests.fixtures.validate import read_all

PHONE = re.compile(rules.PHONE_PATTERN.strip("^$"))


def validator_env(
    stack: Any, topics: TopicSettings, settings: ValidatorSettings, transactional_id: str = ""
) -> dict[str, str]:
    """The environment of one instance (``transactional_id``: its own, stable, unique)."""
    env = dict(os.environ)
    env.update(
        {
            "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
            "KAPPA_TOPIC_RAW": topics.raw,
            "KAPPA_TOPIC_VALID": topics.valid,
            "KAPPA_TOPIC_DLQ": topics.dlq,
            "KAPPA_VALIDATOR_GROUP_ID": settings.group_id,
            "KAPPA_VALIDATOR_TRANSACTIONAL_ID": transactional_id or settings.transactional_id,
            "KAPPA_VALIDATOR_METRICS_PORT": "0",
            "KAPPA_VALIDATOR_BATCH_SIZE": "2000",
            "KAPPA_VALIDATOR_BATCH_SECONDS": "0.2",
            "KAPPA_VALIDATOR_SESSION_TIMEOUT_MS": "6000",
        }
    )
    return env


class Producing:
    """``kappa produce``'s function on a thread: ``count`` records at ``rate`` into the raw
    topic, deterministic for ``seed``; ``join`` returns its figures."""

    def __init__(
        self,
        stack: Any,
        topics: TopicSettings,
        count: int,
        rate: float,
        seed: int,
        faults: FaultRates,
    ) -> None:
        req = ProduceRequest(
            rate=rate,
            count=count,
            duration_s=None,
            seed=seed,
            faults=faults,
            clock=WallClock(),
            topic=topics.raw,
        )
        self._stats: list[ProduceStats] = []
        self._thread = threading.Thread(
            target=lambda: self._stats.append(produce(stack.kafka, stack.registry, topics, req)),
            daemon=True,
        )

    def start(self) -> Producing:
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> ProduceStats:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the producer did not finish in {timeout_s} s"
        assert self._stats, "the producer failed"
        return self._stats[0]


def start_validator(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    kappa = Path(sys.executable).with_name("kappa")
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(kappa), "validate", *extra], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_assigned(proc: subprocess.Popen[bytes], log: Path, starts: int, timeout: float) -> None:
    """Until ``log`` shows ``starts`` partition assignments (the instance judges)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("assigned topic=") >= starts:
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.1)
    msg = f"validator did not start in {timeout} s"
    raise AssertionError(msg)


def expected_records(seed: int, faults: FaultRates, count: int, raw_id: int = 1) -> list[Generated]:
    """What ``kappa produce --seed`` wrote: the same generator, run again."""
    gen = CdrGenerator(
        seed=seed,
        clock=WallClock(),
        encode=WireEncoder(load_schema(SchemaName.CDR_RAW), raw_id).encode,
        encode_legacy=WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), raw_id).encode,
        faults=faults,
    )
    return [gen.next() for _ in range(count)]


def really_faulty(g: Generated) -> bool:
    """The generator's phone_format faults include '+94712345678', which is a valid number."""
    if g.kind != rules.PHONE_FORMAT.name:
        return g.expected_rule is not None
    rec = schemaless_reader(io.BytesIO(g.value[5:]), parsed_schema(SchemaName.CDR_RAW), None)
    assert isinstance(rec, dict)
    return not all(PHONE.fullmatch(rec[c]) for c in ("caller_num", "callee_num"))


def ledger_report(stack: Any, topics: TopicSettings) -> Any:
    return ledger(
        stack.kafka,
        stack.registry,
        topics,
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
    )


def assert_exact_outcome(
    stack: Any, topics: TopicSettings, count: int, seed: int, faults: FaultRates
) -> tuple[int, int]:
    """The ledger balances over ``count`` raw records, read_committed cdr.valid holds no
    call_id twice, and the DLQ holds each faulty record exactly once, under its rule.
    Returns (valid, dead letters)."""
    report = ledger_report(stack, topics)
    assert report.balanced, report.as_dict()
    assert report.raw == count

    valid = read_all(stack.kafka, topics.valid)
    keys = Counter(m.key() for m in valid)
    assert keys.most_common(1)[0][1] == 1

    decoder = WireDecoder(clients.registry(stack.registry))
    dead = []
    for m in read_all(stack.kafka, topics.dlq):
        got = decoder.decode(m.value())
        assert isinstance(got, Decoded)
        dead.append(got.record)
    expected = [g for g in expected_records(seed, faults, count) if really_faulty(g)]
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
    return len(valid), len(dead)
