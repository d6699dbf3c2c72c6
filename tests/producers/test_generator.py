"""The generator is pure: these run without Kafka."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.clock import SimulatedClock
from producers.generator import FAULT_KINDS, CdrGenerator, FaultRates
from schemas import SchemaName, WireEncoder, load_schema, parsed_schema
from schemas.rules import RULE_NAMES

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def make(
    seed: int = 7, rate: float = 10.0, speed: float = 1.0, fast: bool = True, **faults: float
) -> CdrGenerator:
    raw = WireEncoder(load_schema(SchemaName.CDR_RAW), 1)
    legacy = WireEncoder(load_schema(SchemaName.LEGACY_CDR_EVENT), 2)
    return CdrGenerator(
        seed=seed,
        clock=SimulatedClock(start=START, speed=speed, rate=rate),
        encode=raw.encode,
        encode_legacy=legacy.encode,
        faults=FaultRates(**faults),
        fast_header=raw.header if fast else None,
    )


def test_fast_path_writes_what_the_encoder_writes() -> None:
    fast_gen = make(seed=3, bad=0.1, duplicate=0.05, late=0.05)
    slow_gen = make(seed=3, fast=False, bad=0.1, duplicate=0.05, late=0.05)
    fast = [fast_gen.next() for _ in range(3000)]
    slow = [slow_gen.next() for _ in range(3000)]
    assert fast == slow
    assert len({g.value for g in fast}) > 2500  # a sequence, not one record repeated


def test_same_seed_same_records() -> None:
    gen_a = make(seed=42, bad=0.2, duplicate=0.05, late=0.05)
    gen_b = make(seed=42, bad=0.2, duplicate=0.05, late=0.05)
    a = [gen_a.next() for _ in range(2000)]
    b = [gen_b.next() for _ in range(2000)]
    assert a == b
    gen_c = make(seed=43, bad=0.2)
    c = [gen_c.next() for _ in range(50)]
    assert [g.value for g in a[:50]] != [g.value for g in c]


def test_valid_records_are_realistic() -> None:
    import io

    from fastavro import schemaless_reader

    gen = make()
    schema = parsed_schema(SchemaName.CDR_RAW)
    types: Counter[str] = Counter()
    for _ in range(3000):
        g = gen.next()
        assert g.kind == "valid"
        assert g.value[0] == 0
        assert int.from_bytes(g.value[1:5], "big") == 1
        rec = schemaless_reader(io.BytesIO(g.value[5:]), schema, None)
        assert re.fullmatch(r"\+947\d{8}", rec["caller_num"])
        assert re.fullmatch(r"\+947\d{8}", rec["callee_num"])
        assert rec["caller_num"] != rec["callee_num"]
        assert 1 <= rec["signal_strength"] <= 5
        assert 0 <= rec["duration_sec"] <= 7200
        assert rec["tower_id"] in gen.towers
        assert g.key == rec["call_id"].encode()
        assert g.timestamp_ms == int(rec["event_time"].timestamp() * 1000)
        if rec["call_type"] == "SMS":
            assert rec["duration_sec"] == 0
        if rec["call_type"] == "DATA":
            assert rec["data_volume_kb"] > 0
        types[rec["call_type"]] += 1
    assert types["VOICE"] > types["SMS"] > types["DATA"] > 0


def test_every_fault_kind_is_produced_and_names_a_rule() -> None:
    gen = make(bad=0.5, duplicate=0.1, late=0.1)
    kinds = Counter(gen.next().kind for _ in range(5000))
    for kind in FAULT_KINDS:
        assert kinds[kind] > 0, kind
    assert kinds["duplicate_call_id"] > 0
    assert kinds["late"] > 0
    for kind in kinds:
        if kind not in ("valid", "late"):
            assert kind.split(":")[0] in RULE_NAMES


def test_rates_are_honoured() -> None:
    gen = make(bad=0.02, duplicate=0.01, late=0.03)
    kinds = Counter(gen.next().kind for _ in range(20_000))
    faulty = sum(n for k, n in kinds.items() if k not in ("valid", "late", "duplicate_call_id"))
    assert 300 <= faulty <= 500
    assert 100 <= kinds["duplicate_call_id"] <= 300
    assert 450 <= kinds["late"] <= 750


def test_simulated_clock_compresses_time() -> None:
    gen = make(rate=1000, speed=360)
    first = gen.next()
    for _ in range(999):
        last = gen.next()
    # 1000 records at 1000/s is one wall second: six minutes of event time.
    assert 354_000 <= last.timestamp_ms - first.timestamp_ms <= 365_000


@settings(max_examples=30, deadline=None)
@given(bad=st.floats(0, 1), dup=st.floats(0, 1), late=st.floats(0, 1))
def test_fault_rates_validation(bad: float, dup: float, late: float) -> None:
    rates = FaultRates(bad=bad, duplicate=dup, late=late)
    if bad + dup + late > 1:
        with pytest.raises(ValueError, match="must not exceed 1"):
            rates.check()
    else:
        rates.check()


def test_each_injected_fault_really_breaks_its_rule() -> None:
    import io

    from fastavro import schemaless_reader

    gen = make(seed=9, bad=1.0)
    phone = re.compile(r"\+947\d{8}\Z")
    schema = parsed_schema(SchemaName.CDR_RAW)
    seen = Counter()
    for _ in range(3000):
        g = gen.next()
        if g.kind.startswith("undecodable") or g.kind == "schema":
            continue
        rec = schemaless_reader(io.BytesIO(g.value[5:]), schema, None)
        checks = {
            "not_null": lambda r: any(r[c] is None for c in r if c != "data_volume_kb"),
            "phone_format": lambda r: (
                not (phone.match(r["caller_num"]) and phone.match(r["callee_num"]))
            ),
            "call_type_domain": lambda r: r["call_type"] not in ("VOICE", "SMS", "DATA"),
            "duration_range": lambda r: not 0 <= r["duration_sec"] <= 7200,
            "signal_range": lambda r: not 1 <= r["signal_strength"] <= 5,
            "event_time_future": lambda r, ts=g.timestamp_ms: (
                r["event_time"].timestamp() * 1000 > ts + 3600_000
            ),
            "sms_duration": lambda r: r["call_type"] == "SMS" and r["duration_sec"] != 0,
            "self_call": lambda r: r["caller_num"] == r["callee_num"],
            "data_volume": lambda r: (
                (r["data_volume_kb"] < 0) if r["call_type"] == "DATA" else r["data_volume_kb"] != 0
            ),
        }
        broken = checks[g.kind](rec)
        assert broken, (g.kind, rec)
        seen[g.kind] += 1
    assert len(seen) == 9
