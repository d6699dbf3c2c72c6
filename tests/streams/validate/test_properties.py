"""Property: any CdrRaw value the Avro types allow ends in exactly one place, and what
reaches cdr.valid holds the written contract (``tests/streams/validate/contract.py``).

Arbitrary values per field: null, any string (empty, blank, non-ASCII, control
characters, very long), any int or long (the extremes), any timestamp (before 1970,
far future), mixed with valid and nearly valid ones so that every rule is exercised
on both sides. The pure routing function (the real decoder, the real GX suite) takes
many batches; the real broker and registry a bounded one.
"""

from __future__ import annotations

import io
import time
from collections import Counter
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
from streams.validate.job import run
from streams.validate.outputs import Outputs
from streams.validate.routing import RawRecord, validate
from streams.validate.suite import CdrSuite
from tests.fixtures.validate import NOW_MS, RAW_ID, _Schemas, raw_encoder, read_all
from tests.streams.validate import contract

TOLERANCE_MS = 15 * 60_000
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

any_text = st.text(st.characters(codec="utf-8"), max_size=80)
tricky_text = st.sampled_from(
    ["", " ", "\t", "\n", "\x00", "é", "٣", "\u200b", "a\nb", "x" * 5000, "TOWER 1", "-a"]
)


def _strings(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.none() | valid | any_text | tricky_text | valid.map(lambda v: v + "\n")


call_ids = _strings(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z") | st.just("a" * 65))
phones = _strings(
    st.from_regex(r"\A\+947[0-9]{8}\Z")
    | st.sampled_from(["+94711111111", "+9471111111", "+947111111111", "+947" + "\u0661" * 8])
)
call_types = _strings(st.sampled_from(["VOICE", "SMS", "DATA", "voice", "VIDEO"]))
towers = _strings(st.from_regex(r"\ATOWER_[0-9]{3}\Z") | st.just("T" * 32) | st.just("T" * 33))


def _ints(bounds: tuple[int, int], *edges: int) -> st.SearchStrategy[int | None]:
    lo, hi = bounds
    return st.none() | st.integers(lo, hi) | st.sampled_from([lo, hi, -1, 0, 1, *edges])


arbitrary = {
    "call_id": call_ids,
    "caller_num": phones,
    "callee_num": phones,
    "call_type": call_types,
    "duration_sec": _ints(INT32, 7200, 7201),
    "event_time": _ints(
        INT64,
        contract.YEAR_2000_MS - 1,
        contract.YEAR_2000_MS,
        NOW_MS + TOLERANCE_MS,
        NOW_MS + TOLERANCE_MS + 1,
        -62_135_596_800_000,  # 0001-01-01
        253_402_300_799_999,  # 9999-12-31
    ),
    "tower_id": towers,
    "signal_strength": _ints(INT32, 5, 6),
    "data_volume_kb": _ints(INT64, contract.DATA_VOLUME_MAX, contract.DATA_VOLUME_MAX + 1),
}


@st.composite
def _nearly_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with a few fields (often none) replaced by arbitrary values."""
    kind = draw(st.sampled_from(["VOICE", "SMS", "DATA"]))
    rec: dict[str, Any] = {
        "call_id": draw(st.uuids().map(str)),
        "caller_num": draw(st.from_regex(r"\A\+947[0-9]{8}\Z")),
        "callee_num": draw(st.from_regex(r"\A\+947[0-9]{8}\Z")),
        "call_type": kind,
        "duration_sec": 0 if kind == "SMS" else draw(st.integers(0, 7200)),
        "event_time": draw(st.integers(NOW_MS - 86_400_000, NOW_MS + TOLERANCE_MS)),
        "tower_id": draw(st.from_regex(r"\ATOWER_[0-9]{3}\Z")),
        "signal_strength": draw(st.integers(1, 5)),
        "data_volume_kb": draw(st.integers(0, 10**6)) if kind == "DATA" else 0,
    }
    for name in draw(st.sets(st.sampled_from(sorted(arbitrary)), max_size=2)):
        rec[name] = draw(arbitrary[name])
    return rec


records = _nearly_valid() | st.fixed_dictionaries(arbitrary)


@pytest.fixture(scope="module")
def decoder() -> WireDecoder:
    """The job's decoder configuration (epoch ms, value spans) over CdrRaw as id 1."""
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


def check_routed(
    batch: list[RawRecord],
    records: list[dict[str, Any]],
    routed: Any,
    outputs: Outputs,
    taken_before: set[str],
    judged_at_ms: int,
) -> None:
    """Exactly one place each; valid iff the contract holds and the call_id is new;
    each valid message is keyed by call_id, stamped with the event time, and decodes
    to the record as produced."""
    places = Counter(v.source.offset for v in routed.valid) + Counter(
        d.source.offset for d in routed.dead
    )
    assert places == Counter(r.offset for r in batch)
    valid_at = {v.source.offset: v for v in routed.valid}
    taken = set(taken_before)
    cdr_schema = parsed_schema(SchemaName.CDR)
    for raw, rec in zip(batch, records, strict=True):
        broken = contract.violations(rec, judged_at_ms=judged_at_ms, tolerance_ms=TOLERANCE_MS)
        fresh = rec["call_id"] not in taken
        v = valid_at.get(raw.offset)
        assert (v is not None) == (not broken and fresh), (rec, broken, fresh)
        if v is None:
            continue
        taken.add(rec["call_id"])
        value, key, ts, _ = outputs.valid(v)
        cdr = schemaless_reader(io.BytesIO(value[5:]), cdr_schema, None)
        assert isinstance(cdr, dict)
        cdr["event_time"] = rec["event_time"]  # timestamp-millis read back as a datetime
        assert cdr == {**rec, "data_volume_kb": rec["data_volume_kb"] or 0}
        assert contract.message_violations(key, ts, cdr) == []


@settings(
    max_examples=45,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(records, min_size=1, max_size=25), partitions=st.data())
def test_any_cdr_raw_ends_in_one_place_and_valid_ones_hold_the_contract(
    gx_suite: CdrSuite,
    decoder: WireDecoder,
    outputs: Outputs,
    batch: list[dict[str, Any]],
    partitions: st.DataObject,
) -> None:
    enc = WireEncoder(load_schema(SchemaName.CDR_RAW), RAW_ID)
    # Copies of earlier records, keyed otherwise and on other partitions.
    dups = partitions.draw(st.lists(st.sampled_from(batch), max_size=3))
    recs = [dict(r) for r in batch + dups]
    raws = [
        RawRecord("raw", partitions.draw(st.integers(0, 2)), i, NOW_MS - 1000, None, enc.encode(r))
        for i, r in enumerate(recs)
    ]
    state = DedupState(24 * 3600_000)
    routed = validate(
        raws, decode=decoder.decode, suite=gx_suite, seen=state.seen, judged_at_ms=NOW_MS
    )
    check_routed(raws, recs, routed, outputs, set(), NOW_MS)


HOSTILE_STRINGS = [
    None,
    "",
    " ",
    "\t",
    "\x00",
    "\x7f",
    "\n",
    "é",
    "\u200b",
    "\U0001f4de",
    "x" * 100_000,
    "-a",
    "a b",
    "TOWER_001\n",
    "+94711111111\n",
    " +94711111111",
    "+947" + "\u0661" * 8,  # Arabic-Indic digits
    "+947" + "\uff11" * 8,  # fullwidth digits
    "+9471111111",
    "+947111111111",
    "a" * 65,
    "T" * 33,
]
HOSTILE_INTS = [None, INT32[0], -1, 0, 1, 5, 6, 7200, 7201, INT32[1]]
HOSTILE_LONGS = [
    None,
    INT64[0],
    -62_135_596_800_000,
    -1,
    0,
    contract.YEAR_2000_MS - 1,
    contract.YEAR_2000_MS,
    NOW_MS,
    NOW_MS + TOLERANCE_MS,
    NOW_MS + TOLERANCE_MS + 1,
    contract.DATA_VOLUME_MAX,
    contract.DATA_VOLUME_MAX + 1,
    253_402_300_799_999,
    INT64[1],
]


def test_each_hostile_value_in_an_otherwise_valid_record(
    gx_suite: CdrSuite, decoder: WireDecoder, outputs: Outputs
) -> None:
    """Every listed edge of every field, alone in a valid record of each call type."""
    from tests.fixtures.validate import valid_record

    enc = WireEncoder(load_schema(SchemaName.CDR_RAW), RAW_ID)
    recs: list[dict[str, Any]] = []
    for kind in ("VOICE", "SMS", "DATA"):
        base = valid_record(call_type=kind, duration_sec=0 if kind == "SMS" else 60)
        for name, kind_of in arbitrary_kinds.items():
            values = {"str": HOSTILE_STRINGS, "int": HOSTILE_INTS, "long": HOSTILE_LONGS}[kind_of]
            for value in values:
                rec = dict(base, call_id=f"{kind}-{len(recs)}")
                rec[name] = value
                recs.append(rec)
    raws = [RawRecord("raw", 0, i, NOW_MS, None, enc.encode(r)) for i, r in enumerate(recs)]
    state = DedupState(24 * 3600_000)
    routed = validate(
        raws, decode=decoder.decode, suite=gx_suite, seen=state.seen, judged_at_ms=NOW_MS
    )
    check_routed(raws, recs, routed, outputs, set(), NOW_MS)
    assert routed.valid
    assert routed.dead


arbitrary_kinds = {
    "call_id": "str",
    "caller_num": "str",
    "callee_num": "str",
    "call_type": "str",
    "duration_sec": "int",
    "event_time": "long",
    "tower_id": "str",
    "signal_strength": "int",
    "data_volume_kb": "long",
}


@pytest.mark.integration
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)
@given(batch=st.lists(records, min_size=100, max_size=150))
def test_the_real_validator_routes_arbitrary_records_by_the_contract(
    stack: Any,
    validator_topics: TopicSettings,
    validator_settings: ValidatorSettings,
    batch: list[dict[str, Any]],
) -> None:
    topics = validator_topics
    enc = raw_encoder(stack, topics)
    before = {m.key() for m in read_all(stack.kafka, topics.valid)}
    taken = {k.decode() for k in before if k is not None}
    producer = clients.producer(stack.kafka)
    for i, rec in enumerate(batch):
        producer.produce(topics.raw, enc.encode(rec), f"k{i}".encode(), partition=i % 3)
    assert producer.flush(30) == 0
    started = time.time_ns() // 1_000_000
    stats = run(stack.kafka, stack.registry, topics, validator_settings, until_caught_up=True)
    finished = time.time_ns() // 1_000_000
    assert stats.records_in == len(batch)

    decoder = WireDecoder(clients.registry(stack.registry), millis=True)
    valid = [m for m in read_all(stack.kafka, topics.valid) if m.key() not in before]
    got: Counter[str] = Counter()
    for m in valid:
        out = decoder.decode(m.value())
        assert isinstance(out, Decoded)
        cdr = out.record
        assert contract.violations(cdr, judged_at_ms=finished, tolerance_ms=TOLERANCE_MS) == []
        assert contract.message_violations(m.key(), m.timestamp()[1], cdr) == []
        got[cdr["call_id"]] += 1
    assert all(n == 1 for n in got.values())
    assert not set(got) & taken
    # Valid iff the contract holds (judged at some instant of the run) and first of its call_id.
    expect: set[str] = set()
    for rec in batch:
        ok = not contract.violations(rec, judged_at_ms=started, tolerance_ms=TOLERANCE_MS)
        if ok and rec["call_id"] not in taken and rec["call_id"] not in expect:
            expect.add(rec["call_id"])
    assert set(got) >= expect
    dead = stats.dead
    assert dead + len(valid) == len(batch)
