"""Byte-level fuzzing of the framing and the decoder: mutated CdrRaw messages (truncated,
extended, bit-flipped, trailing bytes), tombstones, empty and huge values, headers of
any kind. Each ends as a dead letter with its reason, or as a cdr.valid record that
holds the contract (``contract.py``); the validator never stops.

Many batches through the pure routing function and the job's own encoding
(``encode_routed``); a bounded batch through the real broker and registry.
"""

from __future__ import annotations

import io
import os
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import schemaless_reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kappa import clients
from kappa.settings import TopicSettings, ValidatorSettings
from schemas import SchemaName, WireEncoder, load_schema, parsed_schema, schema_text
from schemas.wire import Decoded, WireDecoder
from streams.validate.dedup import DedupState
from streams.validate.encoding import encode_routed
from streams.validate.job import run
from streams.validate.ledger import ledger
from streams.validate.outputs import KEPT_VALUE_MAX, Outputs
from streams.validate.routing import RawRecord, validate
from streams.validate.suite import CdrSuite
from tests.fixtures.validate import (
    NOW_MS,
    RAW_ID,
    _Schemas,
    raw_encoder,
    read_all,
    valid_record,
)
from tests.streams.validate import contract

TOLERANCE_MS = 15 * 60_000


def mutate(good: bytes, rng: random.Random) -> bytes | None:
    """One mutation of a valid framed message."""
    kind = rng.randrange(9)
    if kind == 0:
        return good[: rng.randrange(len(good))]  # truncated (maybe empty)
    if kind == 1:
        return good + rng.randbytes(rng.randrange(1, 40))  # trailing bytes
    if kind == 2:  # bit flips anywhere (header, union indexes, lengths, text)
        buf = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if kind == 3:  # bytes inserted in the middle
        i = rng.randrange(len(good))
        return good[:i] + rng.randbytes(rng.randrange(1, 20)) + good[i:]
    if kind == 4:  # a byte set to an extreme
        buf = bytearray(good)
        buf[rng.randrange(5, len(buf))] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
        return bytes(buf)
    if kind == 5:
        return None  # tombstone
    if kind == 6:
        return rng.choice([b"", b"\x00", b"\x00\x00\x00\x00\x01", good[:5]])
    if kind == 7:
        return good[:5] + rng.randbytes(rng.randrange(0, 200))  # right header, random body
    return good  # unchanged


@pytest.fixture(scope="module")
def decoder() -> WireDecoder:
    table = {RAW_ID: schema_text(SchemaName.CDR_RAW)}
    return WireDecoder(_Schemas(table), millis=True, spans=True)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def outputs() -> Outputs:
    return Outputs(
        "valid",
        "dlq",
        WireEncoder(load_schema(SchemaName.CDR), 3),
        WireEncoder(load_schema(SchemaName.DEAD_LETTER), 4),
    )


def check_messages(
    n: int, valid: list[Any], dead: list[Any], *, judged_at_ms: int, cdr_schema: Any
) -> None:
    assert len(valid) + len(dead) == n
    for value, key, ts, _ in valid:
        cdr = schemaless_reader(io.BytesIO(value[5:]), cdr_schema, None)
        assert isinstance(cdr, dict)
        cdr["event_time"] = ts if key is not None else None
        broken = contract.violations(cdr, judged_at_ms=judged_at_ms, tolerance_ms=TOLERANCE_MS)
        assert broken == [], cdr
        assert key == cdr["call_id"].encode()
    for value, *_ in dead:
        letter = schemaless_reader(
            io.BytesIO(value[5:]), parsed_schema(SchemaName.DEAD_LETTER), None
        )
        assert isinstance(letter, dict)
        assert letter["failures"]
        assert all(f["rule"] for f in letter["failures"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 60))
def test_mutated_messages_end_as_dead_letters_or_contract_records(
    gx_suite: CdrSuite, decoder: WireDecoder, outputs: Outputs, seed: int, size: int
) -> None:
    rng = random.Random(seed)
    enc = WireEncoder(load_schema(SchemaName.CDR_RAW), RAW_ID)
    values = [mutate(enc.encode(valid_record(event_time=NOW_MS - 1000)), rng) for _ in range(size)]
    batch = [RawRecord("raw", i % 3, i, NOW_MS, None, v) for i, v in enumerate(values)]
    routed = validate(
        batch,
        decode=decoder.decode,
        suite=gx_suite,
        seen=DedupState(24 * 3600_000).seen,
        judged_at_ms=NOW_MS,
    )
    sources = sorted(
        [v.source.offset for v in routed.valid] + [d.source.offset for d in routed.dead]
    )
    assert sources == list(range(size))
    encoded = encode_routed(outputs, routed, "1", NOW_MS)
    valid, dead = encoded.valid, encoded.dead
    check_messages(size, valid, dead, judged_at_ms=NOW_MS, cdr_schema=parsed_schema(SchemaName.CDR))


def test_a_huge_value_keeps_its_first_bytes_and_says_so(
    gx_suite: CdrSuite, decoder: WireDecoder, outputs: Outputs
) -> None:
    huge = b"\x00" + RAW_ID.to_bytes(4, "big") + os.urandom(990_000)
    batch = [RawRecord("raw", 0, 0, NOW_MS, b"k" * 200_000, huge)]
    routed = validate(
        batch, decode=decoder.decode, suite=gx_suite, seen=lambda *_: False, judged_at_ms=NOW_MS
    )
    encoded = encode_routed(outputs, routed, "1", NOW_MS)
    valid, dead = encoded.valid, encoded.dead
    assert valid == []
    letter = schemaless_reader(
        io.BytesIO(dead[0][0][5:]), parsed_schema(SchemaName.DEAD_LETTER), None
    )
    assert isinstance(letter, dict)
    assert letter["original_value"] == huge[:KEPT_VALUE_MAX]
    assert "truncated from 990005" in letter["failures"][-1]["observed"]
    assert len(dead[0][0]) < 1_000_000


@pytest.mark.integration
def test_the_real_validator_survives_a_fuzzed_topic(
    stack: Any, validator_topics: TopicSettings, validator_settings: ValidatorSettings
) -> None:
    topics = validator_topics
    enc = raw_encoder(stack, topics)
    rng = random.Random(20261207)
    now = time.time_ns() // 1_000_000
    values = [mutate(enc.encode(valid_record(event_time=now - 1000)), rng) for _ in range(300)]
    values += [b"\x00" + enc.schema_id.to_bytes(4, "big") + os.urandom(990_000), None, b""]
    header_kinds: list[Any] = [
        None,
        [],
        [("", b"")],
        [("kappa.src", b"cdr.raw:0:0")],  # a forged source header
        [("x", None), ("x", b"\xff\x00"), ("\u00e9\x00", "text")],
        [(f"h{i}", os.urandom(50)) for i in range(30)],
    ]
    producer = clients.producer(stack.kafka, **{"message.max.bytes": 2_000_000})
    for i, v in enumerate(values):
        key = rng.choice([None, b"", os.urandom(8), b"\x00" * 3])
        headers = header_kinds[i % len(header_kinds)]
        producer.produce(topics.raw, v, key, partition=i % 3, headers=headers)
    assert producer.flush(60) == 0

    stats = run(stack.kafka, stack.registry, topics, validator_settings, until_caught_up=True)
    assert stats.records_in == len(values)
    assert stats.valid + stats.dead == len(values)
    assert stats.dead > 0

    decoder = WireDecoder(clients.registry(stack.registry), millis=True)
    finished = time.time_ns() // 1_000_000
    for m in read_all(stack.kafka, topics.valid):
        got = decoder.decode(m.value())
        assert isinstance(got, Decoded)
        cdr = got.record
        assert contract.violations(cdr, judged_at_ms=finished, tolerance_ms=TOLERANCE_MS) == []
        assert contract.message_violations(m.key(), m.timestamp()[1], cdr) == []
    for m in read_all(stack.kafka, topics.dlq):
        got = decoder.decode(m.value())
        assert isinstance(got, Decoded)
        assert got.record["failures"]
    report = ledger(
        stack.kafka,
        stack.registry,
        topics,
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert report.balanced, report.as_dict()
    assert report.raw == len(values)
